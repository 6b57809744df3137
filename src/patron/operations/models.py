"""Register operation events (append-only, compact), reader visits and tap grants."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import IntEnum, StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow

AutoId = BigInteger().with_variant(Integer, "sqlite")


class EventType(StrEnum):
    open = "open"
    close = "close"
    sign_in = "sign_in"
    sign_out = "sign_out"
    heartbeat = "heartbeat"
    item_scan = "item_scan"
    error = "error"


class EventCode(IntEnum):
    """How an event type is stored: one SMALLINT. Never renumber; only append."""

    open = 1
    close = 2
    sign_in = 3
    sign_out = 4
    heartbeat = 5
    item_scan = 6
    error = 7


EVENT_CODES = {EventType(code.name): int(code) for code in EventCode}
EVENT_TYPES = {number: event_type for event_type, number in EVENT_CODES.items()}


class RegisterEvent(Base):
    """One thing a register did, as it reported it. Append-only; never updated."""

    __tablename__ = "register_events"
    __table_args__ = (
        Index("ix_register_events_store_occurred", "store_id", "occurred_at"),
        Index("ix_register_events_terminal_occurred", "terminal_id", "occurred_at"),
        # NULLs are distinct on both backends: events without seq are never deduplicated.
        Index("uq_register_events_terminal_seq", "terminal_id", "seq", unique=True),
        CheckConstraint(f"type >= 1 AND type <= {max(EventCode)}", name="type_known"),
        CheckConstraint("seq IS NULL OR seq >= 0", name="seq_non_negative"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    # No foreign keys: the hottest append-only table skips the per-row FK checks; the ids
    # come from the authenticated terminal, never from the request body.
    merchant_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    store_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    terminal_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    type: Mapped[int] = mapped_column(SmallInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(String(200))


class Visit(Base):
    """A card tapped at a reader: who, where, when, and the points it brought."""

    __tablename__ = "visits"
    __table_args__ = (
        Index("uq_visits_terminal_tap_id", "terminal_id", "tap_id", unique=True),
        Index("ix_visits_store_occurred", "store_id", "occurred_at"),
        Index("ix_visits_member_occurred", "member_id", "occurred_at"),
        CheckConstraint("points_granted >= 0", name="points_granted_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"))
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    points_granted: Mapped[int] = mapped_column(Integer, default=0)
    # Why no points were granted (``interval``, ``no_points_per_tap``); NULL when granted.
    reason: Mapped[str | None] = mapped_column(String(32))
    tap_id: Mapped[str | None] = mapped_column(String(64))


class TapGrant(Base):
    """When a reader last granted a member points: the once-per-interval guard.

    Changed only by one conditional UPDATE (``last_granted_at <= :now - interval``), so
    concurrent taps cannot both grant (see docs/operations.md)."""

    __tablename__ = "tap_grants"

    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"),
                                                   primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    last_granted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
