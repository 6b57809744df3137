"""Ledger arithmetic without a session: lot consumption, expiry dates, proportional shares.

Everything here is pure so that the rules can be tested exhaustively without a database;
``patron.ledger.service`` applies them under row locks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from patron.basket import split_proportionally

__all__ = ["split_proportionally"]  # decided in patron.basket, shared with the SDK


@dataclass(frozen=True)
class LotView:
    """What the consumption plan needs to know about a lot.

    ``id`` grows with creation (lots have an autoincrement key), so it is the tie-break
    for lots that expire at the same moment.
    """

    id: int
    remaining: int
    expires_at: datetime | None


@dataclass(frozen=True)
class Draw:
    lot_id: int
    amount: int


def consumption_order(lots: Iterable[LotView]) -> list[LotView]:
    """Soonest-expiring first, never-expiring last, ties by creation order."""
    return sorted(lots, key=lambda lot: (
        lot.expires_at is None,
        lot.expires_at.timestamp() if lot.expires_at is not None else 0.0,
        lot.id,
    ))


def consumption_plan(lots: Iterable[LotView], amount: int, *,
                     first: int | None = None) -> list[Draw]:
    """Which lots give ``amount`` points, and how many each.

    ``first`` names a lot to take from before the usual order (a return takes its own
    purchase's points back first). The plan may fall short when the lots hold less than
    ``amount``; the caller decides whether that is an error (burn) or a debt (claw-back).
    """
    if amount < 0:
        raise ValueError("amount must not be negative")
    ordered = consumption_order(lot for lot in lots if lot.remaining > 0)
    if first is not None:
        ordered.sort(key=lambda lot: lot.id != first)  # stable: the rest keep their order
    plan: list[Draw] = []
    left = amount
    for lot in ordered:
        if left == 0:
            break
        take = min(lot.remaining, left)
        plan.append(Draw(lot.id, take))
        left -= take
    return plan


def expiry_at(earned_at: datetime, timezone: str, months: int) -> datetime:
    """The end of the store-local month ``months`` months after the earning month, in UTC.

    "End of the month" is the first instant of the following local month: points earned
    on 15 March with ``months=0`` can be used until 31 March 23:59:59.999… local time and
    are gone at 1 April 00:00 local. ``months=12`` keeps them to the end of next March.
    """
    if earned_at.tzinfo is None:
        raise ValueError("earned_at must be timezone-aware")
    if months < 0:
        raise ValueError("months must not be negative")
    zone = ZoneInfo(timezone)
    local = earned_at.astimezone(zone)
    year, month0 = divmod(local.year * 12 + (local.month - 1) + months + 1, 12)
    return datetime(year, month0 + 1, 1, tzinfo=zone).astimezone(UTC)


def unbalanced_units(postings: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Per unit, the non-zero sums of (unit, amount) postings; empty means balanced."""
    sums: dict[str, int] = defaultdict(int)
    for unit, amount in postings:
        sums[unit] += amount
    return {unit: total for unit, total in sums.items() if total != 0}


def credit_after_debt(new_balance: int, pieces: Sequence[int]) -> list[int]:
    """How much of each credited piece becomes a lot once a debt is repaid.

    A member account that went negative through a claw-back owes points; credits repay the
    debt first. ``new_balance`` is the account balance after the credit was posted (read
    back from the same atomic UPDATE), so the points kept as lots are
    ``min(credited, max(0, new_balance))``; the debt is repaid from the first pieces.
    """
    if any(piece < 0 for piece in pieces):
        raise ValueError("pieces must not be negative")
    kept_total = min(sum(pieces), max(0, new_balance))
    repay = sum(pieces) - kept_total
    kept: list[int] = []
    for piece in pieces:
        used = min(piece, repay)
        repay -= used
        kept.append(piece - used)
    return kept


def restore_plan(draws: Sequence[int], already_restored: int, points: int) -> list[tuple[int, int]]:
    """Which of a burn's draws ``points`` returned points come from, as (index, amount).

    Restores unwind the burn like a stack: the last lot drawn is given back first (it is
    the latest-expiring of the lots the burn touched), and ``already_restored`` points
    given back by earlier partial returns are skipped.
    """
    if already_restored < 0 or points < 0:
        raise ValueError("amounts must not be negative")
    if already_restored + points > sum(draws):
        raise ValueError("cannot restore more than was drawn")
    plan: list[tuple[int, int]] = []
    skip, left = already_restored, points
    for index in reversed(range(len(draws))):
        available = draws[index]
        skipped = min(available, skip)
        skip -= skipped
        available -= skipped
        take = min(available, left)
        if take:
            plan.append((index, take))
            left -= take
        if left == 0:
            break
    return plan
