"""The operator's coalition rates, one row per currency.

A purchase in a currency with no rate earns no miles and cannot be paid with miles.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow


class CoalitionRate(Base):
    __tablename__ = "coalition_rates"
    __table_args__ = (
        CheckConstraint("spend_per_mile >= 1", name="spend_per_mile_positive"),
        CheckConstraint("mile_value_milli >= 1", name="mile_value_positive"),
    )

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    # Minor units of spend that earn one mile (100 with JPY: 1 mile per 100 yen).
    spend_per_mile: Mapped[int] = mapped_column(BigInteger)
    # What one mile is worth in thousandths of a minor unit of this currency: 1000 with JPY
    # is 1 yen a mile; 670 with USD is 0.67 cent. Used for redemption and settlement.
    mile_value_milli: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
