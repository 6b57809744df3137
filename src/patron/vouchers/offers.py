"""Offers (voucher templates): their terms checked once at creation, who sees them, and
how they read. Terms never change afterwards (docs/vouchers.md)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patron.kit.clock import utcnow
from patron.kit.validation import currency_code
from patron.programs.rules import normalise_category
from patron.tenancy.models import Merchant, Role, Store
from patron.tenancy.service import Principal
from patron.vouchers.errors import InvalidOffer, OfferNotFound
from patron.vouchers.models import Offer, OfferKind, RedemptionStatus, VoucherRedemption
from patron.vouchers.schemas import OfferRead, OfferWrite

MAX_VALUE = 10**15
MAX_PERCENT = 100
MIN_MULTIPLIER_BP = 10_001
MAX_MULTIPLIER_BP = 1_000_000
MAX_BONUS_POINTS = 10**9
MAX_VALID_DAYS = 3660



def _minute(text: str | None) -> int | None:
    if text is None:
        return None
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minute: int | None) -> str | None:
    return None if minute is None else f"{minute // 60:02d}:{minute % 60:02d}"


def _owner(session: Session, actor: Principal, data: OfferWrite) -> Merchant | None:
    actor.require(Role.operator, Role.merchant)
    if actor.role == Role.merchant:
        if data.merchant_id is not None and data.merchant_id != actor.merchant_id:
            raise OfferNotFound("no such merchant", field="merchant_id")
        merchant = session.get(Merchant, actor.merchant_id)
        assert merchant is not None
        return merchant
    if data.merchant_id is None:
        return None
    merchant = session.get(Merchant, data.merchant_id)
    if merchant is None:
        raise OfferNotFound("no such merchant", field="merchant_id")
    return merchant


def _check_value(data: OfferWrite) -> None:
    kind = data.kind
    if kind == OfferKind.amount_off and not 1 <= data.value <= MAX_VALUE:
        raise InvalidOffer(f"amount_off takes a value of 1 to {MAX_VALUE} minor units",
                           field="value")
    if kind == OfferKind.percent_off and not 1 <= data.value <= MAX_PERCENT:
        raise InvalidOffer("percent_off takes a value of 1 to 100 (percent)", field="value")
    if kind == OfferKind.points_multiplier and not (
            MIN_MULTIPLIER_BP <= data.value <= MAX_MULTIPLIER_BP):
        raise InvalidOffer(f"points_multiplier takes basis points from {MIN_MULTIPLIER_BP} to "
                           f"{MAX_MULTIPLIER_BP} (20000 = x2)", field="value")
    if kind == OfferKind.bonus_points and not 1 <= data.value <= MAX_BONUS_POINTS:
        raise InvalidOffer(f"bonus_points takes 1 to {MAX_BONUS_POINTS} points", field="value")
    if kind in (OfferKind.free_item, OfferKind.ticket) and data.value != 0:
        raise InvalidOffer(f"{kind.value} takes no value (0)", field="value")
    if kind == OfferKind.free_item and data.item_sku is None and data.item_category is None:
        raise InvalidOffer("free_item needs item_sku or item_category", field="item_sku")
    if kind != OfferKind.free_item and (data.item_sku or data.item_category):
        raise InvalidOffer("item_sku and item_category are for free_item", field="item_sku")
    if data.max_discount is not None and (kind != OfferKind.percent_off
                                          or not 1 <= data.max_discount <= MAX_VALUE):
        raise InvalidOffer("max_discount caps a percent_off offer: 1 or more minor units",
                           field="max_discount")


def _check_limits(data: OfferWrite) -> None:
    for name in ("per_member_limit", "max_redemptions", "budget"):
        value = getattr(data, name)
        if value is not None and not 1 <= value <= MAX_VALUE:
            raise InvalidOffer(f"{name} must be 1 or more", field=name)
    if not 0 <= data.min_spend <= MAX_VALUE:
        raise InvalidOffer("min_spend must be 0 or more minor units", field="min_spend")
    if data.valid_days is not None and not 1 <= data.valid_days <= MAX_VALID_DAYS:
        raise InvalidOffer(f"valid_days must be 1 to {MAX_VALID_DAYS}", field="valid_days")
    if (data.valid_from is not None and data.valid_until is not None
            and data.valid_until <= data.valid_from):
        raise InvalidOffer("valid_until must be after valid_from", field="valid_until")
    if data.valid_until is not None and data.valid_until <= utcnow():
        raise InvalidOffer("valid_until is already past: an offer that has ended could "
                           "never be used; give a time in the future", field="valid_until")
    for index, day in enumerate(data.weekdays):
        if not 1 <= day <= 7:
            raise InvalidOffer("weekdays are 1 (Monday) to 7 (Sunday)",
                               field=f"weekdays[{index}]")
    if (data.from_time is None) != (data.until_time is None):
        raise InvalidOffer("give both from_time and until_time, or neither",
                           field="until_time")
    if data.from_time is not None and data.from_time == data.until_time:
        raise InvalidOffer("from_time and until_time must differ", field="until_time")
    if data.kind == OfferKind.ticket and (data.per_member_limit or data.budget):
        raise InvalidOffer("a ticket has no member limit or budget", field="kind")


def _currency(data: OfferWrite, merchant: Merchant | None) -> str | None:
    if data.currency is not None:
        try:
            currency = currency_code(data.currency)
        except ValueError as exc:
            raise InvalidOffer(f"{data.currency!r} is not an ISO 4217 currency code",
                               field="currency") from exc
        if merchant is not None and currency != merchant.currency:
            raise InvalidOffer(f"this merchant's offers are in {merchant.currency}",
                               field="currency")
        return currency
    if merchant is not None:
        return merchant.currency
    if data.kind == OfferKind.amount_off or data.budget is not None:
        raise InvalidOffer("a coalition offer worth an amount, or with a budget, names its "
                           "currency", field="currency")
    return None


def create_offer(session: Session, *, actor: Principal, data: OfferWrite) -> Offer:
    merchant = _owner(session, actor, data)
    _check_value(data)
    _check_limits(data)
    currency = _currency(data, merchant)
    for index, store_id in enumerate(data.store_ids):
        store = session.get(Store, store_id)
        if store is None or merchant is None or store.merchant_id != merchant.id:
            raise OfferNotFound("no such store of this merchant", field=f"store_ids[{index}]")
    offer = Offer(
        id=uuid.uuid4(), merchant_id=merchant.id if merchant else None, name=data.name,
        description=data.description, kind=data.kind.value, value=data.value,
        currency=currency, max_discount=data.max_discount, item_sku=data.item_sku,
        item_category=(normalise_category(data.item_category)
                       if data.item_category is not None else None),
        min_spend=data.min_spend,
        categories=sorted({normalise_category(name) for name in data.categories}),
        store_ids=sorted({str(store_id) for store_id in data.store_ids}),
        channels=sorted({channel.value for channel in data.channels}),
        weekdays=sorted(set(data.weekdays)), from_minute=_minute(data.from_time),
        until_minute=_minute(data.until_time), valid_from=data.valid_from,
        valid_until=data.valid_until, valid_days=data.valid_days,
        per_member_limit=data.per_member_limit, max_redemptions=data.max_redemptions,
        redemptions_count=0, budget=data.budget, budget_used=0, stackable=data.stackable,
        created_at=utcnow())
    session.add(offer)
    session.flush()
    return offer


def visible_offer(session: Session, actor: Principal, offer_id: uuid.UUID) -> Offer:
    """Another merchant's offer is not found, whatever the key's role; then the role."""
    offer = session.get(Offer, offer_id)
    if offer is None or not actor.holds(offer.merchant_id):
        raise OfferNotFound("no such offer")
    actor.require(Role.operator, Role.merchant)
    return offer


def get_offer(session: Session, *, actor: Principal, offer_id: uuid.UUID) -> OfferRead:
    return offer_read(session, visible_offer(session, actor, offer_id))


def list_offers(session: Session, *, actor: Principal) -> list[OfferRead]:
    actor.require(Role.operator, Role.merchant)
    query = select(Offer).order_by(Offer.created_at, Offer.id)
    if actor.role == Role.merchant:
        query = query.where(Offer.merchant_id == actor.merchant_id)
    return offer_reads(session, list(session.scalars(query)))


def revoke_offer(session: Session, *, actor: Principal, offer_id: uuid.UUID) -> OfferRead:
    """Every code of the offer fails from now on, wherever it is presented."""
    offer = visible_offer(session, actor, offer_id)
    session.execute(update(Offer).where(Offer.id == offer.id, Offer.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
    session.refresh(offer)
    return offer_read(session, offer)


def offer_reads(session: Session, offers: Sequence[Offer]) -> list[OfferRead]:
    """The offers as the API shows them, their redemptions counted in one statement."""
    uses: dict[uuid.UUID, int] = dict(session.execute(
        select(VoucherRedemption.offer_id, func.count())
        .where(VoucherRedemption.offer_id.in_([offer.id for offer in offers]),
               VoucherRedemption.status == RedemptionStatus.redeemed.value)
        .group_by(VoucherRedemption.offer_id)).all()) if offers else {}
    return [OfferRead(
        id=offer.id, merchant_id=offer.merchant_id, name=offer.name,
        description=offer.description, kind=OfferKind(offer.kind), value=offer.value,
        currency=offer.currency, max_discount=offer.max_discount, item_sku=offer.item_sku,
        item_category=offer.item_category, min_spend=offer.min_spend,
        categories=list(offer.categories), store_ids=[uuid.UUID(s) for s in offer.store_ids],
        channels=list(offer.channels), weekdays=list(offer.weekdays),
        from_time=_clock(offer.from_minute), until_time=_clock(offer.until_minute),
        valid_from=offer.valid_from, valid_until=offer.valid_until,
        valid_days=offer.valid_days, per_member_limit=offer.per_member_limit,
        max_redemptions=offer.max_redemptions, redemptions_count=int(uses.get(offer.id, 0)),
        budget=offer.budget, budget_used=offer.budget_used, stackable=offer.stackable,
        created_at=offer.created_at, revoked_at=offer.revoked_at) for offer in offers]


def offer_read(session: Session, offer: Offer) -> OfferRead:
    [read] = offer_reads(session, [offer])
    return read
