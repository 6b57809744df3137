"""Benefit arithmetic without a session: what a purchase counts towards a rule, what a
return takes back, and which crossings of a threshold a change of the count passes.

A rule's count is cumulative (points earned, miles earned, purchases, items bought).
``once``: one benefit when the count first reaches the threshold. ``every``: a benefit at
each multiple of the threshold — the k-th *crossing* is reached at ``k x threshold``.
A count moving from ``before`` to ``after`` passes the crossings in ``(before, after]``;
the same interval read downwards (a return) is the crossings it undoes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Measure(StrEnum):
    points = "points"        # points earned at the merchant
    miles = "miles"          # coalition miles earned anywhere (the operator's rules)
    purchases = "purchases"  # purchases (visits) at the merchant: a stamp card
    items = "items"          # units bought at the merchant: a stamp per item


class Mode(StrEnum):
    once = "once"
    every = "every"


STAMP_MEASURES = (Measure.purchases, Measure.items)
MAX_THRESHOLD = 10**12
MAX_BENEFITS_PER_PURCHASE = 100
"""The most benefits one purchase issues from one rule: a guard against a rule set far
too low (every point) issuing millions of codes; the count still moves by all of it."""


@dataclass(frozen=True)
class Line:
    """A purchase line as a stamp card sees it: ``category`` normalised; ``returned``
    units brought back so far."""

    sku: str
    category: str | None
    quantity: int
    returned: int = 0


@dataclass(frozen=True)
class Filter:
    sku: str | None = None
    category: str | None = None

    def matches(self, line: Line) -> bool:
        if self.sku is not None:
            return line.sku == self.sku
        if self.category is not None:
            return line.category == self.category
        return True


def counted(measure: Measure, *, points: int, miles: int, lines: Sequence[Line],
            only: Filter) -> int:
    """What a purchase by an identified member adds to a rule's count."""
    if measure == Measure.points:
        return points
    if measure == Measure.miles:
        return miles
    matching = [line for line in lines if only.matches(line)]
    if measure == Measure.purchases:
        return 1 if matching else 0
    return sum(line.quantity for line in matching)


def taken_back(measure: Measure, *, points_clawed_back: int, miles_clawed_back: int,
               lines: Sequence[tuple[Line, int]], only: Filter) -> int:
    """What a return takes back from a rule's count.

    ``lines``: every line of the purchase with the units this return brings back (0 for
    a line it does not touch); each line's ``returned`` already counts them. Points and
    miles go back by what the return takes back of the purchase's earn; items by the
    matching units; a purchase (a stamp) when the last matching unit of it comes back.
    """
    if measure == Measure.points:
        return points_clawed_back
    if measure == Measure.miles:
        return miles_clawed_back
    matching = [(line, units) for line, units in lines if only.matches(line)]
    if measure == Measure.items:
        return sum(units for _, units in matching)
    now = sum(units for _, units in matching)
    left = sum(line.quantity - line.returned for line, _ in matching)
    return 1 if now and not left else 0


def crossings(mode: Mode, *, threshold: int, low: int, high: int) -> tuple[int, int] | None:
    """The first and last crossing numbers in the count interval ``(low, high]``; None
    when it holds none."""
    if high <= low:
        return None
    if mode == Mode.once:
        return (1, 1) if low < threshold <= high else None
    first, last = low // threshold + 1, high // threshold
    return (first, last) if first <= last else None


def to_issue(span: tuple[int, int] | None) -> list[int]:
    """The crossings one purchase issues benefits for: the first
    ``MAX_BENEFITS_PER_PURCHASE`` of the span."""
    if span is None:
        return []
    first, last = span
    return list(range(first, min(last, first + MAX_BENEFITS_PER_PURCHASE - 1) + 1))


def position(mode: Mode, *, threshold: int, count: int) -> tuple[int, int]:
    """Where a member's count stands on a rule, as a card shows it: (filled, completed).
    ``every``: the stamps on the current card (``count`` mod ``threshold``) and the cards
    completed; ``once``: the count up to the threshold, and 1 once it is reached."""
    if mode == Mode.every:
        return count % threshold, count // threshold
    return min(count, threshold), 1 if count >= threshold else 0
