"""Campaigns: a trigger, conditions, actions, limits and a control group."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime


class Trigger(StrEnum):
    checkout = "checkout"
    enrolment = "enrolment"
    visit = "visit"  # a tap at a reader
    birthday = "birthday"
    tier_change = "tier_change"
    referral_qualified = "referral_qualified"
    schedule = "schedule"


class CampaignStatus(StrEnum):
    active = "active"
    paused = "paused"


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (Index("ix_campaigns_merchant_trigger", "merchant_id", "trigger"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # None: a coalition campaign (the operator's), at every merchant.
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"))
    name: Mapped[str] = mapped_column(String(200))
    trigger: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16))
    # The condition tree as written (``campaigns.conditions``); checked when stored.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSON)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    store_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    per_member_count: Mapped[int | None] = mapped_column(Integer)
    per_member_days: Mapped[int | None] = mapped_column(Integer)
    # The budget, in outcomes; outcomes_count is taken by one conditional UPDATE each.
    max_outcomes: Mapped[int | None] = mapped_column(BigInteger)
    outcomes_count: Mapped[int] = mapped_column(BigInteger, default=0)
    control_share_bp: Mapped[int] = mapped_column(Integer, default=0)
    # A schedule campaign's days and hour in the merchant's time zone:
    # {"weekdays": [1, ..., 7], "hour": 0-23}; None for the other triggers.
    schedule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    valid_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WeatherCondition(StrEnum):
    sunny = "sunny"
    cloudy = "cloudy"
    fog = "fog"
    drizzle = "drizzle"
    rain = "rain"
    storm = "storm"
    snow = "snow"


class StoreWeather(Base):
    """The last weather reported for a store (pushed, or pulled from a feed)."""

    __tablename__ = "store_weather"

    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), primary_key=True)
    condition: Mapped[str] = mapped_column(String(16))
    temperature_c: Mapped[float | None] = mapped_column(Float)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StoreStock(Base):
    """A store's stock of one SKU and whether it is overstocked, as last reported."""

    __tablename__ = "store_stock"

    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    overstock: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CampaignOutcome(Base):
    """A campaign that fired for a member — at a checkout, or on another trigger's
    occasion — what it gave, or that the member was held out (the control group, recorded
    for the uplift). Once per campaign and checkout, or per campaign, member and
    occasion."""

    __tablename__ = "campaign_outcomes"
    __table_args__ = (
        Index("ix_campaign_outcomes_campaign_member", "campaign_id", "member_id",
              "created_at"),
        Index("uq_campaign_outcomes_campaign_transaction", "campaign_id", "transaction_id",
              unique=True),
        Index("uq_campaign_outcomes_campaign_occasion", "campaign_id", "member_id",
              "occasion", unique=True),
        CheckConstraint("(transaction_id IS NULL) <> (occasion IS NULL)",
                        name="checkout_or_occasion"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    # The checkout's purchase; None for the other triggers, whose ``occasion`` says what
    # happened ("enrolment", "visit:<tap>", "birthday:2026", "schedule:2026-12-07", ...).
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("pos_transactions.id"))
    occasion: Mapped[str | None] = mapped_column(String(80))
    held_out: Mapped[bool] = mapped_column(Boolean)
    voucher_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vouchers.id"))
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
