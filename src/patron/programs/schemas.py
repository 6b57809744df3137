from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from patron.kit.validation import NO_CONTROL_CHARACTERS, Int64
from patron.programs.rules import (
    BP_ONE,
    MAX_MULTIPLIER_BP,
    MAX_POINTS_PER_TRANSACTION,
    Rounding,
)
from patron.tenancy.schemas import Read, Strict

# strict: 1.0, "1" and true are refused where a whole number is expected (no floats for
# value, DESIGN rule 4), rather than quietly converted.
Points = Annotated[Int64, Field(ge=0, le=MAX_POINTS_PER_TRANSACTION)]
MultiplierBp = Annotated[Int64, Field(ge=1, le=MAX_MULTIPLIER_BP,
                                    description="Basis points: 10000 = x1, 15000 = x1.5",
                                    examples=[20000])]
Category = Annotated[str, Field(min_length=1, max_length=64, pattern=NO_CONTROL_CHARACTERS,
                                examples=["coffee"])]
TierName = Annotated[str, Field(min_length=1, max_length=100, pattern=NO_CONTROL_CHARACTERS)]

MAX_CATEGORIES = 200
MAX_TIERS = 20


class TierWrite(Strict):
    name: TierName
    threshold_points: Points = Field(description="Points earned in a rolling 12 months "
                                                 "(never the balance) that reach this tier")
    earn_multiplier_bp: MultiplierBp = BP_ONE


class ProgramWrite(Strict):
    """The whole program; a PUT replaces everything, tiers and categories included."""

    earn_points: Int64 = Field(ge=0, le=1_000_000, examples=[1],
                             description="Points earned per `earn_per_amount` (0 = no earning)")
    earn_per_amount: Int64 = Field(ge=1, le=10**12, examples=[100],
                                 description="Minor units of the merchant's currency")
    rounding: Rounding = Field(default=Rounding.floor,
                               description="Applied once per transaction, after multipliers")
    category_multipliers_bp: dict[Category, MultiplierBp] = Field(
        default_factory=dict, max_length=MAX_CATEGORIES, examples=[{"coffee": 20000}],
        description="Category → multiplier in basis points (10000 = x1)")
    excluded_categories: list[Category] = Field(
        default_factory=list, max_length=MAX_CATEGORIES, examples=[["tobacco", "gift_card"]],
        description="Categories that earn nothing")
    point_value_minor: Int64 = Field(ge=1, le=10**9, examples=[1],
                                   description="Value of 1 point when burned, in minor units")
    min_burn: Int64 = Field(default=1, ge=1, le=MAX_POINTS_PER_TRANSACTION,
                            description="Fewest points a member may burn at once")
    expiry_months: Int64 | None = Field(
        ge=0, le=120,
        description="Points expire at the end of the store-local month this many months "
                    "after the earning month; null = never. Required: say it explicitly.")
    tiers: list[TierWrite] = Field(
        default_factory=list, max_length=MAX_TIERS,
        description="Empty = no tiers. Otherwise the first is the base tier (threshold 0) "
                    "and thresholds strictly increase")


class TierRead(Read):
    name: str
    threshold_points: int
    earn_multiplier_bp: int


class ProgramRead(BaseModel):
    merchant_id: uuid.UUID
    currency: str
    currency_minor_units: int
    configured: bool = Field(description="False while the merchant runs the default program")
    earn_points: int
    earn_per_amount: int
    rounding: Rounding
    category_multipliers_bp: dict[str, int]
    excluded_categories: list[str]
    point_value_minor: int
    min_burn: int
    expiry_months: int | None
    tiers: list[TierRead]
    updated_at: datetime | None


class TierProgressRead(BaseModel):
    points_earned_12m: int
    current: TierRead | None
    next: TierRead | None
    points_to_next: int | None
    progress_bp: int = Field(description="0 … 10000 of the way to the next tier")
