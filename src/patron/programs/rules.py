"""Points-program arithmetic without a session: earn on a basket, burn value, tiers.

Everything is integer or exact-rational arithmetic (DESIGN rule 4): amounts are integers in
the currency's minor unit, points are integers, multipliers are basis points
(10000 = x1). A basket's exact points are a fraction that is rounded **once per
transaction**, after every multiplier, by the program's rounding rule; the rounded total
is then split over the lines in proportion to their exact points (largest remainder, see
``patron.ledger.rules.split_proportionally``) so that the line shares sum exactly to the
total — a later return of some lines claws back exactly their shares.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from fractions import Fraction
from typing import NamedTuple

from patron import basket
from patron.ledger.rules import expiry_at, split_proportionally
from patron.programs.errors import (
    BurnBelowMinimum,
    BurnExceedsBasket,
    EarnTooLarge,
    InvalidBasket,
    InvalidBurn,
)

BP_ONE = 10_000
"""Basis points of a multiplier of one."""

MAX_MULTIPLIER_BP = 1_000_000
"""x100: the largest category or tier multiplier."""

MAX_AMOUNT_MINOR = 10**15
"""The largest line amount and basket total, in minor units (10 trillion dollars; a
quadrillion yen). Far below BIGINT (9.2 x 10^18), so totals of many baskets still fit."""

MAX_POINTS_PER_TRANSACTION = 10**12
"""The most points one basket may earn or burn: the ledger's limit per journal entry."""

MAX_LINES = 10_000


class Rounding(StrEnum):
    """How a basket's exact points become whole points (applied once per transaction)."""

    floor = "floor"
    round_half_up = "round_half_up"
    ceil = "ceil"


@dataclass(frozen=True)
class TierView:
    name: str
    threshold_points: int
    earn_multiplier_bp: int = BP_ONE


@dataclass(frozen=True)
class ProgramView:
    """A program's rules as plain values (what the POS pipeline needs).

    Categories are already normalised (``normalise_category``). ``tiers`` are ordered by
    threshold.
    """

    earn_points: int
    earn_per_amount: int
    rounding: Rounding
    point_value_minor: int
    min_burn: int
    expiry_months: int | None
    category_multipliers_bp: Mapping[str, int] = field(default_factory=dict)
    excluded_categories: frozenset[str] = frozenset()
    tiers: tuple[TierView, ...] = ()


DEFAULT_PROGRAM = ProgramView(
    earn_points=1,
    earn_per_amount=100,
    rounding=Rounding.floor,
    point_value_minor=1,
    min_burn=1,
    expiry_months=None,
)
"""What a merchant that never configured its program gets: 1 point per 100 minor units
(per 100 JPY, per 1.00 USD), floor, 1 point = 1 minor unit when burned (so 1 % back),
burns of any size from 1 point, points never expire, no categories, no tiers."""


def normalise_category(category: str) -> str:
    """Categories match without regard to case or surrounding spaces."""
    return basket.normalise_category(category)


def category_multiplier_bp(program: ProgramView, category: str | None) -> int:
    """The line's category multiplier; 0 for an excluded category, x1 for any other."""
    return basket.category_multiplier_bp(program.category_multipliers_bp,
                                         program.excluded_categories, category)


def apply_rounding(numerator: int, denominator: int, rounding: Rounding) -> int:
    """``numerator / denominator`` (both >= 0, denominator > 0) as a whole number."""
    return basket.apply_rounding(numerator, denominator, str(rounding))


# --- earning ------------------------------------------------------------------------------

class BasketLine(NamedTuple):
    """One basket line: its amount after line discounts, in minor units, and category.
    (Tuples: a checkout makes one per line, several times cheaper than a dataclass.)"""

    amount: int
    category: str | None = None


class LineEarn(NamedTuple):
    line_index: int
    amount: int
    eligible_amount: int
    multiplier_bp: int
    weight: int  # exact points = weight / denominator
    denominator: int
    points: int

    @property
    def exact_points(self) -> Fraction:
        return Fraction(self.weight, self.denominator)


@dataclass(frozen=True)
class EarnResult:
    points: int
    exact_points: Fraction
    eligible_amount: int
    tier_multiplier_bp: int
    rounding: Rounding
    lines: tuple[LineEarn, ...]
    explanation: tuple[str, ...]


def _is_int(value: object) -> bool:
    # bool is an int subclass; a float (even 2.0) is never a value here (rule 4).
    return isinstance(value, int) and not isinstance(value, bool)


def _check_multiplier(value: int, field_name: str) -> None:
    if not _is_int(value) or not 0 < value <= MAX_MULTIPLIER_BP:
        raise InvalidBasket(f"{field_name} must be a whole number of basis points from 1 to "
                            f"{MAX_MULTIPLIER_BP}", field=field_name)


