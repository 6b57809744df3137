"""Offline allowances, replayed offline entries and the per-merchant exceptions list.

Every table carries ``merchant_id`` (the tenant key).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime, sql_in
from patron.kit.clock import utcnow


class ExceptionKind(StrEnum):
    voucher_refused = "voucher_refused"
    """A voucher the register accepted offline was refused at replay; dropped."""
    allowance_exceeded = "allowance_exceeded"
    """The burns under one allowance came to more than its limit; this burn dropped."""
    points_shortfall = "points_shortfall"
    """The balance no longer held the points burned offline; the burn dropped."""
    member_refused = "member_refused"
    """The member could not be identified at replay; recorded as an anonymous sale."""
    refused_entry = "refused_entry"
    """The entry was refused outright and never applied."""


class ExceptionStatus(StrEnum):
    open = "open"
    resolved = "resolved"


class OfflineAllowance(Base):
    __tablename__ = "offline_allowances"
    __table_args__ = (
        CheckConstraint("burn_limit >= 0 AND burned >= 0 AND burned <= burn_limit",
                        name="burned_within_limit"),
        # The reservation sum: a member's unexpired allowances at a merchant.
        Index("ix_offline_allowances_member_expires", "merchant_id", "member_id",
              "expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"))
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"), index=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    burn_limit: Mapped[int] = mapped_column(BigInteger)
    # Points burned under this allowance so far (replayed); changes by a conditional UPDATE.
    burned: Mapped[int] = mapped_column(BigInteger, default=0)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # As signed, or earlier when a newer allowance of the same till and member replaced it.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The signed document, as canonical JSON.
    document: Mapped[str] = mapped_column(Text)


class OfflineEntry(Base):
    """A replayed queue entry: its answer, given again to a resent entry."""

    __tablename__ = "offline_entries"

    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"),
                                                   primary_key=True)
    receipt_no: Mapped[str] = mapped_column(String(64), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_transactions.id"))
    allowance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("offline_allowances.id"))
    # SHA-256 of the entry as sent (transaction and allowance id): a resend must match it.
    entry_hash: Mapped[str] = mapped_column(String(64))
    result_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OfflineException(Base):
    __tablename__ = "offline_exceptions"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(ExceptionKind)})", name="kind_known"),
        CheckConstraint(f"status IN ({sql_in(ExceptionStatus)})", name="status_known"),
        Index("ix_offline_exceptions_merchant_status_created", "merchant_id", "status",
              "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"))
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"))
    receipt_no: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    allowance_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pos_transactions.id"))
    kind: Mapped[str] = mapped_column(String(32))
    code: Mapped[str] = mapped_column(String(64))
    voucher_code: Mapped[str | None] = mapped_column(String(64))
    facts: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The same refusal of the same entry sent again is recorded once.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=ExceptionStatus.open.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolution_note: Mapped[str | None] = mapped_column(Text)
