"""Ledger arithmetic, without a database."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.ledger.rules import (
    Draw,
    LotView,
    consumption_plan,
    credit_after_debt,
    expiry_at,
    restore_plan,
    split_proportionally,
    unbalanced_units,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --- expiry --------------------------------------------------------------------------

def test_the_same_instant_is_a_different_month_in_tokyo_and_los_angeles():
    # 2026-03-31 20:00 UTC: already 1 April in Tokyo (05:00), still 31 March in LA (13:00).
    instant = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)
    tokyo = expiry_at(instant, "Asia/Tokyo", 0)
    los_angeles = expiry_at(instant, "America/Los_Angeles", 0)
    # End of April in Tokyo = 1 May 00:00 JST = 30 April 15:00 UTC.
    assert tokyo == datetime(2026, 4, 30, 15, 0, tzinfo=UTC)
    # End of March in LA = 1 April 00:00 PDT (UTC-7) = 1 April 07:00 UTC.
    assert los_angeles == datetime(2026, 4, 1, 7, 0, tzinfo=UTC)


def test_months_are_counted_from_the_local_earning_month():
    instant = datetime(2026, 1, 31, 16, 0, tzinfo=UTC)  # 1 Feb 01:00 in Tokyo
    assert expiry_at(instant, "Asia/Tokyo", 1) == datetime(2026, 3, 31, 15, 0, tzinfo=UTC)
    assert expiry_at(instant, "America/Los_Angeles", 1) == datetime(
        2026, 3, 1, 8, 0, tzinfo=UTC)  # end of February, PST (UTC-8)


def test_expiry_crosses_year_ends_and_daylight_saving():
    earned = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
    # November + 12 months = end of November 2027 (PST again).
    assert expiry_at(earned, "America/Los_Angeles", 12) == datetime(
        2027, 12, 1, 8, 0, tzinfo=UTC)
    # November + 1 = end of December: the first instant of 2027 in Tokyo.
    assert expiry_at(earned, "Asia/Tokyo", 1) == datetime(2026, 12, 31, 15, 0, tzinfo=UTC)
    # Crossing into summer time: end of March 2027 in LA is 1 April 00:00 PDT.
    assert expiry_at(earned, "America/Los_Angeles", 4) == datetime(
        2027, 4, 1, 7, 0, tzinfo=UTC)


def test_expiry_needs_an_aware_time_and_a_sensible_month_count():
    with pytest.raises(ValueError):
        expiry_at(datetime(2026, 1, 1), "Asia/Tokyo", 1)
    with pytest.raises(ValueError):
        expiry_at(T0, "Asia/Tokyo", -1)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1),
                    timezones=st.just(UTC)),
       st.sampled_from(["Asia/Tokyo", "America/Los_Angeles", "Europe/London",
                        "Australia/Lord_Howe", "Pacific/Kiritimati"]),
       st.integers(0, 36))
def test_expiry_is_always_a_local_month_start_after_the_earning(earned, zone, months):
    from zoneinfo import ZoneInfo

    expires = expiry_at(earned, zone, months)
    assert expires > earned
    local = expires.astimezone(ZoneInfo(zone))
    assert (local.day, local.hour, local.minute) == (1, 0, 0)
    earned_local = earned.astimezone(ZoneInfo(zone))
    assert (local.year * 12 + local.month) - (earned_local.year * 12 + earned_local.month) \
        == months + 1


# --- consumption ---------------------------------------------------------------------

def test_soonest_expiring_first_never_expiring_last_ties_by_creation():
    lots = [
        LotView(id=1, remaining=10, expires_at=None),
        LotView(id=2, remaining=10, expires_at=T0 + timedelta(days=30)),
        LotView(id=3, remaining=10, expires_at=T0 + timedelta(days=10)),
        LotView(id=5, remaining=10, expires_at=T0 + timedelta(days=30)),
        LotView(id=4, remaining=10, expires_at=T0 + timedelta(days=30)),
    ]
    assert consumption_plan(lots, 45) == [Draw(3, 10), Draw(2, 10), Draw(4, 10), Draw(5, 10),
                                          Draw(1, 5)]


def test_a_named_first_lot_gives_first_and_empty_lots_are_skipped():
    lots = [
        LotView(id=1, remaining=5, expires_at=T0),
        LotView(id=2, remaining=0, expires_at=T0),
        LotView(id=3, remaining=8, expires_at=None),
    ]
    assert consumption_plan(lots, 10, first=3) == [Draw(3, 8), Draw(1, 2)]
    assert consumption_plan(lots, 0) == []


def test_a_short_plan_takes_everything_there_is():
    lots = [LotView(id=1, remaining=5, expires_at=None), LotView(id=2, remaining=3,
                                                                  expires_at=T0)]
    assert consumption_plan(lots, 100) == [Draw(2, 3), Draw(1, 5)]


@given(st.lists(st.tuples(st.integers(0, 50), st.none() | st.integers(0, 5)), max_size=8),
       st.integers(0, 300))
def test_plans_never_overdraw_a_lot_and_take_exactly_what_they_can(specs, amount):
    lots = [LotView(id=i, remaining=r, expires_at=None if d is None else T0 + timedelta(d))
            for i, (r, d) in enumerate(specs)]
    plan = consumption_plan(lots, amount)
    by_id = {lot.id: lot for lot in lots}
    assert sum(d.amount for d in plan) == min(amount, sum(lot.remaining for lot in lots))
    assert all(0 < d.amount <= by_id[d.lot_id].remaining for d in plan)
    assert len({d.lot_id for d in plan}) == len(plan)
    # Only the last lot of a plan is left partly used.
    assert all(d.amount == by_id[d.lot_id].remaining for d in plan[:-1])


# --- proportional shares ----------------------------------------------------------------

def test_largest_remainder_examples():
    assert split_proportionally(100, [1, 1, 1]) == [34, 33, 33]
    assert split_proportionally(10, [1, 2, 3, 4]) == [1, 2, 3, 4]
    assert split_proportionally(5, [3, 3]) == [3, 2]  # a tie goes to the earlier part
    assert split_proportionally(-100, [1, 1, 1]) == [-34, -33, -33]
    assert split_proportionally(7, [0, 5, 0]) == [0, 7, 0]
    assert split_proportionally(0, [4, 9]) == [0, 0]
    assert split_proportionally(1, [1] * 7) == [1, 0, 0, 0, 0, 0, 0]


def test_splits_refuse_nonsense():
    for weights in ([], [0, 0], [1, -1]):
        with pytest.raises(ValueError):
            split_proportionally(10, weights)


@given(st.integers(-(10**12), 10**12),
       st.lists(st.integers(0, 10**9), min_size=1, max_size=12).filter(any))
def test_parts_always_sum_to_the_whole_and_stay_within_one_of_the_exact_share(total, weights):
    parts = split_proportionally(total, weights)
    assert sum(parts) == total
    weight_sum = sum(weights)
    for part, weight in zip(parts, weights, strict=True):
        exact_times_sum = total * weight  # exact share = this / weight_sum
        assert abs(part * weight_sum - exact_times_sum) < weight_sum
        if weight == 0:
            assert part == 0


# --- balancing, debts and restores ------------------------------------------------------

def test_unbalanced_units_reports_each_unit_separately():
    assert unbalanced_units([("points", 10), ("points", -10), ("miles", 3)]) == {"miles": 3}
    assert unbalanced_units([("points", 10), ("points", -10)]) == {}
    assert unbalanced_units([]) == {}


def test_credits_repay_a_debt_before_becoming_lots():
    assert credit_after_debt(30, [80]) == [30]  # was -50
    assert credit_after_debt(-20, [30]) == [0]  # was -50, still owes 20
    assert credit_after_debt(40, [30]) == [30]  # no debt
    assert credit_after_debt(5, [10, 10]) == [0, 5]  # the first pieces repay


def test_restores_unwind_the_last_draw_first():
    draws = [10, 20, 5]
    assert restore_plan(draws, 0, 7) == [(2, 5), (1, 2)]
    assert restore_plan(draws, 7, 20) == [(1, 18), (0, 2)]
    assert restore_plan(draws, 27, 8) == [(0, 8)]
    with pytest.raises(ValueError):
        restore_plan(draws, 30, 6)
