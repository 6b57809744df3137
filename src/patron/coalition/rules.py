"""Coalition arithmetic, pure: miles for a spend, the money value of miles, periods.

Values of miles are exact fractions (``miles x mile_value_milli / 1000`` minor units):
- a redemption discount is rounded **down** to a whole minor unit (the member never gets
  more than the miles are worth; at most 1 minor unit less);
- a settlement value is rounded half away from zero, once per figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_RATE = 10**9
MAX_MILES = 10**12
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class Rate:
    currency: str
    spend_per_mile: int
    mile_value_milli: int


def miles_for_spend(paid_minor: int, rate: Rate) -> int:
    """Miles earned by paying ``paid_minor``: one per whole ``spend_per_mile``, floor."""
    return max(paid_minor, 0) // rate.spend_per_mile


def redemption_discount(miles: int, rate: Rate) -> int:
    """What ``miles`` take off a bill in minor units (rounded down)."""
    return miles * rate.mile_value_milli // 1000


def settlement_value(miles: int, rate: Rate) -> int:
    """The money value of a settlement figure in minor units (half away from zero)."""
    magnitude = (abs(miles) * rate.mile_value_milli * 2 + 1000) // 2000
    return magnitude if miles >= 0 else -magnitude


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` → [first instant, first instant of the next month) in UTC."""
    match = _PERIOD.match(period)
    if match is None:
        raise ValueError(period)
    year, month = int(match.group(1)), int(match.group(2))
    if year < 1:
        raise ValueError(period)
    start = datetime(year, month, 1, tzinfo=UTC)
    end = (datetime(year + 1, 1, 1, tzinfo=UTC) if month == 12
           else datetime(year, month + 1, 1, tzinfo=UTC))
    return start, end
