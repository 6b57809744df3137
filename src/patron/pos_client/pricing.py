"""Local pricing, without I/O: what a register computes while the server cannot be reached.

The same arithmetic as the server's points program (integers only; exact points rounded
once per transaction; discounts split over the lines by largest remainder; earn on what
is paid), from the rules in the downloaded package. The figures are provisional: the
server re-prices every transaction at replay with authority and reports differences
(a tier multiplier the register does not know, a voucher refused elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BP_ONE = 10_000


class PricingError(ValueError):
    """The basket or burn breaks a rule the register can check itself."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Rules:
    earn_points: int
    earn_per_amount: int
    rounding: str
    point_value_minor: int
    min_burn: int
    category_multipliers_bp: Mapping[str, int] = field(default_factory=dict)
    excluded_categories: frozenset[str] = frozenset()

    @classmethod
    def from_package(cls, package: Mapping[str, Any]) -> Rules:
        program = package["program"]
        return cls(earn_points=int(program["earn_points"]),
                   earn_per_amount=int(program["earn_per_amount"]),
                   rounding=str(program["rounding"]),
                   point_value_minor=int(program["point_value_minor"]),
                   min_burn=int(program["min_burn"]),
                   category_multipliers_bp={str(k): int(v) for k, v in
                                            program["category_multipliers_bp"].items()},
                   excluded_categories=frozenset(program["excluded_categories"]))


@dataclass(frozen=True)
class Line:
    sku: str
    name: str
    quantity: int
    unit_price: int
    category: str | None = None

    @property
    def amount(self) -> int:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class OfflineCode:
    """A personal code from an allowance, with the terms needed to price it."""

    code: str
    kind: str
    value: int | None
    max_discount: int | None
    min_spend: int | None
    item_sku: str | None
    item_category: str | None
    categories: tuple[str, ...] = ()

    @classmethod
    def from_allowance(cls, entry: Mapping[str, Any]) -> OfflineCode:
        return cls(code=str(entry["code"]), kind=str(entry["kind"]), value=entry.get("value"),
                   max_discount=entry.get("max_discount"), min_spend=entry.get("min_spend"),
                   item_sku=entry.get("item_sku"), item_category=entry.get("item_category"),
                   categories=tuple(entry.get("categories") or ()))


@dataclass(frozen=True)
class Priced:
    subtotal: int
    voucher_discount: int
    voucher_discounts: dict[str, int]
    points_discount: int
    total: int
    points_burned: int
    points_earned: int


def normalise_category(category: str) -> str:
    return category.strip().casefold()


def normalise_code(code: str) -> str:
    """Codes compare without case, spaces or hyphens."""
    return "".join(char for char in code.upper() if char.isalnum())


def split_proportionally(total: int, weights: Sequence[int]) -> list[int]:
    """Largest remainder, ties to the earlier part (the server's rule)."""
    if total == 0:
        return [0] * len(weights)
    if not any(weights):
        weights = [1] * len(weights)
    weight_sum = sum(weights)
    parts = [total * weight // weight_sum for weight in weights]
    remainders = [total * weight % weight_sum for weight in weights]
    missing = total - sum(parts)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:missing]:
        parts[index] += 1
    return parts


