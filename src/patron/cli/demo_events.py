"""The demo's register operation events: what a shop's registers would have reported over
the last weeks — opening and closing, staff signing in and out, hourly heartbeats, item
scans following the shop's busy hours, now and then an error. Pure: the same seed, days
and opening hours give the same events; nothing here touches the database."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from patron.operations.models import EventType
from patron.operations.schemas import EventIn

# Short codes a register sends with an error event (never personal data).
ERROR_CODES = ("PRN-OUT-OF-PAPER", "PRN-COVER-OPEN", "SCN-TIMEOUT", "DRAWER-JAM",
               "NET-OFFLINE", "CARD-READER-RESET")


@dataclass(frozen=True)
class Hours:
    """A shop's opening hours and the hours its customers crowd in (local time)."""

    opens: int
    closes: int  # the hour the shop closes, 24 at midnight
    peaks: tuple[float, ...]
    scans_per_hour: float  # item scans at the first register in a peak hour on a weekday
    weekend_factor: float = 1.0


@dataclass(frozen=True)
class DemoRegister:
    """A terminal that reports events: how busy it is compared with the store's first
    register (``share``), and whether it is a till (opened, signed in, scanning) or a
    device that only reports that it is alive (a reader, the web shop)."""

    share: float
    till: bool = True


def busyness(hour: float, hours: Hours) -> float:
    """Relative crowding at a local hour: a floor of custom plus a bump at each peak."""
    return 0.25 + sum(math.exp(-((hour - peak) ** 2) / 2.0) for peak in hours.peaks)


def _at(day: date, hour: float, timezone: ZoneInfo) -> datetime:
    # Wall-clock time in the shop's zone (shops are closed when the clocks change).
    return (datetime.combine(day, time(0)) + timedelta(hours=hour)).replace(tzinfo=timezone)


def day_events(rng: random.Random, *, day: date, hours: Hours, register: DemoRegister,
               timezone: ZoneInfo) -> list[tuple[datetime, EventType, str | None]]:
    """One register's day, in time order (before sequence numbers are given)."""
    events: list[tuple[datetime, EventType, str | None]] = []

    def add(hour: float, kind: EventType, detail: str | None = None) -> None:
        events.append((_at(day, hour, timezone), kind, detail))

    if not register.till:
        # A reader or the web shop: a heartbeat every hour it is on, a rare fault.
        for hour in range(hours.opens, hours.closes):
            add(hour + rng.uniform(0, 0.05), EventType.heartbeat)
        if rng.random() < 0.08:
            add(rng.uniform(hours.opens, hours.closes - 0.1), EventType.error,
                rng.choice(ERROR_CODES))
        events.sort(key=lambda event: event[0])
        return events

    opened = hours.opens - rng.uniform(0.05, 0.25)
    closed = hours.closes - 1 + rng.uniform(0.85, 0.98)
    add(opened, EventType.open)
    add(opened + rng.uniform(0.01, 0.04), EventType.sign_in, "shift-1")
    shift_change = (hours.opens + hours.closes) / 2 + rng.uniform(-0.5, 0.5)
    add(shift_change, EventType.sign_out, "shift-1")
    add(shift_change + rng.uniform(0.01, 0.05), EventType.sign_in, "shift-2")
    weekend = day.isoweekday() >= 6
    for hour in range(hours.opens, hours.closes):
        add(hour + rng.uniform(0.0, 0.02), EventType.heartbeat)
        mean = (hours.scans_per_hour * register.share * busyness(hour + 0.5, hours)
                * (hours.weekend_factor if weekend else 1.0))
        # A customer's basket is scanned item after item: draw baskets, then their items.
        baskets = _poisson(rng, mean / 2.2)
        for _ in range(baskets):
            start = hour + rng.uniform(0.0, 0.97)
            for item in range(1 + _poisson(rng, 1.2)):
                add(min(start + item * rng.uniform(0.002, 0.006), hour + 0.999),
                    EventType.item_scan)
    if rng.random() < 0.12:
        add(rng.uniform(hours.opens, hours.closes - 0.2), EventType.error,
            rng.choice(ERROR_CODES))
    add(closed - rng.uniform(0.01, 0.04), EventType.sign_out, "shift-2")
    add(closed, EventType.close)
    events.sort(key=lambda event: event[0])
    return events


def _poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (Knuth's method; the means here are small)."""
    if mean <= 0:
        return 0
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def register_events(rng: random.Random, *, days: list[date], hours: Hours,
                    register: DemoRegister, timezone: ZoneInfo, until: datetime,
                    first_seq: int = 1) -> list[EventIn]:
    """A register's events over ``days``, numbered from ``first_seq`` in time order; events
    after ``until`` (later today) are drawn, so the draws do not depend on the hour the
    demo runs, but left out."""
    events: list[EventIn] = []
    seq = first_seq
    for day in days:
        for occurred_at, kind, detail in day_events(rng, day=day, hours=hours,
                                                    register=register, timezone=timezone):
            if occurred_at > until:
                continue
            events.append(EventIn(type=kind, occurred_at=occurred_at, seq=seq, detail=detail))
            seq += 1
    return events