def earn_for_basket(program: ProgramView, lines: Sequence[BasketLine],
                    tier_multiplier_bp: int = BP_ONE, *,
                    currency: str | None = None, minor_units: int | None = None,
                    explain: bool = True) -> EarnResult:
    """Points a basket earns, with each line's share and a human-readable explanation.

    Exact points = Σ eligible amount x earn_points x category multiplier x tier multiplier
    / earn_per_amount; rounded once by the program's rule; split over the lines in
    proportion to their exact points. ``currency`` / ``minor_units`` only shape the
    explanation (amounts shown as 12.99 USD rather than 1299 minor units); with
    ``explain=False`` (a commit, which shows none) the explanation is left empty.
    """
    _check_multiplier(tier_multiplier_bp, "tier_multiplier_bp")
    if len(lines) > MAX_LINES:
        raise InvalidBasket(f"at most {MAX_LINES} lines", field="lines")
    show = _MoneyFormat(currency, minor_units)
    denominator = basket.earn_denominator(program.earn_per_amount)
    weights: list[int] = []
    eligible: list[int] = []
    multipliers: list[int] = []
    basket_total = 0
    for index, line in enumerate(lines):
        if not _is_int(line.amount) or not 0 <= line.amount <= MAX_AMOUNT_MINOR:
            raise InvalidBasket(f"a line amount must be a whole number of minor units from 0 "
                                f"to {MAX_AMOUNT_MINOR}", field=f"lines[{index}].amount")
        basket_total += line.amount
        multiplier = category_multiplier_bp(program, line.category)
        multipliers.append(multiplier)
        eligible.append(line.amount if multiplier else 0)
        weights.append(basket.earn_weight(line.amount, earn_points=program.earn_points,
                                          multiplier_bp=multiplier,
                                          tier_multiplier_bp=tier_multiplier_bp))
    if basket_total > MAX_AMOUNT_MINOR:
        raise InvalidBasket(f"the basket total must not exceed {MAX_AMOUNT_MINOR} minor units",
                            field="lines")
    numerator = sum(weights)
    total = apply_rounding(numerator, denominator, program.rounding)
    if total > MAX_POINTS_PER_TRANSACTION:
        raise EarnTooLarge(f"the basket would earn {total} points; one transaction may earn "
                           f"at most {MAX_POINTS_PER_TRANSACTION}", field="lines")
    shares = (split_proportionally(total, weights) if numerator
              else [0] * len(weights))
    line_results = tuple(
        LineEarn(index, line.amount, eligible[index], multipliers[index], weights[index],
                 denominator, shares[index])
        for index, line in enumerate(lines))
    exact = Fraction(numerator, denominator)
    if not explain:
        return EarnResult(points=total, exact_points=exact, eligible_amount=sum(eligible),
                          tier_multiplier_bp=tier_multiplier_bp, rounding=program.rounding,
                          lines=line_results, explanation=())

    explanation = [f"{_count(program.earn_points, 'point')} per "
                   f"{show(program.earn_per_amount)}"]
    for result, line in zip(line_results, lines, strict=True):
        label = f"line {result.line_index + 1}" + (f" ({line.category})" if line.category else "")
        if result.multiplier_bp == 0:
            explanation.append(f"{label}: {show(result.amount)} excluded, earns nothing")
        elif result.amount == 0:
            explanation.append(f"{label}: {show(0)}, earns nothing")
        else:
            times = ("" if result.multiplier_bp == BP_ONE
                     else f" x {_multiplier(result.multiplier_bp)}")
            explanation.append(f"{label}: {show(result.amount)}{times}")
    if tier_multiplier_bp != BP_ONE:
        explanation.append(f"tier multiplier x {_multiplier(tier_multiplier_bp)}")
    explanation.append(f"{_fraction(exact)} points, {program.rounding.value} once per "
                       f"transaction → {_count(total, 'point')}")
    return EarnResult(points=total, exact_points=exact, eligible_amount=sum(eligible),
                      tier_multiplier_bp=tier_multiplier_bp, rounding=program.rounding,
                      lines=line_results, explanation=tuple(explanation))


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _multiplier(bp: int) -> str:
    whole, part = divmod(bp, BP_ONE)
    return str(whole) if part == 0 else f"{whole}.{part:04d}".rstrip("0")


def _fraction(value: Fraction) -> str:
    """Exact when it has at most 4 decimals, else '≈' and 4 decimals (display only)."""
    scaled = value * 10_000
    shown = apply_rounding(scaled.numerator, scaled.denominator, Rounding.round_half_up)
    whole, part = divmod(shown, 10_000)
    text = f"{whole:,}" if part == 0 else f"{whole:,}.{part:04d}".rstrip("0")
    return text if scaled.denominator == 1 else f"≈{text}"


