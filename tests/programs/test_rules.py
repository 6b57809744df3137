"""Program arithmetic without a database: rounding, categories, tiers, burn limits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patron.ledger.service import MAX_POINTS_PER_ENTRY
from patron.programs import rules
from patron.programs.errors import (
    BurnBelowMinimum,
    BurnExceedsBasket,
    EarnTooLarge,
    InvalidBasket,
    InvalidBurn,
)
from patron.programs.rules import (
    BP_ONE,
    DEFAULT_PROGRAM,
    BasketLine,
    ProgramView,
    Rounding,
    TierView,
    earn_for_basket,
)


def program(**changes: object) -> ProgramView:
    return replace(DEFAULT_PROGRAM, **changes)  # type: ignore[arg-type]


def points(amounts: list[int], rounding: Rounding, **changes: object) -> int:
    view = program(rounding=rounding, **changes)
    return earn_for_basket(view, [BasketLine(amount) for amount in amounts]).points


# --- rounding at the edges: 1 point per 100, so 150 is exactly 1.5 -------------------------

@pytest.mark.parametrize(("amount", "floor", "half_up", "ceil"), [
    (0, 0, 0, 0),
    (1, 0, 0, 1),          # 0.01
    (49, 0, 0, 1),         # 0.49
    (50, 0, 1, 1),         # exactly 0.5
    (51, 0, 1, 1),
    (99, 0, 1, 1),
    (100, 1, 1, 1),        # exact: ceil must not add one
    (101, 1, 1, 2),
    (149, 1, 1, 2),        # just below .5
    (150, 1, 2, 2),        # exactly .5
    (151, 1, 2, 2),        # just above .5
    (199, 1, 2, 2),
    (200, 2, 2, 2),
    (250, 2, 3, 3),        # .5 rounds up, not to even
])
def test_rounding_rules_at_the_edges(amount: int, floor: int, half_up: int, ceil: int) -> None:
    assert points([amount], Rounding.floor) == floor
    assert points([amount], Rounding.round_half_up) == half_up
    assert points([amount], Rounding.ceil) == ceil


@pytest.mark.parametrize(("numerator", "denominator", "floor", "half_up", "ceil"), [
    (0, 7, 0, 0, 0),
    (7, 7, 1, 1, 1),
    (3, 2, 1, 2, 2),
    (10**30 + 1, 2 * 10**30, 0, 1, 1),       # 0.5 + 1e-30
    (10**30 - 1, 2 * 10**30, 0, 0, 1),       # 0.5 - 1e-30
    (5 * 10**29, 10**30, 0, 1, 1),           # exactly 0.5 with huge terms
])
def test_apply_rounding_is_exact_with_huge_integers(numerator: int, denominator: int,
                                                    floor: int, half_up: int,
                                                    ceil: int) -> None:
    assert rules.apply_rounding(numerator, denominator, Rounding.floor) == floor
    assert rules.apply_rounding(numerator, denominator, Rounding.round_half_up) == half_up
    assert rules.apply_rounding(numerator, denominator, Rounding.ceil) == ceil


def test_apply_rounding_refuses_negative_or_zero_divisor() -> None:
    with pytest.raises(ValueError):
        rules.apply_rounding(-1, 2, Rounding.floor)
    with pytest.raises(ValueError):
        rules.apply_rounding(1, 0, Rounding.floor)


def test_rounding_is_once_per_transaction_not_per_line() -> None:
    # three lines of 0.5 points each: per line floor would give 0, per transaction 1
    assert points([50, 50, 50], Rounding.floor) == 1
    # per line ceil would give 3, per transaction 2
    assert points([50, 50, 50], Rounding.ceil) == 2
    assert points([50, 50, 50], Rounding.round_half_up) == 2  # 1.5 → 2


def test_rounding_happens_after_multipliers() -> None:
    view = program(category_multipliers_bp={"coffee": 15_000})
    # 150 x 1.5 = 225 → 2.25 points; rounding the unmultiplied 1.5 first would differ
    result = earn_for_basket(view, [BasketLine(150, "coffee")])
    assert result.exact_points == Fraction(9, 4)
    assert result.points == 2
    half_up = earn_for_basket(replace(view, rounding=Rounding.round_half_up),
                              [BasketLine(100, "coffee")], tier_multiplier_bp=10_000)
    assert half_up.points == 2  # 1.5 → 2


# --- rate, multipliers, exclusions ----------------------------------------------------------

def test_default_program_is_one_point_per_hundred_minor_units_floor() -> None:
    assert DEFAULT_PROGRAM.earn_points == 1
    assert DEFAULT_PROGRAM.earn_per_amount == 100
    assert DEFAULT_PROGRAM.rounding == Rounding.floor
    assert DEFAULT_PROGRAM.point_value_minor == 1
    assert DEFAULT_PROGRAM.min_burn == 1
    assert DEFAULT_PROGRAM.expiry_months is None
    assert DEFAULT_PROGRAM.tiers == ()


def test_earn_rate_other_than_one_per_hundred() -> None:
    # 3 points per 250: 1000 → 12 exactly; 1100 → 13.2 → 13
    view = program(earn_points=3, earn_per_amount=250)
    assert earn_for_basket(view, [BasketLine(1000)]).points == 12
    assert earn_for_basket(view, [BasketLine(1100)]).points == 13


def test_zero_earn_points_earns_nothing() -> None:
    result = earn_for_basket(program(earn_points=0), [BasketLine(10_000), BasketLine(5)])
    assert result.points == 0
    assert [line.points for line in result.lines] == [0, 0]


def test_empty_basket_earns_nothing() -> None:
    result = earn_for_basket(DEFAULT_PROGRAM, [])
    assert result.points == 0
    assert result.lines == ()


def test_zero_amount_lines_earn_nothing_and_take_no_share() -> None:
    result = earn_for_basket(DEFAULT_PROGRAM, [BasketLine(0), BasketLine(1000), BasketLine(0)])
    assert result.points == 10
    assert [line.points for line in result.lines] == [0, 10, 0]
    assert "line 1: 0 minor units, earns nothing" in result.explanation


def test_excluded_categories_earn_nothing_and_are_not_eligible() -> None:
    view = program(excluded_categories=frozenset({"tobacco", "gift_card"}))
    result = earn_for_basket(view, [BasketLine(5000, "Tobacco"), BasketLine(1000, "food"),
                                    BasketLine(3000, " GIFT_CARD ")])
    assert result.points == 10
    assert result.eligible_amount == 1000
    assert [(line.eligible_amount, line.points, line.multiplier_bp)
            for line in result.lines] == [(0, 0, 0), (1000, 10, BP_ONE), (0, 0, 0)]


def test_only_excluded_lines_earn_nothing() -> None:
    view = program(excluded_categories=frozenset({"tobacco"}))
    result = earn_for_basket(view, [BasketLine(9999, "tobacco")])
    assert result.points == 0
    assert [line.points for line in result.lines] == [0]


def test_category_and_tier_multipliers_combine() -> None:
    view = program(category_multipliers_bp={"coffee": 20_000, "sale": 5_000})
    lines = [BasketLine(1000, "coffee"), BasketLine(1000, "sale"), BasketLine(1000, None)]
    # 20 + 5 + 10 = 35, then tier x1.5 = 52.5 → floor 52
    result = earn_for_basket(view, lines, tier_multiplier_bp=15_000)
    assert result.exact_points == Fraction(105, 2)
    assert result.points == 52
    assert [line.multiplier_bp for line in result.lines] == [20_000, 5_000, BP_ONE]
    assert sum(line.points for line in result.lines) == 52
    assert [line.exact_points for line in result.lines] == [30, Fraction(15, 2), 15]


def test_unknown_and_missing_categories_earn_at_the_base_rate() -> None:
    view = program(category_multipliers_bp={"coffee": 20_000})
    assert rules.category_multiplier_bp(view, "tea") == BP_ONE
    assert rules.category_multiplier_bp(view, None) == BP_ONE
    assert rules.category_multiplier_bp(view, "COFFEE") == 20_000


@pytest.mark.parametrize("bad", [0, -1, 1_000_001, 1.5, True])
def test_tier_multiplier_must_be_whole_basis_points(bad: object) -> None:
    with pytest.raises(InvalidBasket) as caught:
        earn_for_basket(DEFAULT_PROGRAM, [BasketLine(100)], tier_multiplier_bp=bad)  # type: ignore[arg-type]
    assert caught.value.extra["field"] == "tier_multiplier_bp"


# --- per-line shares (what a return of some lines claws back) -------------------------------

def test_line_shares_sum_exactly_to_the_rounded_total() -> None:
    # 3 x 333 = 999 → 9.99 → 9 points; equal lines split 3/3/3
    result = earn_for_basket(DEFAULT_PROGRAM, [BasketLine(333)] * 3)
    assert result.points == 9
    assert [line.points for line in result.lines] == [3, 3, 3]
    # 1000 → 10 points; the lines of 1 (0.01 each) get nothing, the line of 997 all 10
    result = earn_for_basket(DEFAULT_PROGRAM, [BasketLine(1)] * 3 + [BasketLine(997)])
    assert result.points == 10
    assert [line.points for line in result.lines] == [0, 0, 0, 10]
    result = earn_for_basket(replace(DEFAULT_PROGRAM, rounding=Rounding.ceil),
                             [BasketLine(100)] * 3 + [BasketLine(1)])
    assert result.points == 4  # 3.01 → 4
    # exact shares 1.33, 1.33, 1.33, 0.013: the extra point goes to the largest remainder,
    # ties to the earlier line — never to the line that earned 0.01
    assert [line.points for line in result.lines] == [2, 1, 1, 0]


@given(st.lists(st.tuples(st.integers(0, 10**7), st.sampled_from([None, "coffee", "tobacco"])),
                max_size=30),
       st.sampled_from(list(Rounding)), st.integers(1, 100_000), st.integers(0, 50),
       st.integers(1, 10_000))
def test_property_shares_are_floor_or_ceil_and_sum_to_total(
        raw: list[tuple[int, str | None]], rounding: Rounding, tier_bp: int, earn_points: int,
        per_amount: int) -> None:
    view = program(rounding=rounding, earn_points=earn_points, earn_per_amount=per_amount,
                   category_multipliers_bp={"coffee": 25_000},
                   excluded_categories=frozenset({"tobacco"}))
    result = earn_for_basket(view, [BasketLine(amount, category) for amount, category in raw],
                             tier_multiplier_bp=tier_bp)
    assert sum(line.points for line in result.lines) == result.points
    assert result.exact_points == sum((line.exact_points for line in result.lines), Fraction(0))
    assert abs(result.points - result.exact_points) < 1
    if result.exact_points:
        for line in result.lines:
            share = result.points * line.exact_points / result.exact_points
            assert int(share) <= line.points <= -(-share.numerator // share.denominator)
    for line in result.lines:
        if line.multiplier_bp == 0 or line.amount == 0:
            assert line.points == 0


# --- currencies -----------------------------------------------------------------------------

def test_jpy_and_usd_amounts_are_both_minor_units() -> None:
    # 1 point per 100 JPY vs 1 point per 1.00 USD: the same integers, different money
    jpy = earn_for_basket(DEFAULT_PROGRAM, [BasketLine(1299, "coffee")], currency="JPY",
                          minor_units=0)
    usd = earn_for_basket(DEFAULT_PROGRAM, [BasketLine(1299, "coffee")], currency="USD",
                          minor_units=2)
    assert jpy.points == usd.points == 12
    assert jpy.explanation[:2] == ("1 point per 100 JPY", "line 1 (coffee): 1,299 JPY")
    assert usd.explanation[:2] == ("1 point per 1.00 USD", "line 1 (coffee): 12.99 USD")
    assert jpy.explanation[-1] == "12.99 points, floor once per transaction → 12 points"


def test_explanation_names_exclusions_multipliers_and_tier() -> None:
    view = program(category_multipliers_bp={"coffee": 15_000},
                   excluded_categories=frozenset({"tobacco"}), rounding=Rounding.ceil)
    result = earn_for_basket(view, [BasketLine(1000, "coffee"), BasketLine(700, "tobacco")],
                             tier_multiplier_bp=12_500, currency="USD", minor_units=2)
    assert result.explanation == (
        "1 point per 1.00 USD",
        "line 1 (coffee): 10.00 USD x 1.5",
        "line 2 (tobacco): 7.00 USD excluded, earns nothing",
        "tier multiplier x 1.25",
        "18.75 points, ceil once per transaction → 19 points",
    )


def test_explanation_marks_inexact_totals() -> None:
    view = program(earn_points=1, earn_per_amount=3)
    result = earn_for_basket(view, [BasketLine(1)])
    assert result.explanation[-1] == "≈0.3333 points, floor once per transaction → 0 points"


# --- limits ---------------------------------------------------------------------------------

def test_the_earn_limit_is_the_ledgers_limit_per_entry() -> None:
    assert rules.MAX_POINTS_PER_TRANSACTION == MAX_POINTS_PER_ENTRY
    assert rules.MAX_AMOUNT_MINOR * 10 < 2**63 - 1


def test_very_large_basket_is_exact_without_overflow() -> None:
    # 10^15 minor units at 1 per 100 x 2 (category) x 2 (tier) = 4 x 10^13 points: too many
    view = program(category_multipliers_bp={"x": 20_000})
    with pytest.raises(EarnTooLarge) as caught:
        earn_for_basket(view, [BasketLine(rules.MAX_AMOUNT_MINOR, "x")],
                        tier_multiplier_bp=20_000)
    assert caught.value.status == 422
    # just inside: 10^14 per line x 10 lines = 10^15 at 1 per 1000 = 10^12 points exactly
    lines = [BasketLine(10**14)] * 10
    result = earn_for_basket(program(earn_per_amount=1000), lines)
    assert result.points == rules.MAX_POINTS_PER_TRANSACTION
    assert [line.points for line in result.lines] == [10**11] * 10


def test_line_and_basket_amount_limits() -> None:
    with pytest.raises(InvalidBasket) as caught:
        earn_for_basket(DEFAULT_PROGRAM, [BasketLine(rules.MAX_AMOUNT_MINOR + 1)])
    assert caught.value.extra["field"] == "lines[0].amount"
    with pytest.raises(InvalidBasket) as caught:
        earn_for_basket(DEFAULT_PROGRAM, [BasketLine(rules.MAX_AMOUNT_MINOR)] * 2)
    assert caught.value.extra["field"] == "lines"
    with pytest.raises(InvalidBasket):
        earn_for_basket(DEFAULT_PROGRAM, [BasketLine(1)] * (rules.MAX_LINES + 1))


@pytest.mark.parametrize("bad", [-1, 12.5, 100.0, True, "100"])
def test_line_amounts_must_be_whole_non_negative_minor_units(bad: object) -> None:
    with pytest.raises(InvalidBasket) as caught:
        earn_for_basket(DEFAULT_PROGRAM, [BasketLine(100), BasketLine(bad)])  # type: ignore[arg-type]
    assert caught.value.extra["field"] == "lines[1].amount"
    assert caught.value.code == "invalid_basket"


# --- burning --------------------------------------------------------------------------------

def test_burn_value_is_points_times_point_value() -> None:
    assert rules.burn_value(0, 1) == 0
    assert rules.burn_value(250, 1) == 250
    assert rules.burn_value(250, 5) == 1250
    with pytest.raises(InvalidBurn):
        rules.burn_value(-1, 1)
    with pytest.raises(InvalidBurn):
        rules.burn_value(1.0, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        rules.burn_value(1, 0)


@pytest.mark.parametrize(("balance", "total", "value", "minimum", "expected"), [
    (1000, 500, 1, 1, 500),       # capped by the basket
    (300, 500, 1, 1, 300),        # capped by the balance
    (1000, 999, 10, 1, 99),       # whole points only: 99 x 10 = 990 <= 999
    (1000, 999, 10, 100, 0),      # 99 is below the minimum: nothing
    (1000, 1000, 10, 100, 100),   # exactly the minimum
    (-50, 1000, 1, 1, 0),         # in debt after a return: no burning
    (0, 1000, 1, 1, 0),
    (1000, 0, 1, 1, 0),
])
def test_max_burnable(balance: int, total: int, value: int, minimum: int,
                      expected: int) -> None:
    assert rules.max_burnable(balance=balance, basket_total_minor=total,
                              point_value_minor=value, min_burn=minimum) == expected


def test_check_burn() -> None:
    assert rules.check_burn(0, basket_total_minor=0, point_value_minor=1, min_burn=500) == 0
    assert rules.check_burn(500, basket_total_minor=500, point_value_minor=1,
                            min_burn=500) == 500
    with pytest.raises(BurnBelowMinimum) as below:
        rules.check_burn(499, basket_total_minor=10_000, point_value_minor=1, min_burn=500)
    assert below.value.extra == {"field": "points_to_burn", "min_burn": 500}
    with pytest.raises(BurnExceedsBasket) as over:
        rules.check_burn(101, basket_total_minor=1009, point_value_minor=10, min_burn=1)
    assert over.value.extra == {"field": "points_to_burn", "max_points": 100}
    assert rules.check_burn(100, basket_total_minor=1009, point_value_minor=10,
                            min_burn=1) == 1000
    with pytest.raises(InvalidBurn):
        rules.check_burn(rules.MAX_POINTS_PER_TRANSACTION + 1, basket_total_minor=10**18,
                         point_value_minor=1, min_burn=1)


# --- tiers ----------------------------------------------------------------------------------

TIERS = (TierView("Blue", 0), TierView("Silver", 1000, 12_500), TierView("Gold", 5000, 15_000))


@pytest.mark.parametrize(("earned", "tier", "upcoming", "to_next", "progress"), [
    (0, "Blue", "Silver", 1000, 0),
    (-20, "Blue", "Silver", 1000, 0),       # clamped: never below the base tier
    (999, "Blue", "Silver", 1, 9990),
    (1000, "Silver", "Gold", 4000, 0),      # the threshold itself reaches the tier
    (3000, "Silver", "Gold", 2000, 5000),
    (4999, "Silver", "Gold", 1, 9997),
    (5000, "Gold", None, None, 10_000),
    (10**12, "Gold", None, None, 10_000),
])
def test_tier_and_progress(earned: int, tier: str, upcoming: str | None, to_next: int | None,
                           progress: int) -> None:
    found = rules.tier_for(earned, TIERS)
    assert found is not None and found.name == tier
    state = rules.progress_to_next(earned, TIERS)
    assert state.current == found
    assert (state.next.name if state.next else None) == upcoming
    assert state.points_to_next == to_next
    assert state.progress_bp == progress


def test_tiers_are_taken_in_threshold_order_whatever_the_given_order() -> None:
    shuffled = (TIERS[2], TIERS[0], TIERS[1])
    assert rules.tier_for(1500, shuffled) == TIERS[1]
    assert rules.progress_to_next(1500, shuffled).next == TIERS[2]


def test_no_tiers() -> None:
    assert rules.tier_for(500, ()) is None
    state = rules.progress_to_next(500, ())
    assert (state.current, state.next, state.points_to_next, state.progress_bp) == (
        None, None, None, 10_000)


def test_below_a_first_threshold_above_zero() -> None:
    tiers = (TierView("Silver", 100),)
    assert rules.tier_for(99, tiers) is None
    state = rules.progress_to_next(25, tiers)
    assert (state.current, state.next, state.points_to_next, state.progress_bp) == (
        None, tiers[0], 75, 2500)


# --- expiry ---------------------------------------------------------------------------------

def test_points_expire_at_the_end_of_the_store_local_month() -> None:
    earned = datetime(2026, 3, 31, 16, 30, tzinfo=UTC)  # 1 April 01:30 in Tokyo
    assert rules.points_expire_at(DEFAULT_PROGRAM, earned_at=earned,
                                  timezone="Asia/Tokyo") is None
    twelve = program(expiry_months=12)
    # Tokyo: earned in April → gone at 1 May next year 00:00 JST
    assert rules.points_expire_at(twelve, earned_at=earned, timezone="Asia/Tokyo") == datetime(
        2027, 4, 30, 15, 0, tzinfo=UTC)
    # New York: still 31 March → gone at 1 April next year 00:00 EDT
    assert rules.points_expire_at(twelve, earned_at=earned,
                                  timezone="America/New_York") == datetime(
        2027, 4, 1, 4, 0, tzinfo=UTC)
