"""The security event log: one row per refused attempt worth a merchant's attention.

Append-only. It is also the throttles' memory: the counted failures of a terminal, a client
address at one merchant or a member in the last few seconds are counted along the
``(throttle, subject, time)`` indexes, so every worker process sees the same counts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow

AutoId = BigInteger().with_variant(Integer, "sqlite")


class SecurityEventKind(StrEnum):
    """What was attempted. No CHECK constraint: areas that record events (offline replay)
    add kinds without rebuilding the table; the API reads and filters them as text."""

    voucher_validation = "voucher_validation"
    voucher_reservation = "voucher_reservation"
    voucher_redemption = "voucher_redemption"
    voucher_lookup = "voucher_lookup"
    pos_quote = "pos_quote"
    pos_commit = "pos_commit"
    offline_forgery = "offline_forgery"
    identification = "identification"
    referral = "referral"


class Throttle(StrEnum):
    """Which failure limit an event counts towards. An event without one (a business
    refusal: a minimum spend not met, one's own code already used) is only recorded."""

    voucher = "voucher"
    identify = "identify"


class SecurityEvent(Base):
    __tablename__ = "security_events"
    __table_args__ = (
        # The throttles' counts: newest counted failures of one subject, read backwards.
        # An address is a subject within one merchant only (docs/vouchers.md).
        Index("ix_security_events_terminal_occurred", "throttle", "terminal_id",
              "occurred_at"),
        Index("ix_security_events_address_occurred", "throttle", "merchant_id",
              "client_address", "occurred_at"),
        Index("ix_security_events_member_occurred", "throttle", "member_id", "occurred_at"),
        # The merchant's list, newest first.
        Index("ix_security_events_merchant_id", "merchant_id", "id"),
    )

    # Insertion order is the list's order (newest first) and its cursor.
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"))
    kind: Mapped[str] = mapped_column(String(40))
    terminal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("terminals.id"))
    client_address: Mapped[str | None] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    # Never the code itself (it could be replayed): its first symbols, for a person to
    # recognise, and a keyed digest, to see the same code tried again elsewhere.
    code_prefix: Mapped[str | None] = mapped_column(String(8))
    code_digest: Mapped[str | None] = mapped_column(String(32))
    refusal: Mapped[str] = mapped_column(String(64))
    # The limit this event counts towards (``Throttle``); NULL: it counts towards none.
    throttle: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
