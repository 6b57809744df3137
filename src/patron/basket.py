"""The arithmetic of a sale, shared by the server and the register SDK: how discounts are
split over the lines, what a voucher takes off which lines, and what the paid lines earn.

Pure and self-contained: it imports nothing but the standard library, so the offline SDK
(``patron.pos_client``, which talks to the server over HTTP only and imports nothing
server-side) prices a basket with the very functions the server's quote and commit use
(``programs.rules``, ``vouchers.rules``, ``pos.service.price_sale``). A rule of the
basket is decided here once; each side only turns a ``Refusal`` into its own error.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

BP_ONE = 10_000

# Offer kinds as the vouchers area names them.
AMOUNT_OFF, PERCENT_OFF, FREE_ITEM = "amount_off", "percent_off", "free_item"
BONUS_POINTS, POINTS_MULTIPLIER = "bonus_points", "points_multiplier"
DISCOUNT_KINDS = frozenset({AMOUNT_OFF, PERCENT_OFF, FREE_ITEM})


class Refusal(ValueError):
    """A basket rule refuses: ``code`` is the error code both sides report."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


# --- splitting ---------------------------------------------------------------------------------

def split_proportionally(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` so that the parts sum exactly to it.

    Largest remainder (Hamilton): every part gets the floor of its exact share, then the
    units still missing go one each to the parts with the largest fractional remainders,
    ties to the earlier part. Each part is therefore the floor or the ceiling of its exact
    share, a zero weight always gets 0, and a negative total is split as its absolute
    value and negated (so rounding is symmetric).
    """
    if not weights:
        raise ValueError("nothing to split into")
    if any(weight < 0 for weight in weights):
        raise ValueError("weights must not be negative")
    weight_sum = sum(weights)
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    sign = -1 if total < 0 else 1
    whole = abs(total)
    parts = [whole * weight // weight_sum for weight in weights]
    remainders = [whole * weight % weight_sum for weight in weights]
    missing = whole - sum(parts)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:missing]:
        parts[index] += 1
    return [sign * part for part in parts]


def shares(total: int, weights: Sequence[int]) -> list[int]:
    """``split_proportionally`` that also takes nothing to split or all-zero weights (then
    the parts are as equal as possible): how a discount is spread over what is due."""
    if total == 0:
        return [0] * len(weights)
    return split_proportionally(total, weights if any(weights) else [1] * len(weights))


# --- earning ----------------------------------------------------------------------------------

def normalise_category(category: str) -> str:
    """Categories match without regard to case or surrounding spaces."""
    return category.strip().casefold()


def category_multiplier_bp(multipliers_bp: Mapping[str, int], excluded: Collection[str],
                           category: str | None) -> int:
    """A line's category multiplier: 0 for an excluded category, x1 for any other not
    named (``multipliers_bp`` and ``excluded`` hold normalised names)."""
    if category is None:
        return BP_ONE
    name = normalise_category(category)
    if name in excluded:
        return 0
    return multipliers_bp.get(name, BP_ONE)


def apply_rounding(numerator: int, denominator: int, rounding: str) -> int:
    """``numerator / denominator`` (both >= 0, denominator > 0) as a whole number:
    ``floor``, ``ceil`` or ``round_half_up``."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("rounding needs a non-negative numerator and a positive denominator")
    if rounding == "floor":
        return numerator // denominator
    if rounding == "ceil":
        return -(-numerator // denominator)
    return (2 * numerator + denominator) // (2 * denominator)


def earn_weight(amount: int, *, earn_points: int, multiplier_bp: int,
                tier_multiplier_bp: int) -> int:
    """A paid line's exact points times ``earn_denominator``."""
    return amount * earn_points * multiplier_bp * tier_multiplier_bp


def earn_denominator(earn_per_amount: int) -> int:
    return earn_per_amount * BP_ONE * BP_ONE


# --- vouchers ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VoucherLine:
    sku: str
    category: str | None  # normalised
    quantity: int
    unit_price: int
    due: int  # what is still due on the line before this voucher


@dataclass(frozen=True)
class VoucherTerms:
    """What a voucher's discount depends on (categories and item category normalised)."""

    kind: str
    value: int
    max_discount: int | None = None
    item_sku: str | None = None
    item_category: str | None = None
    min_spend: int = 0
    categories: frozenset[str] = frozenset()


def voucher_line_discounts(terms: VoucherTerms, lines: Sequence[VoucherLine], *,
                           subtotal: int) -> list[int]:
    """Each line's part of the voucher's discount (zeros for the points kinds), on what is
    still due on each line: amounts and percentages split over the eligible lines in
    proportion to what is due on them, a free item taken off the cheapest matching unit.
    ``Refusal`` ``voucher_minimum_spend`` or ``voucher_no_eligible_items``."""
    if subtotal < terms.min_spend:
        raise Refusal("voucher_minimum_spend",
                      f"spend at least {terms.min_spend} minor units (the basket is "
                      f"{subtotal})", min_spend=terms.min_spend)
    if terms.kind == FREE_ITEM:
        return _free_item(terms, lines)
    if terms.kind not in DISCOUNT_KINDS:
        return [0] * len(lines)
    eligible = [line.due if not terms.categories or line.category in terms.categories else 0
                for line in lines]
    base = sum(eligible)
    if base == 0:
        raise Refusal("voucher_no_eligible_items", "nothing in the basket is eligible")
    if terms.kind == AMOUNT_OFF:
        discount = min(terms.value, base)
    else:
        discount = base * terms.value // 100
        if terms.max_discount is not None:
            discount = min(discount, terms.max_discount)
    if discount == 0:
        return [0] * len(lines)
    return split_proportionally(discount, eligible)


def _free_item(terms: VoucherTerms, lines: Sequence[VoucherLine]) -> list[int]:
    """One unit of the matching item, the cheapest one if several lines match (what is
    left due on that unit, in case earlier vouchers took some of it)."""
    best: tuple[int, int] | None = None
    for index, line in enumerate(lines):
        matches = ((terms.item_sku is not None and line.sku == terms.item_sku)
                   or (terms.item_category is not None and line.category == terms.item_category))
        if not matches or line.quantity < 1:
            continue
        unit_due = min(line.unit_price, line.due)
        if best is None or unit_due < best[1]:
            best = (index, unit_due)
    if best is None:
        what = terms.item_sku if terms.item_sku is not None else terms.item_category
        raise Refusal("voucher_no_eligible_items", f"the basket has no {what}")
    discounts = [0] * len(lines)
    discounts[best[0]] = best[1]
    return discounts


def bonus_points(terms: VoucherTerms, *, points_earned: int) -> int:
    """Extra points a points voucher adds to what the basket earns."""
    if terms.kind == BONUS_POINTS:
        return terms.value
    if terms.kind == POINTS_MULTIPLIER:
        return points_earned * max(terms.value - BP_ONE, 0) // BP_ONE
    return 0
