"""Offers (voucher templates), their codes, and every use of a code.

Counters are the caps: ``vouchers.redemptions_count`` (a code's uses), ``offers
.redemptions_count`` and ``offers.budget_used`` (the offer's total cap and money budget),
``offer_member_uses.uses`` (the per-member limit). Each changes with one conditional
``UPDATE … WHERE count < cap`` (DESIGN rule 5) and a CHECK keeps it inside its cap even if
a statement were wrong. A reservation counts like a redemption until it is released, so a
held code cannot be taken by another register.

``merchant_id`` is NULL for coalition offers and their codes (owned by the operator,
redeemable at every merchant); a redemption always carries the redeeming merchant.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import STATEMENT_CHECKED, Base, UTCDateTime, sql_in
from patron.kit.clock import utcnow


class OfferKind(StrEnum):
    amount_off = "amount_off"
    percent_off = "percent_off"
    free_item = "free_item"
    points_multiplier = "points_multiplier"
    bonus_points = "bonus_points"
    ticket = "ticket"


class RedemptionStatus(StrEnum):
    reserved = "reserved"
    redeemed = "redeemed"
    released = "released"
    reversed = "reversed"


class Offer(Base):
    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint(f"kind IN ({sql_in(OfferKind)})", name="kind_known"),
        CheckConstraint("value >= 0", name="value_non_negative"),
        CheckConstraint("redemptions_count >= 0 AND (max_redemptions IS NULL OR "
                        "redemptions_count <= max_redemptions)", name="within_cap"),
        CheckConstraint("budget_used >= 0 AND (budget IS NULL OR budget_used <= budget)",
                        name="within_budget"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(24))
    # amount_off: minor units; percent_off: percent (1-100); points_multiplier: basis
    # points (20000 = x2); bonus_points: points; free_item and ticket: 0.
    value: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    max_discount: Mapped[int | None] = mapped_column(BigInteger)
    item_sku: Mapped[str | None] = mapped_column(String(64))
    item_category: Mapped[str | None] = mapped_column(String(64))
    min_spend: Mapped[int] = mapped_column(BigInteger, default=0)
    # Conditions as lists (empty = any): normalised categories, store ids, channels,
    # ISO weekdays (1 = Monday); hours in store-local minutes since midnight.
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    store_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    weekdays: Mapped[list[int]] = mapped_column(JSON, default=list)
    from_minute: Mapped[int | None] = mapped_column(Integer)
    until_minute: Mapped[int | None] = mapped_column(Integer)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_days: Mapped[int | None] = mapped_column(Integer)
    per_member_limit: Mapped[int | None] = mapped_column(Integer)
    max_redemptions: Mapped[int | None] = mapped_column(BigInteger)
    redemptions_count: Mapped[int] = mapped_column(BigInteger, default=0)
    budget: Mapped[int | None] = mapped_column(BigInteger)
    budget_used: Mapped[int] = mapped_column(BigInteger, default=0)
    stackable: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Voucher(Base):
    """One code. ``code`` is the canonical 13-symbol form (``patron.vouchers.codes``)."""

    __tablename__ = "vouchers"
    __table_args__ = (
        CheckConstraint("max_redemptions >= 1 AND redemptions_count >= 0 AND "
                        "redemptions_count <= max_redemptions", name="within_cap"),
        # The wallet's index holds personal codes only: bulk bearer codes skip it.
        Index("ix_vouchers_member_offer", "member_id", "offer_id",
              postgresql_where=text("member_id IS NOT NULL"),
              sqlite_where=text("member_id IS NOT NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # The three references of a code are checked per statement on PostgreSQL (bulk COPY).
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("merchants.id", info=STATEMENT_CHECKED))
    offer_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("offers.id", info=STATEMENT_CHECKED), index=True)
    code: Mapped[str] = mapped_column(String(13), unique=True)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    max_redemptions: Mapped[int] = mapped_column(BigInteger, default=1)
    redemptions_count: Mapped[int] = mapped_column(BigInteger, default=0)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(32), default="api")
    batch_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("voucher_batches.id", info=STATEMENT_CHECKED), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(500))


class VoucherRedemption(Base):
    """A use of a code: held (reserved), redeemed, released or reversed by a return.

    Stand-alone redemptions are idempotent by (terminal, ``idempotency_key``).
    """

    __tablename__ = "voucher_redemptions"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(RedemptionStatus)})", name="status_known"),
        CheckConstraint("discount >= 0 AND bonus_points >= 0", name="non_negative"),
        Index("uq_voucher_redemptions_terminal_key", "terminal_id", "idempotency_key",
              unique=True),
        Index("ix_voucher_redemptions_voucher_status", "voucher_id", "status"),
        Index("ix_voucher_redemptions_due", "expires_at",
              postgresql_where=text("status = 'reserved'"),
              sqlite_where=text("status = 'reserved'")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    voucher_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vouchers.id"))
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"))
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pos_transactions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    discount: Mapped[int] = mapped_column(BigInteger, default=0)
    bonus_points: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idempotency_key: Mapped[str | None] = mapped_column(String(128))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    response_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OfferMemberUse(Base):
    """Uses of one offer by one member, for the per-member limit."""

    __tablename__ = "offer_member_uses"
    __table_args__ = (CheckConstraint("uses >= 0", name="uses_non_negative"),)

    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    uses: Mapped[int] = mapped_column(Integer, default=0)



class BatchStatus(StrEnum):
    running = "running"
    done = "done"
    failed = "failed"


class VoucherBatch(Base):
    """A bulk generation of codes (more than fit in one request), run as a job."""

    __tablename__ = "voucher_batches"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(BatchStatus)})", name="status_known"),
        CheckConstraint("requested >= 1 AND generated >= 0 AND generated <= requested",
                        name="progress_in_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), index=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    requested: Mapped[int] = mapped_column(BigInteger)
    generated: Mapped[int] = mapped_column(BigInteger, default=0)
    max_redemptions: Mapped[int] = mapped_column(BigInteger, default=1)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Each chunk of codes moves this; a running batch that stopped moving is resumed.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