def apply_rounding(numerator: int, denominator: int, rounding: str) -> int:
    if rounding == "floor":
        return numerator // denominator
    if rounding == "ceil":
        return -(-numerator // denominator)
    return (2 * numerator + denominator) // (2 * denominator)


def category_multiplier_bp(rules: Rules, category: str | None) -> int:
    if category is None:
        return BP_ONE
    name = normalise_category(category)
    if name in rules.excluded_categories:
        return 0
    return rules.category_multipliers_bp.get(name, BP_ONE)


def earn(rules: Rules, paid: Sequence[tuple[int, str | None]]) -> int:
    """Points for lines paid (amount after discounts, category), rounded once."""
    numerator = sum(amount * rules.earn_points * category_multiplier_bp(rules, category)
                    * BP_ONE for amount, category in paid)
    return apply_rounding(numerator, rules.earn_per_amount * BP_ONE * BP_ONE, rules.rounding)


def check_burn(rules: Rules, points: int, *, due: int) -> int:
    """The discount ``points`` give on what is still ``due``; PricingError if not allowed."""
    if points < 0:
        raise PricingError("invalid_burn", "points to burn must be 0 or more")
    if points == 0:
        return 0
    if points < rules.min_burn:
        raise PricingError("burn_below_minimum", f"burn at least {rules.min_burn} points")
    value = points * rules.point_value_minor
    if value > due:
        raise PricingError("burn_exceeds_basket",
                           f"{points} points are worth {value}; at most "
                           f"{due // rules.point_value_minor} points on this basket")
    return value


def voucher_discount(code: OfflineCode, lines: Sequence[Line], *, due: int) -> int:
    """What a personal code takes off offline (amount off, percent off with its cap, one
    free item); other kinds give no discount at the till."""
    subtotal = sum(line.amount for line in lines)
    if code.min_spend and subtotal < code.min_spend:
        raise PricingError("voucher_minimum_spend",
                           f"voucher {code.code} needs a basket of at least {code.min_spend}")
    eligible = [line for line in lines
                if not code.categories or (line.category is not None and normalise_category(
                    line.category) in {normalise_category(c) for c in code.categories})]
    base = min(sum(line.amount for line in eligible), due)
    value = int(code.value or 0)
    if code.kind == "amount_off":
        discount = min(value, base)
    elif code.kind == "percent_off":
        discount = base * value // 100
        if code.max_discount is not None:
            discount = min(discount, code.max_discount)
    elif code.kind == "free_item":
        matching = [line.unit_price for line in lines
                    if (code.item_sku is not None and line.sku == code.item_sku)
                    or (code.item_category is not None and line.category is not None
                        and normalise_category(line.category)
                        == normalise_category(code.item_category))]
        if not matching:
            raise PricingError("voucher_no_eligible_items",
                               f"nothing in the basket is free with voucher {code.code}")
        discount = min(min(matching), due)
    else:
        discount = 0
    return max(min(discount, due), 0)


def price(rules: Rules, lines: Sequence[Line], *, points_to_burn: int = 0,
          codes: Sequence[OfflineCode] = (), identified: bool = True) -> Priced:
    """Vouchers first, then points; earn on what is paid (anonymous sales earn nothing)."""
    if not lines:
        raise PricingError("validation_failed", "a sale needs at least one line")
    for line in lines:
        if line.quantity < 1:
            raise PricingError("invalid_quantity", "a quantity is 1 or more")
        if line.unit_price < 0:
            raise PricingError("invalid_price", "a price is 0 or more")
    amounts = [line.amount for line in lines]
    subtotal = sum(amounts)
    due = subtotal
    by_code: dict[str, int] = {}
    for code in codes:
        discount = voucher_discount(code, lines, due=due)
        by_code[code.code] = discount
        due -= discount
    voucher_total = subtotal - due
    points_discount = check_burn(rules, points_to_burn, due=due)
    if points_to_burn and not identified:
        raise PricingError("burn_needs_member", "identify the member to pay with points")
    total = due - points_discount
    voucher_shares = split_proportionally(voucher_total, amounts)
    after_vouchers = [a - s for a, s in zip(amounts, voucher_shares, strict=True)]
    point_shares = split_proportionally(points_discount, after_vouchers)
    paid = [a - s for a, s in zip(after_vouchers, point_shares, strict=True)]
    points_earned = (earn(rules, [(amount, line.category)
                                  for amount, line in zip(paid, lines, strict=True)])
                     if identified else 0)
    return Priced(subtotal=subtotal, voucher_discount=voucher_total,
                  voucher_discounts=by_code, points_discount=points_discount, total=total,
                  points_burned=points_to_burn, points_earned=points_earned)
