"""Referrals: a merchant's referral program, each member's referral code, and the
referrals made with them (docs/referrals.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime, sql_in


class ReferralStatus(StrEnum):
    pending = "pending"  # the referee enrolled; no qualifying purchase yet
    rewarded = "rewarded"  # the qualifying purchase came; the rewards were given
    clawed_back = "clawed_back"  # that purchase was returned; the rewards were taken back


class ReferralProgram(Base):
    """What a merchant gives for a referral, and its limits. One per merchant."""

    __tablename__ = "referral_programs"
    __table_args__ = (
        CheckConstraint("referrer_points >= 0 AND referee_points >= 0 AND "
                        "min_purchase_minor >= 0", name="non_negative"),
        CheckConstraint("monthly_cap IS NULL OR monthly_cap >= 0", name="cap_non_negative"),
    )

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referrer_offer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offers.id"))
    referee_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referee_offer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offers.id"))
    # The referee's first purchase at the merchant of at least this total qualifies.
    min_purchase_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    # Referrer rewards per referrer per calendar month (UTC); None: no cap.
    monthly_cap: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReferralCode(Base):
    """A member's referral code, and the referrer rewards given in the current month (one
    conditional UPDATE takes each, so the monthly cap holds under concurrency)."""

    __tablename__ = "referral_codes"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)
    reward_month: Mapped[str | None] = mapped_column(String(7))  # "2026-12"
    rewards_in_month: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Referral(Base):
    """A member enrolled with another member's code: the referee, once."""

    __tablename__ = "referrals"
    __table_args__ = (
        CheckConstraint(f"status IN ({sql_in(ReferralStatus)})", name="status_known"),
        Index("ix_referrals_referrer_created", "referrer_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    referrer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    referee_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    # The qualifying purchase, and what was given for it.
    transaction_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("pos_transactions.id"), index=True)
    referee_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referee_entry_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("journal_entries.id"))
    referee_voucher_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vouchers.id"))
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    referrer_entry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("journal_entries.id"))
    referrer_voucher_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("vouchers.id"))
    # The referrer got nothing for it: their monthly cap was reached, or they had left.
    referrer_refusal: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rewarded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clawed_back_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
