from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from patron.kit.validation import Flag, Int32, Int64
from patron.tenancy.schemas import Read, Strict

MAX_POINTS = 10**9


class ReferralProgramWrite(Strict):
    """The whole program; a PUT replaces it."""

    active: Flag = True
    referrer_points: Int64 = Field(default=0, ge=0, le=MAX_POINTS,
                                 description="Points the referrer earns per qualified referee")
    referrer_offer_id: uuid.UUID | None = Field(
        default=None, description="An offer whose personal code the referrer gets")
    referee_points: Int64 = Field(default=0, ge=0, le=MAX_POINTS,
                                description="Points the referee earns on qualifying")
    referee_offer_id: uuid.UUID | None = Field(
        default=None, description="An offer whose personal code the referee gets")
    min_purchase_minor: Int64 = Field(
        default=0, ge=0, le=10**12,
        description="The referee's first purchase at this merchant with at least this total "
                    "(minor units) qualifies")
    monthly_cap: Int32 | None = Field(
        default=None, ge=0, le=100_000,
        description="Referrer rewards per referrer per calendar month (UTC); null: no cap")


class ReferralProgramRead(Read):
    merchant_id: uuid.UUID
    configured: bool
    active: bool
    referrer_points: int
    referrer_offer_id: uuid.UUID | None
    referee_points: int
    referee_offer_id: uuid.UUID | None
    min_purchase_minor: int
    monthly_cap: int | None
    updated_at: datetime | None


class ReferredBy(BaseModel):
    referral_id: uuid.UUID
    status: str
    created_at: datetime
    rewarded_at: datetime | None
    clawed_back_at: datetime | None


class ReferralCounts(BaseModel):
    pending: int
    rewarded: int
    clawed_back: int
    referrer_rewards_this_month: int = Field(
        description="Rewards this member got as a referrer this calendar month (UTC)")


class MemberReferralRead(BaseModel):
    member_id: uuid.UUID
    code: str = Field(description="The member's referral code, to share")
    link: str = Field(description="The merchant's sign-up page with the code")
    referred_by: ReferredBy | None = Field(description="This member's own referral, if any")
    referrals: ReferralCounts = Field(description="The members this member referred")
