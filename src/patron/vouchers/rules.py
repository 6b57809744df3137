"""What a voucher is worth on a basket, and whether it may be used there: pure functions.

Conditions are checked in a fixed order so the answer names the first thing to fix:
validity window, store, channel, store-local day and hour, currency, minimum spend,
eligible items. Discounts are integers in minor units, rounded down (in the customer's
disfavour by less than one minor unit, never in the merchant's), split over the lines
they apply to in proportion to what is still due on them (largest remainder), so a
return gives back each unit's exact share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from patron.ledger.rules import split_proportionally
from patron.vouchers.errors import (
    VoucherCurrencyMismatch,
    VoucherExpired,
    VoucherMinimumSpend,
    VoucherNoEligibleItems,
    VoucherNotYetValid,
    VoucherWrongChannel,
    VoucherWrongStore,
    VoucherWrongTime,
)
from patron.vouchers.models import OfferKind

BP_ONE = 10_000
DISCOUNT_KINDS = frozenset({OfferKind.amount_off, OfferKind.percent_off, OfferKind.free_item})
POINTS_KINDS = frozenset({OfferKind.points_multiplier, OfferKind.bonus_points})
WEEKDAY_NAMES = ("", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                 "Sunday")


@dataclass(frozen=True)
class Terms:
    """An offer's terms with the code's own validity window, as plain values."""

    kind: OfferKind
    value: int
    currency: str | None = None
    max_discount: int | None = None
    item_sku: str | None = None
    item_category: str | None = None
    min_spend: int = 0
    categories: frozenset[str] = frozenset()
    store_ids: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()
    weekdays: frozenset[int] = frozenset()
    from_minute: int | None = None
    until_minute: int | None = None
    valid_from: datetime | None = None
    valid_until: datetime | None = None


@dataclass(frozen=True)
class Sale:
    """Where and when the voucher is used."""

    at: datetime
    store_id: str
    timezone: str
    channel: str
    currency: str


@dataclass(frozen=True)
class Line:
    sku: str
    category: str | None  # normalised
    quantity: int
    unit_price: int
    due: int  # what is still due on the line before this voucher


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def check_time_and_place(terms: Terms, sale: Sale, *, code: str) -> None:
    """Refuses with the first condition that does not hold (validity, store, channel,
    day, hour)."""
    if terms.valid_from is not None and sale.at < terms.valid_from:
        raise VoucherNotYetValid(f"valid from {terms.valid_from.isoformat()}",
                                 voucher_code=code, valid_from=terms.valid_from.isoformat())
    if terms.valid_until is not None and sale.at >= terms.valid_until:
        raise VoucherExpired(f"expired at {terms.valid_until.isoformat()}", voucher_code=code,
                             valid_until=terms.valid_until.isoformat())
    if terms.store_ids and sale.store_id not in terms.store_ids:
        raise VoucherWrongStore("not valid in this store", voucher_code=code)
    if terms.channels and sale.channel not in terms.channels:
        raise VoucherWrongChannel(f"valid for {', '.join(sorted(terms.channels))} only",
                                  voucher_code=code)
    local = sale.at.astimezone(ZoneInfo(sale.timezone))
    if terms.weekdays and local.isoweekday() not in terms.weekdays:
        days = ", ".join(WEEKDAY_NAMES[day] for day in sorted(terms.weekdays))
        raise VoucherWrongTime(f"valid on {days} only (store-local); it is "
                               f"{WEEKDAY_NAMES[local.isoweekday()]}", voucher_code=code)
    if terms.from_minute is not None and terms.until_minute is not None:
        minute = local.hour * 60 + local.minute
        start, end = terms.from_minute, terms.until_minute
        inside = start <= minute < end if start < end else (minute >= start or minute < end)
        if not inside:
            raise VoucherWrongTime(f"valid from {_clock(start)} to {_clock(end)} store-local "
                                   f"time; it is {_clock(minute)}", voucher_code=code)


def _eligible(terms: Terms, lines: Sequence[Line]) -> list[int]:
    return [line.due if not terms.categories or line.category in terms.categories else 0
            for line in lines]


def line_discounts(terms: Terms, lines: Sequence[Line], *, subtotal: int, currency: str,
                   code: str) -> list[int]:
    """Each line's part of the voucher's discount (zeros for the points kinds)."""
    if terms.currency is not None and terms.kind == OfferKind.amount_off \
            and terms.currency != currency:
        raise VoucherCurrencyMismatch(f"the voucher is worth an amount in {terms.currency}",
                                      voucher_code=code)
    if subtotal < terms.min_spend:
        raise VoucherMinimumSpend(f"spend at least {terms.min_spend} minor units (the basket "
                                  f"is {subtotal})", voucher_code=code,
                                  min_spend=terms.min_spend)
    if terms.kind == OfferKind.free_item:
        return _free_item(terms, lines, code=code)
    if terms.kind not in DISCOUNT_KINDS:
        return [0] * len(lines)
    eligible = _eligible(terms, lines)
    base = sum(eligible)
    if base == 0:
        raise VoucherNoEligibleItems("nothing in the basket is eligible", voucher_code=code)
    if terms.kind == OfferKind.amount_off:
        discount = min(terms.value, base)
    else:
        discount = base * terms.value // 100
        if terms.max_discount is not None:
            discount = min(discount, terms.max_discount)
    if discount == 0:
        return [0] * len(lines)
    return split_proportionally(discount, eligible)


def _free_item(terms: Terms, lines: Sequence[Line], *, code: str) -> list[int]:
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
        raise VoucherNoEligibleItems(f"the basket has no {what}", voucher_code=code)
    discounts = [0] * len(lines)
    discounts[best[0]] = best[1]
    return discounts


def bonus_points(terms: Terms, *, points_earned: int) -> int:
    """Extra points a points voucher adds to what the basket earns."""
    if terms.kind == OfferKind.bonus_points:
        return terms.value
    if terms.kind == OfferKind.points_multiplier:
        return points_earned * max(terms.value - BP_ONE, 0) // BP_ONE
    return 0
