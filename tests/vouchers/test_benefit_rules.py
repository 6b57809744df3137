"""Benefit arithmetic (patron.vouchers.benefits.rules): pure, no database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.vouchers.benefits.rules import (
    MAX_BENEFITS_PER_PURCHASE,
    Filter,
    Line,
    Measure,
    Mode,
    counted,
    crossings,
    taken_back,
    to_issue,
)

COFFEE = Line(sku="CF-1", category="coffee", quantity=2)
BREAD = Line(sku="BR-1", category="bakery", quantity=1)


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0, 999, None), (0, 1000, (1, 1)), (999, 1000, (1, 1)), (1000, 1500, None),
    (0, 5000, (1, 1)), (500, 500, None), (1200, 900, None)])
def test_once_is_the_first_time_the_count_reaches_the_threshold(
        low: int, high: int, expected: tuple[int, int] | None) -> None:
    assert crossings(Mode.once, threshold=1000, low=low, high=high) == expected


@pytest.mark.parametrize(("low", "high", "expected"), [
    (0, 99, None), (0, 100, (1, 1)), (99, 250, (1, 2)), (100, 199, None), (100, 200, (2, 2)),
    (250, 310, (3, 3)), (0, 1000, (1, 10)), (300, 300, None)])
def test_every_passes_each_multiple_in_the_interval(low: int, high: int,
                                                    expected: tuple[int, int] | None) -> None:
    assert crossings(Mode.every, threshold=100, low=low, high=high) == expected


@given(st.integers(1, 50), st.lists(st.integers(0, 120), min_size=1, max_size=30))
def test_every_crossing_is_passed_exactly_once_however_the_count_grows(
        threshold: int, steps: list[int]) -> None:
    """Consecutive purchases split the count into disjoint intervals: together they pass
    each multiple of the threshold once, none twice, none missed."""
    passed: list[int] = []
    count = 0
    for step in steps:
        span = crossings(Mode.every, threshold=threshold, low=count, high=count + step)
        if span is not None:
            passed.extend(range(span[0], span[1] + 1))
        count += step
    assert passed == list(range(1, count // threshold + 1))


def test_one_purchase_issues_at_most_the_cap() -> None:
    assert to_issue(None) == []
    assert to_issue((3, 4)) == [3, 4]
    capped = to_issue((1, 10**12))
    assert capped == list(range(1, MAX_BENEFITS_PER_PURCHASE + 1))


def test_what_a_purchase_counts() -> None:
    lines = [COFFEE, BREAD]
    anything = Filter()
    assert counted(Measure.points, points=37, miles=5, lines=lines, only=anything) == 37
    assert counted(Measure.miles, points=37, miles=5, lines=lines, only=anything) == 5
    assert counted(Measure.purchases, points=0, miles=0, lines=lines, only=anything) == 1
    assert counted(Measure.items, points=0, miles=0, lines=lines, only=anything) == 3
    coffee = Filter(category="coffee")
    assert counted(Measure.purchases, points=0, miles=0, lines=lines, only=coffee) == 1
    assert counted(Measure.items, points=0, miles=0, lines=lines, only=coffee) == 2
    assert counted(Measure.purchases, points=0, miles=0, lines=[BREAD], only=coffee) == 0
    assert counted(Measure.items, points=0, miles=0, lines=lines,
                   only=Filter(sku="BR-1")) == 1
    assert counted(Measure.items, points=0, miles=0, lines=lines,
                   only=Filter(sku="coffee")) == 0


def test_what_a_return_takes_back() -> None:
    coffee = Filter(category="coffee")
    one_back = [(Line(sku="CF-1", category="coffee", quantity=2, returned=1), 1), (BREAD, 0)]
    assert taken_back(Measure.items, points_clawed_back=0, miles_clawed_back=0,
                      lines=one_back, only=coffee) == 1
    # One coffee of two is still kept: the purchase keeps its stamp.
    assert taken_back(Measure.purchases, points_clawed_back=0, miles_clawed_back=0,
                      lines=one_back, only=coffee) == 0
    last_back = [(Line(sku="CF-1", category="coffee", quantity=2, returned=2), 1), (BREAD, 0)]
    assert taken_back(Measure.purchases, points_clawed_back=0, miles_clawed_back=0,
                      lines=last_back, only=coffee) == 1
    # Bread alone coming back takes no coffee stamp, even once the coffee is all back.
    bread_back = [(Line(sku="CF-1", category="coffee", quantity=2, returned=2), 0),
                  (Line(sku="BR-1", category="bakery", quantity=1, returned=1), 1)]
    assert taken_back(Measure.purchases, points_clawed_back=0, miles_clawed_back=0,
                      lines=bread_back, only=coffee) == 0
    # Without a filter, the stamp goes with the last unit of the purchase.
    assert taken_back(Measure.purchases, points_clawed_back=0, miles_clawed_back=0,
                      lines=last_back, only=Filter()) == 0
    assert taken_back(Measure.purchases, points_clawed_back=0, miles_clawed_back=0,
                      lines=bread_back, only=Filter()) == 1
    assert taken_back(Measure.points, points_clawed_back=11, miles_clawed_back=4,
                      lines=one_back, only=Filter()) == 11
    assert taken_back(Measure.miles, points_clawed_back=11, miles_clawed_back=4,
                      lines=one_back, only=Filter()) == 4
