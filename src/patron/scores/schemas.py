from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from patron.scores.rfm import Segment


class RfmRead(BaseModel):
    recency: int = Field(description="1-5, 5 the most recent fifth of the merchant's "
                                     "members")
    frequency: int = Field(description="1-5, 5 the most frequent fifth")
    monetary: int = Field(description="1-5, 5 the highest-spending fifth")
    segment: Segment
    boundaries_computed_at: datetime = Field(
        description="when the merchant's quintile boundaries were last computed")


class LifetimeRead(BaseModel):
    p_alive: float = Field(description="probability the member still buys here (BG/NBD)")
    expected_purchases_90d: float
    clv_90d_minor: int = Field(description="expected spend over the next 90 days, in the "
                                           "currency's minor unit (BG/NBD x Gamma-Gamma)")
    computed_at: datetime
    stale: bool = Field(description="true when the last refit could not recompute the "
                                    "merchant's lifetime scores: these are from the refit "
                                    "at `computed_at`")
    stale_reason: str | None = Field(description="why they could not be recomputed")


class AffinityRead(BaseModel):
    category: str
    purchases: int = Field(description="purchases that contained the category")
    quantity: int
    share: float = Field(description="purchases containing it / all the member's purchases")


class VisitRead(BaseModel):
    store_id: uuid.UUID
    visits: int
    last_visit_at: datetime


class MemberScoresRead(BaseModel):
    member_id: uuid.UUID
    merchant_id: uuid.UUID
    as_of: datetime = Field(description="when this answer was computed; the stats count "
                                        "every purchase committed until then")
    currency: str
    purchases: int
    spend_minor: int
    average_spend_minor: int | None
    first_purchase_at: datetime | None
    last_purchase_at: datetime | None
    recency_days: float | None = Field(description="days since the last purchase")
    tier: str | None
    rfm: RfmRead | None = Field(description="none before the merchant's first refit or "
                                            "the member's first purchase")
    lifetime: LifetimeRead | None = Field(description="none until the lifetime models "
                                                      "have been fitted (see `note`)")
    note: str | None = Field(description="why the last refit produced no lifetime models, "
                                         "if it did not (then `lifetime`, if any, is stale)")
    affinities: list[AffinityRead]
    visits: list[VisitRead]
