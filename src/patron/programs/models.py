"""A merchant's points program (at most one), its category rules and its tiers.

No row means the merchant runs the default program (``rules.DEFAULT_PROGRAM``).
Every table carries ``merchant_id`` (the tenant key).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow
from patron.programs.rules import MAX_MULTIPLIER_BP, Rounding

_ROUNDINGS = ", ".join(f"'{rounding.value}'" for rounding in Rounding)


class Program(Base):
    __tablename__ = "programs"
    __table_args__ = (
        CheckConstraint("earn_points >= 0", name="earn_points_non_negative"),
        CheckConstraint("earn_per_amount >= 1", name="earn_per_amount_positive"),
        CheckConstraint(f"rounding IN ({_ROUNDINGS})", name="rounding_known"),
        CheckConstraint("point_value_minor >= 1", name="point_value_positive"),
        CheckConstraint("min_burn >= 1", name="min_burn_positive"),
        CheckConstraint("expiry_months IS NULL OR (expiry_months >= 0 AND expiry_months <= 120)",
                        name="expiry_months_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), unique=True)
    # earn_points per earn_per_amount minor units of the merchant's currency.
    earn_points: Mapped[int] = mapped_column(Integer)
    earn_per_amount: Mapped[int] = mapped_column(BigInteger)
    rounding: Mapped[str] = mapped_column(String(16))
    point_value_minor: Mapped[int] = mapped_column(BigInteger)
    min_burn: Mapped[int] = mapped_column(BigInteger)
    expiry_months: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProgramCategory(Base):
    """A category that earns at another rate: ``multiplier_bp`` (10000 = x1), or 0 when the
    category is excluded and earns nothing."""

    __tablename__ = "program_categories"
    __table_args__ = (
        Index("uq_program_categories_program_category", "program_id", "category", unique=True),
        CheckConstraint(f"multiplier_bp >= 0 AND multiplier_bp <= {MAX_MULTIPLIER_BP}",
                        name="multiplier_bp_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    category: Mapped[str] = mapped_column(String(64))
    multiplier_bp: Mapped[int] = mapped_column(Integer)


class ProgramTier(Base):
    """A tier: reached by points earned in a rolling 12 months, multiplies earning."""

    __tablename__ = "program_tiers"
    __table_args__ = (
        Index("uq_program_tiers_program_threshold", "program_id", "threshold_points",
              unique=True),
        Index("uq_program_tiers_program_name", "program_id", "name", unique=True),
        CheckConstraint("threshold_points >= 0", name="threshold_non_negative"),
        CheckConstraint(f"earn_multiplier_bp >= 1 AND earn_multiplier_bp <= {MAX_MULTIPLIER_BP}",
                        name="earn_multiplier_bp_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    threshold_points: Mapped[int] = mapped_column(BigInteger)
    earn_multiplier_bp: Mapped[int] = mapped_column(Integer)
