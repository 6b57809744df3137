"""A code at a register outside a purchase: validate (no side effects), hold, redeem
stand-alone (a gate admitting a ticket, a desk taking a bonus-points voucher), release."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.identity.schemas import MemberIdentification
from patron.identity.service import member_for
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.errors import IdempotencyKeyReused
from patron.members.models import Member
from patron.operations.service import check_occurred_at
from patron.pos.channel import sale_channel
from patron.pos.errors import CurrencyMismatch
from patron.pos.service import canonical_hash, check_lines
from patron.programs import rules as program_rules
from patron.programs.rules import normalise_category
from patron.programs.service import get_program
from patron.security import attempts
from patron.tenancy.service import Principal, Till, till_of
from patron.vouchers import codes, rules, service
from patron.vouchers.errors import (
    InvalidReservation,
    InvalidVoucherCode,
    VoucherIsTicket,
    VoucherNeedsBasket,
    VoucherNeedsPurchase,
    VoucherNotFound,
    VoucherRefused,
)
from patron.vouchers.models import OfferKind, RedemptionStatus, VoucherRedemption
from patron.vouchers.schemas import (
    Basket,
    RedeemWrite,
    RedemptionRead,
    ReserveWrite,
    ValidateWrite,
    ValidationRead,
)


@dataclass(frozen=True)
class Presented:
    till: Till
    member: Member | None
    applied: service.Applied
    now: datetime


def _lines(basket: Basket, till: Till) -> tuple[list[rules.Line], int] | None:
    if basket.currency is not None and basket.currency.upper() != till.merchant.currency:
        raise CurrencyMismatch(f"this merchant takes {till.merchant.currency}",
                               field="currency", expected=till.merchant.currency)
    if basket.lines is None:
        return None
    subtotal = check_lines(basket.lines)
    return [rules.Line(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price,
                       category=normalise_category(line.category) if line.category else None,
                       due=line.quantity * line.unit_price)
            for line in basket.lines], subtotal


def face_value(terms: rules.Terms, code: str) -> tuple[list[rules.Line], int]:
    """Without a basket only a voucher whose worth needs no basket can be used."""
    if terms.kind in (OfferKind.percent_off, OfferKind.free_item) or terms.min_spend \
            or terms.categories:
        raise VoucherNeedsBasket("give the basket's lines: this voucher's worth depends on them",
                                 field="lines")
    if terms.kind == OfferKind.points_multiplier:
        raise VoucherNeedsPurchase("a points multiplier applies to a purchase: present it "
                                   "with the purchase", voucher_code=code)
    value = terms.value if terms.kind == OfferKind.amount_off else 0
    return [rules.Line(sku="", category=None, quantity=1, unit_price=value, due=value)], value


def present(session: Session, *, actor: Principal, code: str, basket: Basket,
            member: MemberIdentification | None, hold_id: uuid.UUID | None = None,
            tickets: bool = False, till: Till | None = None) -> Presented:
    """Every check a use makes, without taking anything."""
    till = till if till is not None else till_of(session, actor)
    now = utcnow()
    at = basket.occurred_at or now
    check_occurred_at(at, now=now, field="occurred_at")
    who = member_for(session, actor=actor, identification=member)
    # A member over the failure limit is refused before the code is looked up.
    attempts.note_member(session, who.id if who else None)
    voucher, offer = service.find(session, text=code, merchant_id=till.merchant.id)
    terms = service.terms_of(offer, voucher)
    sale = rules.Sale(at=at, store_id=str(till.store.id), timezone=till.store.timezone,
                      channel=sale_channel(till.terminal.kind, basket.channel).value,
                      currency=till.merchant.currency)
    if terms.kind == OfferKind.ticket:
        if not tickets:
            raise VoucherIsTicket("a ticket admits at a gate (redeem it)",
                                  voucher_code=voucher.code)
        rules.check_time_and_place(terms, sale, code=voucher.code)
        service.check_state(session, voucher=voucher, offer=offer, discount=0,
                            member_id=who.id if who else None, hold=None, now=now)
        applied = service.Applied(voucher=voucher, offer=offer, terms=terms, line_discounts=[])
        return Presented(till=till, member=who, applied=applied, now=now)
    basket_lines = _lines(basket, till) or face_value(terms, voucher.code)
    lines, subtotal = basket_lines
    [applied] = service.price(session, till=till, sale=sale, uses=[(code, hold_id)],
                              lines=lines, subtotal=subtotal,
                              member_id=who.id if who else None, now=now,
                              found={code: (voucher, offer)})
    if terms.kind in rules.POINTS_KINDS:
        if terms.kind == OfferKind.points_multiplier:
            raise VoucherNeedsPurchase("a points multiplier applies to a purchase: present it "
                                       "with the purchase", voucher_code=voucher.code)
        service.add_bonus_points([applied], points_earned=0)
    return Presented(till=till, member=who, applied=applied, now=now)


def validate(session: Session, *, actor: Principal, data: ValidateWrite) -> ValidationRead:
    """Whether the code can be used here now, on this basket, and why not. Writes nothing."""
    try:
        presented = present(session, actor=actor, code=data.code, basket=data,
                            member=data.member, tickets=True)
    except (VoucherRefused, VoucherNotFound, InvalidVoucherCode) as refusal:
        return ValidationRead(code=data.code, valid=False, reason=refusal.code,
                              detail=refusal.detail, discount=None, bonus_points=None,
                              offer_id=None, kind=None, valid_until=None)
    applied = presented.applied
    return ValidationRead(code=applied.display, valid=True, reason=None, detail=None,
                          discount=applied.discount, bonus_points=applied.bonus_points,
                          offer_id=applied.offer.id, kind=applied.terms.kind,
                          valid_until=applied.voucher.valid_until)


def _replayed(session: Session, till: Till, key: str | None, digest: str | None) -> str | None:
    if key is None or digest is None:
        return None
    existing = session.scalars(select(VoucherRedemption).where(
        VoucherRedemption.terminal_id == till.terminal.id,
        VoucherRedemption.idempotency_key == key)).one_or_none()
    if existing is None:
        return None
    if existing.request_hash != digest or existing.response_json is None:
        raise IdempotencyKeyReused("this Idempotency-Key was used with another request",
                                   field="Idempotency-Key")
    return existing.response_json


def request_digest(data: RedeemWrite, code: str, idempotency_key: str | None) -> str | None:
    """What an idempotent retry must send again: the body (the PIN left out) and the code
    in its canonical form. Kept with a key only: without one there is no retry to match."""
    if idempotency_key is None:
        return None
    body_hash = canonical_hash(data, exclude={"member": {"pin"}})
    return hashlib.sha256(f"{body_hash}:{_canonical(code)}".encode()).hexdigest()


def redeem(session: Session, *, actor: Principal, code: str, data: RedeemWrite,
           idempotency_key: str | None) -> str:
    """Use the code now, outside a purchase; the answer as JSON text. With an
    ``Idempotency-Key`` a retry gets the first answer again."""
    till = till_of(session, actor)
    digest = request_digest(data, code, idempotency_key)
    replay = _replayed(session, till, idempotency_key, digest)
    if replay is not None:
        return replay
    presented = present(session, actor=actor, code=code, basket=data, member=data.member,
                        tickets=True, till=till)
    applied = presented.applied
    member_id = presented.member.id if presented.member else None
    redemption = service.take(
        session, voucher=applied.voucher, offer=applied.offer, till=till,
        discount=applied.discount, bonus_points=applied.bonus_points, member_id=member_id,
        status=RedemptionStatus.redeemed, now=presented.now,
        idempotency_key=idempotency_key, request_hash=digest,
        answer=lambda row: service.redemption_read(applied.voucher, applied.offer,
                                                   row).model_dump_json())
    if applied.bonus_points and member_id is not None:
        program = get_program(session, merchant_id=till.merchant.id)
        at = data.occurred_at or presented.now
        ledger.earn(session, merchant_id=till.merchant.id, member_id=member_id,
                    points=applied.bonus_points,
                    expires_at=program_rules.points_expire_at(
                        program.rules, earned_at=at, timezone=till.store.timezone),
                    idempotency_key=f"voucher:{redemption.id}", source=f"pos:{till.terminal.id}",
                    reason=f"voucher {applied.display}", occurred_at=at)
    assert redemption.response_json is not None
    return redemption.response_json


def reserve(session: Session, *, actor: Principal, code: str,
            data: ReserveWrite) -> RedemptionRead:
    """Hold one use of the code for this register for ``ttl_seconds``."""
    if not 1 <= data.ttl_seconds <= service.MAX_HOLD_SECONDS:
        raise InvalidReservation(f"ttl_seconds must be 1 to {service.MAX_HOLD_SECONDS}",
                                 field="ttl_seconds")
    presented = present(session, actor=actor, code=code, basket=data, member=data.member)
    applied = presented.applied
    hold = service.take(
        session, voucher=applied.voucher, offer=applied.offer, till=presented.till,
        discount=applied.discount, bonus_points=applied.bonus_points,
        member_id=presented.member.id if presented.member else None,
        status=RedemptionStatus.reserved, now=presented.now,
        expires_at=presented.now + timedelta(seconds=data.ttl_seconds))
    return service.redemption_read(applied.voucher, applied.offer, hold)


def release(session: Session, *, actor: Principal, reservation_id: uuid.UUID) -> RedemptionRead:
    till = till_of(session, actor)
    hold = service.release(session, till=till, reservation_id=reservation_id)
    voucher, offer = service.by_id(session, hold.voucher_id)
    return service.redemption_read(voucher, offer, hold)



def _canonical(text: str) -> str:
    try:
        return codes.parse_any(text).code
    except (codes.CodeFormatError, codes.CodeCheckError):
        return text