@dataclass(frozen=True)
class _MoneyFormat:
    currency: str | None
    minor_units: int | None

    def __call__(self, amount: int) -> str:
        if self.currency is None or self.minor_units is None:
            return f"{amount:,} minor units"
        if self.minor_units == 0:
            return f"{amount:,} {self.currency}"
        whole, part = divmod(amount, 10**self.minor_units)
        return f"{whole:,}.{part:0{self.minor_units}d} {self.currency}"


# --- burning ------------------------------------------------------------------------------

def burn_value(points: int, point_value_minor: int) -> int:
    """What ``points`` are worth as a discount, in minor units."""
    if not _is_int(points) or points < 0:
        raise InvalidBurn("points must be a whole number, zero or more", field="points_to_burn")
    if not _is_int(point_value_minor) or point_value_minor <= 0:
        raise ValueError("a point's value must be a positive whole number of minor units")
    return points * point_value_minor


def max_burnable(*, balance: int, basket_total_minor: int, point_value_minor: int,
                 min_burn: int) -> int:
    """The most points a member may burn on this basket (0 = none).

    Whole points only, never worth more than the basket, never more than the balance (a
    member in debt can burn nothing); 0 when that maximum is below the program's minimum.
    """
    if basket_total_minor < 0 or point_value_minor <= 0:
        raise ValueError("basket total must be >= 0 and point value > 0")
    most = min(max(balance, 0), basket_total_minor // point_value_minor,
               MAX_POINTS_PER_TRANSACTION)
    return most if most >= min_burn else 0


def check_burn(points: int, *, basket_total_minor: int, point_value_minor: int,
               min_burn: int) -> int:
    """Validate a burn request against the program and basket; its value in minor units.

    0 points is no burn and always allowed. The balance is the ledger's check (409
    ``insufficient_points``), made atomically when the points are taken.
    """
    value = burn_value(points, point_value_minor)
    if points == 0:
        return 0
    if points > MAX_POINTS_PER_TRANSACTION:
        raise InvalidBurn(f"at most {MAX_POINTS_PER_TRANSACTION} points per transaction",
                          field="points_to_burn")
    if points < min_burn:
        raise BurnBelowMinimum(f"burn at least {min_burn} points (or none)",
                               field="points_to_burn", min_burn=min_burn)
    if value > basket_total_minor:
        most = basket_total_minor // point_value_minor
        raise BurnExceedsBasket(f"{points} points are worth {value} minor units; the basket is "
                                f"{basket_total_minor}: burn at most {most}",
                                field="points_to_burn", max_points=most)
    return value


# --- tiers --------------------------------------------------------------------------------

@dataclass(frozen=True)
class TierProgress:
    points_earned_12m: int
    current: TierView | None
    next: TierView | None
    points_to_next: int | None
    """Points still to earn for the next tier; None at the top (or without tiers)."""
    progress_bp: int
    """How far from the current tier's threshold to the next one, 0 … 10000 (10000 at
    the top)."""


def _ordered(tiers: Sequence[TierView]) -> list[TierView]:
    return sorted(tiers, key=lambda tier: tier.threshold_points)


def tier_for(points_earned_12m: int, tiers: Sequence[TierView]) -> TierView | None:
    """The highest tier whose threshold the points reach; None below every threshold."""
    points = max(points_earned_12m, 0)
    current: TierView | None = None
    for tier in _ordered(tiers):
        if tier.threshold_points <= points:
            current = tier
    return current


def progress_to_next(points_earned_12m: int, tiers: Sequence[TierView]) -> TierProgress:
    points = max(points_earned_12m, 0)
    current = tier_for(points, tiers)
    above = [tier for tier in _ordered(tiers) if tier.threshold_points > points]
    if not above:
        return TierProgress(points_earned_12m=points, current=current, next=None,
                            points_to_next=None, progress_bp=BP_ONE)
    upcoming = above[0]
    floor = current.threshold_points if current is not None else 0
    span = upcoming.threshold_points - floor
    progress = (points - floor) * BP_ONE // span
    return TierProgress(points_earned_12m=points, current=current, next=upcoming,
                        points_to_next=upcoming.threshold_points - points,
                        progress_bp=progress)


# --- expiry -------------------------------------------------------------------------------

def points_expire_at(program: ProgramView, *, earned_at: datetime,
                     timezone: str) -> datetime | None:
    """When points earned at ``earned_at`` in a store in ``timezone`` expire (None = never):
    the end of the store-local month ``expiry_months`` after the earning month."""
    if program.expiry_months is None:
        return None
    return expiry_at(earned_at, timezone, program.expiry_months)
