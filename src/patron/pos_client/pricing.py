"""Local pricing, without I/O: what a register computes while the server cannot be reached.

The server's own arithmetic: the rules of the basket (how a discount is split over the
lines, what a voucher takes off which lines, what a paid line earns, rounding) come from
``patron.basket``, the pure module the server's pricing uses too (standard library only,
nothing server-side), applied in the server's order to the rules in the downloaded
package. The figures are provisional: the server re-prices every transaction at replay
with authority and reports differences (a tier multiplier the register does not know, a
voucher refused elsewhere).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from patron import basket

BP_ONE = basket.BP_ONE


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
    return basket.normalise_category(category)


def normalise_code(code: str) -> str:
    """Codes compare without case, spaces or hyphens."""
    return "".join(char for char in code.upper() if char.isalnum())


def earn(rules: Rules, paid: Sequence[tuple[int, str | None]]) -> int:
    """Points for lines paid (amount after discounts, category), rounded once (no tier
    multiplier: the register cannot know the member's tier)."""
    numerator = sum(basket.earn_weight(
        amount, earn_points=rules.earn_points,
        multiplier_bp=basket.category_multiplier_bp(rules.category_multipliers_bp,
                                                    rules.excluded_categories, category),
        tier_multiplier_bp=basket.BP_ONE) for amount, category in paid)
    return basket.apply_rounding(numerator, basket.earn_denominator(rules.earn_per_amount),
                                 rules.rounding)


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


def _terms(code: OfflineCode) -> basket.VoucherTerms:
    return basket.VoucherTerms(
        kind=code.kind, value=int(code.value or 0), max_discount=code.max_discount,
        item_sku=code.item_sku,
        item_category=(normalise_category(code.item_category)
                       if code.item_category is not None else None),
        min_spend=int(code.min_spend or 0),
        categories=frozenset(normalise_category(category) for category in code.categories))


def voucher_discounts(code: OfflineCode, lines: Sequence[Line], *,
                      due: Sequence[int]) -> list[int]:
    """What a personal code takes off each line, on what is still ``due`` on each (the
    server's rule, ``patron.basket``); points codes take nothing off."""
    try:
        return basket.voucher_line_discounts(_terms(code), [
            basket.VoucherLine(sku=line.sku,
                               category=(normalise_category(line.category)
                                         if line.category is not None else None),
                               quantity=line.quantity, unit_price=line.unit_price,
                               due=line_due)
            for line, line_due in zip(lines, due, strict=True)],
            subtotal=sum(line.amount for line in lines))
    except basket.Refusal as refusal:
        raise PricingError(refusal.code, f"voucher {code.code}: {refusal.message}") from None


def price(rules: Rules, lines: Sequence[Line], *, points_to_burn: int = 0,
          codes: Sequence[OfflineCode] = (), identified: bool = True) -> Priced:
    """As the server prices a sale (``pos.service.price_sale``): each code in order on
    what the earlier ones left due on each line, then points spread over what is due,
    earn on what each line pays, then the points codes' bonus (anonymous sales earn
    nothing)."""
    if not lines:
        raise PricingError("validation_failed", "a sale needs at least one line")
    for line in lines:
        if line.quantity < 1:
            raise PricingError("invalid_quantity", "a quantity is 1 or more")
        if line.unit_price < 0:
            raise PricingError("invalid_price", "a price is 0 or more")
    amounts = [line.amount for line in lines]
    subtotal = sum(amounts)
    due = list(amounts)
    by_code: dict[str, int] = {}
    for code in codes:
        discounts = voucher_discounts(code, lines, due=due)
        by_code[code.code] = sum(discounts)
        due = [left - off for left, off in zip(due, discounts, strict=True)]
    voucher_total = subtotal - sum(due)
    points_discount = check_burn(rules, points_to_burn, due=sum(due))
    if points_to_burn and not identified:
        raise PricingError("burn_needs_member", "identify the member to pay with points")
    total = sum(due) - points_discount
    point_shares = basket.shares(points_discount, due)
    paid = [left - share for left, share in zip(due, point_shares, strict=True)]
    points_earned = 0
    if identified:
        points_earned = earn(rules, [(amount, line.category)
                                     for amount, line in zip(paid, lines, strict=True)])
        points_earned += sum(basket.bonus_points(_terms(code), points_earned=points_earned)
                             for code in codes)
    return Priced(subtotal=subtotal, voucher_discount=voucher_total,
                  voucher_discounts=by_code, points_discount=points_discount, total=total,
                  points_burned=points_to_burn, points_earned=points_earned)
