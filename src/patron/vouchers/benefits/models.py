"""Benefit rules, each member's progress towards them, what each purchase counted, and the
benefits issued.

``benefit_progress.count`` changes only with one atomic statement that returns the new
value (an upsert adding a purchase's amount, an UPDATE taking a return's back), so two
purchases can never see the same count and every crossing of a threshold belongs to
exactly one of them. ``issued_benefits`` is unique per (rule, member, crossing) among the
benefits not revoked: the database refuses a second benefit for one crossing.

``merchant_id`` is NULL for coalition rules (miles, owned by the operator) and for their
counters and benefits, like coalition offers.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime, sql_in
from patron.kit.clock import utcnow
from patron.vouchers.benefits.rules import Measure, Mode


class BenefitRule(Base):
    __tablename__ = "benefit_rules"
    __table_args__ = (
        CheckConstraint(f"measure IN ({sql_in(Measure)})", name="measure_known"),
        CheckConstraint(f"mode IN ({sql_in(Mode)})", name="mode_known"),
        CheckConstraint("threshold >= 1", name="threshold_positive"),
        # Miles are the coalition's; everything else counts at one merchant.
        CheckConstraint("(measure = 'miles') = (merchant_id IS NULL)", name="owner_fits"),
        CheckConstraint("(sku IS NULL AND category IS NULL) OR "
                        "(measure IN ('purchases', 'items') AND "
                        "(sku IS NULL OR category IS NULL))", name="filter_fits"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    name: Mapped[str] = mapped_column(String(200))
    measure: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(8))
    threshold: Mapped[int] = mapped_column(BigInteger)
    offer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("offers.id"), index=True)
    # Stamp cards may count only lines of one SKU or one (normalised) category.
    sku: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deactivated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class BenefitProgress(Base):
    """One member's count towards one rule (points, miles, purchases or items)."""

    __tablename__ = "benefit_progress"
    __table_args__ = (CheckConstraint("count >= 0", name="count_non_negative"),)

    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("benefit_rules.id"),
                                               primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True,
                                                 index=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class BenefitContribution(Base):
    """What one purchase added to one rule's count, and how much of it returns took back:
    a return takes back only what its purchase counted (nothing for a rule created after
    it), and never more."""

    __tablename__ = "benefit_contributions"
    __table_args__ = (
        CheckConstraint("counted >= 1 AND taken_back >= 0 AND taken_back <= counted",
                        name="taken_back_in_range"),
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_transactions.id"),
                                                      primary_key=True)
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("benefit_rules.id"),
                                               primary_key=True, index=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    # The purchase's merchant (a coalition rule counts purchases at every merchant).
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    counted: Mapped[int] = mapped_column(BigInteger)
    taken_back: Mapped[int] = mapped_column(BigInteger, default=0)


class IssuedBenefit(Base):
    """A benefit voucher issued for one crossing of a rule's threshold."""

    __tablename__ = "issued_benefits"
    __table_args__ = (
        CheckConstraint("crossing >= 1", name="crossing_positive"),
        # One live benefit per crossing. A benefit revoked by a return frees its crossing,
        # so crossing it again issues a new one; a used one keeps it (docs/vouchers.md).
        Index("uq_issued_benefits_rule_member_crossing", "rule_id", "member_id", "crossing",
              unique=True, postgresql_where=text("revoked_at IS NULL"),
              sqlite_where=text("revoked_at IS NULL")),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    rule_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("benefit_rules.id"), index=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    crossing: Mapped[int] = mapped_column(BigInteger)
    voucher_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("vouchers.id"), unique=True)
    # The purchase that crossed the threshold.
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_transactions.id"),
                                                      index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The return that undid the crossing while the code was still unused.
    revoked_by_return_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pos_returns.id"))
