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

from patron import basket
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


def _basket_terms(terms: Terms) -> basket.VoucherTerms:
    return basket.VoucherTerms(kind=str(terms.kind), value=terms.value,
                               max_discount=terms.max_discount, item_sku=terms.item_sku,
                               item_category=terms.item_category, min_spend=terms.min_spend,
                               categories=terms.categories)


_REFUSALS: dict[str, type[VoucherMinimumSpend | VoucherNoEligibleItems]] = {
    VoucherMinimumSpend.code: VoucherMinimumSpend,
    VoucherNoEligibleItems.code: VoucherNoEligibleItems}


def line_discounts(terms: Terms, lines: Sequence[Line], *, subtotal: int, currency: str,
                   code: str) -> list[int]:
    """Each line's part of the voucher's discount (zeros for the points kinds): the
    arithmetic of ``patron.basket`` (shared with the register SDK)."""
    if terms.currency is not None and terms.kind == OfferKind.amount_off \
            and terms.currency != currency:
        raise VoucherCurrencyMismatch(f"the voucher is worth an amount in {terms.currency}",
                                      voucher_code=code)
    try:
        return basket.voucher_line_discounts(_basket_terms(terms), [
            basket.VoucherLine(sku=line.sku, category=line.category, quantity=line.quantity,
                               unit_price=line.unit_price, due=line.due) for line in lines],
            subtotal=subtotal)
    except basket.Refusal as refusal:
        raise _REFUSALS[refusal.code](refusal.message, voucher_code=code,
                                      **refusal.extra) from None


def bonus_points(terms: Terms, *, points_earned: int) -> int:
    """Extra points a points voucher adds to what the basket earns."""
    return basket.bonus_points(_basket_terms(terms), points_earned=points_earned)
