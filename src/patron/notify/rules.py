"""Delivery decisions: pure functions of their arguments (retry schedules, what an answer
means, which addresses a webhook may reach, which events reach a member and why)."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


class DeliveryStatus(StrEnum):
    pending = "pending"        # due at next_attempt_at (held or retried ones too)
    delivered = "delivered"
    failed = "failed"          # the dead letter: no more attempts unless replayed
    suppressed = "suppressed"  # never sent, for a reason (consent, no address, cap)


class DeliveryChannel(StrEnum):
    webhook = "webhook"
    email = "email"
    sms = "sms"
    push = "push"


class AttemptOutcome(StrEnum):
    delivered = "delivered"
    retry = "retry"
    failed = "failed"
    gone = "gone"


# Standard Webhooks' schedule: the first attempt at once, then these waits between
# attempts; after the last, the dead letter.
WEBHOOK_RETRY_WAITS: tuple[timedelta, ...] = (
    timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30), timedelta(hours=2),
    timedelta(hours=5), timedelta(hours=10), timedelta(hours=10))
# A member's message: a mail or SMS gateway that is down for minutes, not hours; a
# message a day late is worse than none.
MESSAGE_RETRY_WAITS: tuple[timedelta, ...] = (
    timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=10), timedelta(hours=1))
# Waits are spread by up to this share either way, so that failures that came together
# (a receiver down for a minute) do not all come back together.
JITTER = 0.1
# An endpoint that has failed for this long without a success is disabled.
DISABLE_AFTER_FAILING = timedelta(days=5)
# A receiver's Retry-After is honoured up to this; beyond it the schedule decides.
MAX_RETRY_AFTER = timedelta(hours=10)


def retry_waits(channel: str) -> tuple[timedelta, ...]:
    return WEBHOOK_RETRY_WAITS if channel == DeliveryChannel.webhook else MESSAGE_RETRY_WAITS


def next_attempt(*, channel: str, round_attempts: int, now: datetime,
                 retry_after: timedelta | None = None,
                 rng: random.Random | None = None) -> datetime | None:
    """When to try again after ``round_attempts`` failed attempts of this round, or None
    when they were the last (the dead letter). A receiver's ``Retry-After`` postpones the
    attempt (never brings it forward)."""
    waits = retry_waits(channel)
    if round_attempts > len(waits):
        return None
    wait = waits[round_attempts - 1]
    spread = (rng or random).uniform(-JITTER, JITTER)
    wait = wait * (1 + spread)
    if retry_after is not None:
        wait = max(wait, min(retry_after, MAX_RETRY_AFTER))
    return now + wait


def webhook_outcome(status_code: int) -> AttemptOutcome:
    """What a receiver's status means: only 2xx succeeds; 410 Gone disables the endpoint;
    everything else is tried again on the schedule."""
    if 200 <= status_code < 300:
        return AttemptOutcome.delivered
    if status_code == 410:
        return AttemptOutcome.gone
    return AttemptOutcome.retry


def push_outcome(status_code: int) -> AttemptOutcome:
    """What a push service's answer means (RFC 8030): 201 taken; 404 and 410 the
    subscription is gone; 429 and 5xx later; any other 4xx (too large, a bad key) final."""
    if 200 <= status_code < 300:
        return AttemptOutcome.delivered
    if status_code in (404, 410):
        return AttemptOutcome.gone
    if status_code == 429 or status_code >= 500:
        return AttemptOutcome.retry
    return AttemptOutcome.failed


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date (RFC 9110); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when - now, timedelta(0))


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def private_address(address: IPAddress) -> bool:
    """Whether a webhook may not reach this address unless private targets are allowed:
    loopback, private ranges, link-local (cloud metadata at 169.254.169.254), shared,
    multicast, reserved and unspecified addresses; an IPv4-mapped IPv6 address is judged
    as the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


@dataclass(frozen=True)
class Clip:
    """A text cut to a column's width."""

    limit: int

    def __call__(self, text: str) -> str:
        return text if len(text) <= self.limit else text[:self.limit - 1] + "…"


reason_text = Clip(300)


@dataclass(frozen=True)
class QuietHours:
    """A daily window (minutes after local midnight; it may wrap midnight) in which
    marketing waits."""

    start_minute: int
    end_minute: int
    timezone: str


def quiet_until(now: datetime, quiet: QuietHours) -> datetime | None:
    """When the window ``now`` falls in ends (UTC), or None when it is outside it. A
    window that starts and ends at the same minute is no window."""
    start, end = quiet.start_minute, quiet.end_minute
    if start == end:
        return None
    zone = ZoneInfo(quiet.timezone)
    local = now.astimezone(zone)
    minute = local.hour * 60 + local.minute
    wraps = start > end
    inside = (minute >= start or minute < end) if wraps else start <= minute < end
    if not inside:
        return None
    day = local.date() + timedelta(days=1) if wraps and minute >= start else local.date()
    ends = datetime.combine(day, time(end // 60, end % 60), tzinfo=zone)
    return ends.astimezone(UTC)


# The frequency cap counts a member's marketing messages from one merchant over this.
CAP_WINDOW = timedelta(days=7)
