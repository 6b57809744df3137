"""Instant member stats per (member, merchant), kept up to date by each purchase.

Every counter changes with one ``INSERT … ON CONFLICT DO UPDATE`` (DESIGN rule 5): no
read-modify-write, so concurrent purchases of one member add up on both databases.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
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
