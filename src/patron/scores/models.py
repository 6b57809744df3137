"""Instant member stats per (member, merchant), kept up to date by each purchase.

Every counter changes with one ``INSERT … ON CONFLICT DO UPDATE`` (DESIGN rule 5): no
read-modify-write, so concurrent purchases of one member add up on both databases.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime


class MemberStats(Base):
    __tablename__ = "member_stats"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True, index=True)
    first_purchase_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_purchase_at: Mapped[datetime] = mapped_column(UTCDateTime)
    purchase_count: Mapped[int] = mapped_column(BigInteger)
    # Amount paid (after any points discount), in the merchant's currency's minor unit.
    spend_minor: Mapped[int] = mapped_column(BigInteger)
    # What the first purchase paid: the repeat purchases' mean spend, which the lifetime
    # value model takes, is (spend_minor - first_spend_minor) / (purchase_count - 1).
    first_spend_minor: Mapped[int] = mapped_column(BigInteger)


class MemberPurchaseDay(Base):
    """A member's purchases at a merchant on one store-local day: one transaction of the
    lifetime models (BG/NBD counts days with a purchase, not receipts). The merchant leads
    the key: the refit reads one merchant's days."""

    __tablename__ = "member_purchase_days"

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    purchase_count: Mapped[int] = mapped_column(BigInteger)
    # Paid that day less what was refunded of those purchases, in the minor unit.
    spend_minor: Mapped[int] = mapped_column(BigInteger)


class MemberCategoryCount(Base):
    """Per category: how many purchases contained it and how many units were bought."""

    __tablename__ = "member_category_counts"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True, index=True)
    category: Mapped[str] = mapped_column(String(64), primary_key=True)
    purchase_count: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(BigInteger)


class MemberStoreVisit(Base):
    """Purchases per store (the web shop is a store too), with the last one's time."""

    __tablename__ = "member_store_visits"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), primary_key=True,
                                                index=True)
    visit_count: Mapped[int] = mapped_column(BigInteger)
    last_visit_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ScoreModel(Base):
    """A merchant's scoring models, refitted by the scheduled job (``scores.refit``): the
    RFM quintile boundaries of its members, and its lifetime models' parameters (none
    when they could not be fitted, with the reason in ``note``). While ``note`` is set,
    the members' lifetime scores still stored are those of an earlier refit: stale."""

    __tablename__ = "score_models"

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    fitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    members: Mapped[int] = mapped_column(Integer)
    repeat_members: Mapped[int] = mapped_column(Integer)
    # {"recency_days": [4 cuts], "frequency": [...], "spend_minor": [...]}
    rfm_boundaries: Mapped[dict[str, list[float]]] = mapped_column(JSON)
    bgnbd: Mapped[dict[str, float] | None] = mapped_column(JSON)  # r, alpha, a, b
    gamma_gamma: Mapped[dict[str, float] | None] = mapped_column(JSON)  # p, q, v
    # How the lifetime models were fitted: "maximum_likelihood", or "penalised" (the
    # small-merchant fallback, docs/scores.md); none without a model.
    fit_method: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(String(500))


class MemberScore(Base):
    """A member's lifetime scores at a merchant, as of the last refit."""

    __tablename__ = "member_scores"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True, index=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    p_alive: Mapped[float] = mapped_column(Float)
    expected_purchases_90d: Mapped[float] = mapped_column(Float)
    # Expected spend over the next 90 days, in the merchant's currency's minor unit.
    clv_90d_minor: Mapped[int] = mapped_column(BigInteger)
