"""Contactless cards and caller-ID waits."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow


class CardStatus(StrEnum):
    active = "active"
    blocked = "blocked"


class WaitStatus(StrEnum):
    waiting = "waiting"
    matched = "matched"
    unknown_caller = "unknown_caller"
    cancelled = "cancelled"
    expired = "expired"


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    # The UID is looked up by keyed hash; only its last four characters are kept readable.
    uid_hash: Mapped[str] = mapped_column(String(64), unique=True)
    uid_last4: Mapped[str] = mapped_column(String(4))
    status: Mapped[str] = mapped_column(String(16), default=CardStatus.active.value)
    block_reason: Mapped[str | None] = mapped_column(String(200))
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CallerIdWait(Base):
    """A register waiting for a customer to call its number so caller ID identifies them."""

    __tablename__ = "caller_id_waits"
    __table_args__ = (Index("ix_caller_id_waits_number_status", "call_number", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"), index=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    call_number: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(16), default=WaitStatus.waiting.value)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
