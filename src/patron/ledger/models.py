"""Double-entry points ledger: accounts, journal entries, postings, point lots and draws.

Every table carries ``merchant_id`` where there is one (tenant key for distribution);
it is NULL only for coalition-level rows (the miles pool and members' miles).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime, sql_in
from patron.kit.clock import utcnow

# SQLite only auto-numbers an INTEGER PRIMARY KEY (the rowid); BIGINT elsewhere.
AutoId = BigInteger().with_variant(Integer, "sqlite")


class Unit(StrEnum):
    points = "points"
    miles = "miles"


class AccountKind(StrEnum):
    member_points = "member_points"
    member_miles = "member_miles"
    merchant_liability = "merchant_liability"
    coalition_pool = "coalition_pool"
    expired = "expired"
    adjustments = "adjustments"


# The counter side of every movement: their balances are the mirror image of what members
# hold, so they may go (and normally are) negative.
COUNTER_KINDS = frozenset({AccountKind.merchant_liability, AccountKind.coalition_pool,
                           AccountKind.expired, AccountKind.adjustments})
COALITION_KINDS = frozenset({AccountKind.member_miles, AccountKind.coalition_pool})


class EntryKind(StrEnum):
    earn = "earn"
    burn = "burn"
    return_ = "return"
    expire = "expire"
    tap = "tap"
    adjust = "adjust"
    transfer = "transfer"


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        CheckConstraint(f"unit IN ({sql_in(Unit)})", name="unit_known"),
        CheckConstraint(f"kind IN ({sql_in(AccountKind)})", name="kind_known"),
        CheckConstraint("merchant_id IS NOT NULL OR kind IN ('member_miles', 'coalition_pool')",
                        name="merchant_unless_coalition"),
        # Miles are never clawed back, so a miles balance below zero is always a bug.
        CheckConstraint("kind <> 'member_miles' OR balance >= 0", name="miles_not_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    unit: Mapped[str] = mapped_column(String(16))
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    # A cache of SUM(postings.amount); changed only by one conditional UPDATE per posting.
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(EntryKind)})", name="kind_known"),
        Index("ix_journal_entries_member_occurred", "member_id", "occurred_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(16))
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    source: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(String(500))
    # Unique: the database, not a prior SELECT, is what makes a retried write a no-op.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    # The earn a claw-back returns, or the burn a restore gives back.
    reverses_entry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("journal_entries.id"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Posting(Base):
    __tablename__ = "postings"
    __table_args__ = (
        CheckConstraint("amount <> 0", name="amount_not_zero"),
        CheckConstraint(f"unit IN ({sql_in(Unit)})", name="unit_known"),
    )

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    unit: Mapped[str] = mapped_column(String(16))


class PointLot(Base):
    """Points earned together that expire together; ``remaining`` is what is left."""

    __tablename__ = "point_lots"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        Index("ix_point_lots_account_expires", "account_id", "expires_at"),
        # Only lots with points left: the expiry job and the notices look for those, and
        # spent or expired lots (most of them, in time) stay out of the index.
        Index("ix_point_lots_due", "expires_at", postgresql_where=text("remaining > 0"),
              sqlite_where=text("remaining > 0")),
    )

    # An autoincrement key (not a UUID) because its order is the creation order that
    # breaks ties between lots expiring at the same moment; lots are never exposed alone.
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("ledger_accounts.id"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PointLotDraw(Base):
    """Points taken out of a lot by one entry (burn, claw-back, expiry, correction).

    The audit trail of lot consumption: it is how a returned burn finds the expiry dates
    of the points it used, and ``lot.amount - lot.remaining`` must equal the draws' sum.
    """

    __tablename__ = "point_lot_draws"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("point_lots.id"), index=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
