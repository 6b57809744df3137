"""What members' balances and ledger history look like over HTTP (read only)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from patron.ledger.models import EntryKind, Unit


class TierStep(BaseModel):
    name: str
    threshold_points: int = Field(description="Points earned in a rolling 12 months that "
                                              "reach this tier")
    earn_multiplier_bp: int = Field(description="Basis points: 10000 = x1")


class TierStatus(BaseModel):
    """The member's tier at one merchant, from the points earned there in 365 days."""

    name: str | None = Field(description="The current tier; null when the merchant's "
                                         "program has no tiers")
    earn_multiplier_bp: int = Field(description="The current tier's earn multiplier "
                                                "(10000 = x1, also without tiers)")
    points_earned_12m: int = Field(description="Points earned at the merchant in the last "
                                               "365 days, less returns (never the balance)")
    next: TierStep | None = Field(description="The next tier; null at the top or without "
                                              "tiers")
    points_to_next: int | None = Field(description="Points still to earn for the next "
                                                   "tier; null at the top")
    progress_bp: int = Field(description="0 … 10000 of the way from the current tier's "
                                         "threshold to the next (10000 at the top)")


class NextExpiry(BaseModel):
    at: datetime
    points: int = Field(description="Points that expire at that moment")


class PointsBalance(BaseModel):
    merchant_id: uuid.UUID
    merchant_name: str
    currency: str
    balance: int = Field(description="Points held at the merchant; negative = owed after "
                                     "a returned purchase whose points were already spent")
    expiring_30d: int = Field(description="Points whose expiry falls after now and at most "
                                          "30 days from now")
    next_expiry: NextExpiry | None = Field(description="The soonest future expiry with "
                                                       "points left; null if none")
    tier: TierStatus


class MilesBalance(BaseModel):
    balance: int = Field(description="Coalition miles, shared by every merchant")


class Balances(BaseModel):
    member_id: uuid.UUID
    as_of: datetime
    points: list[PointsBalance] = Field(
        description="One entry per merchant: the caller's own merchant for merchant and "
                    "terminal keys; for the operator every merchant the member belongs to "
                    "or holds points at (only `merchant_id` when given)")
    miles: MilesBalance
    tier: TierStatus | None = Field(
        description="The tier at the caller's merchant (or `merchant_id`); null for the "
                    "operator without `merchant_id`")


class LedgerItem(BaseModel):
    entry_id: uuid.UUID
    kind: EntryKind
    merchant_id: uuid.UUID | None = Field(description="Where it happened; null only for "
                                                      "coalition-level miles")
    merchant_name: str | None
    unit: Unit
    points: int = Field(description="Signed change to the member's account, in `unit`")
    occurred_at: datetime
    recorded_at: datetime
    source: str = Field(description="Which system wrote it, e.g. `pos:<terminal id>`, "
                                    "`tap`, `expiry:lot:<id>`")
    reason: str = Field(description="Human-readable, in English",
                        examples=["Earned at Cafe Ginza — receipt R-123"])
    reverses_entry_id: uuid.UUID | None = Field(description="For a return: the earn or "
                                                            "burn it gives back or takes back")


class LedgerPage(BaseModel):
    items: list[LedgerItem] = Field(description="Newest first (by `occurred_at`)")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null "
                                                "on the last page")
