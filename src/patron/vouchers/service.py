"""Offers and their codes: issue, validate, hold, redeem, reverse, revoke, admit.

A use of a code takes its counters in a fixed order — the code's row, then the offer's
row (only when the offer has a cap or a budget), then the member's uses of the offer —
each with one conditional UPDATE (DESIGN rule 5). A statement that matches no row is a
refusal, and the caller's transaction (the request, the POS commit) rolls back whatever
was taken before it. A hold (reservation) takes the counters like a redemption and gives
them back when it is released or expires; a commit that names the hold converts it.
See docs/vouchers.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import ColumnElement, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.db import insert_for, rowcount, table_of
from patron.errors import Forbidden, NotFound
from patron.kit.clock import utcnow
from patron.members.models import Member
from patron.security import attempts
from patron.tenancy.models import Merchant, Role, Store
from patron.tenancy.service import Principal, Till
from patron.vouchers import bulk, codes, rules
from patron.vouchers.errors import (
    DuplicateVoucher,
    InvalidCodeRequest,
    InvalidVoucherCode,
    ReservationEnded,
    ReservationNotFound,
    TicketAlreadyAdmitted,
    TooManyVouchers,
    VoucherAlreadyRedeemed,
    VoucherBudgetExhausted,
    VoucherCapReached,
    VoucherIsTicket,
    VoucherMemberLimit,
    VoucherNeedsMember,
    VoucherNotFound,
    VoucherNotMembers,
    VoucherNotStackable,
    VoucherRevoked,
)
from patron.vouchers.models import (
    Offer,
    OfferKind,
    OfferMemberUse,
    RedemptionStatus,
    Voucher,
    VoucherRedemption,
)
from patron.vouchers.offers import MAX_VALUE, offer_read, visible_offer
from patron.vouchers.schemas import (
    MAX_CODES_AT_ONCE,
    RedemptionRead,
    VoucherRead,
)

MAX_VOUCHERS_PER_PURCHASE = 10
MAX_HOLD_SECONDS = 1800
INSERT_ATTEMPTS = 3
EXPIRED_HOLDS_PER_RETRY = 100
HELD = (RedemptionStatus.reserved.value, RedemptionStatus.redeemed.value)


# --- codes ------------------------------------------------------------------------------

def _window(offer: Offer, issued_at: datetime) -> tuple[datetime | None, datetime | None]:
    until = offer.valid_until
    if offer.valid_days is not None:
        by_days = issued_at + timedelta(days=offer.valid_days)
        until = by_days if until is None else min(until, by_days)
    return offer.valid_from, until


def insert_codes(session: Session, *, offer: Offer, count: int, member_id: uuid.UUID | None,
                 max_redemptions: int, source: str, batch_id: uuid.UUID | None = None,
                 now: datetime | None = None) -> list[str]:
    """Store ``count`` new codes of the offer in one INSERT (one COPY on PostgreSQL:
    ``bulk``); the canonical codes.

    Optimistic: 65 random bits make a clash with a stored code about a one-in-370,000
    event for a million new codes among 100 million, so the codes are not looked up first
    (that costs more than storing them); the unique index refuses a clash and the chunk is
    made again in its savepoint."""
    issued_at = now or utcnow()
    valid_from, valid_until = _window(offer, issued_at)
    shared = {"merchant_id": offer.merchant_id, "offer_id": offer.id, "member_id": member_id,
              "max_redemptions": max_redemptions, "redemptions_count": 0,
              "valid_from": valid_from, "valid_until": valid_until, "source": source,
              "batch_id": batch_id, "issued_at": issued_at}
    copy = bulk.uses_copy(session)
    attempts = 0
    while True:
        attempts += 1
        new_codes = codes.generate_codes(count)
        try:
            with session.begin_nested():
                if copy:
                    bulk.copy_vouchers(session, codes=new_codes, shared=shared)
                else:
                    session.execute(insert_for(session, Voucher), [
                        {"id": uuid.uuid4(), "code": code, **shared} for code in new_codes])
        except IntegrityError:
            if attempts == INSERT_ATTEMPTS:
                raise
            continue
        return new_codes


def issue_personal(session: Session, *, offer: Offer, member_id: uuid.UUID,
                   merchant_number: int, source: str,
                   now: datetime) -> tuple[uuid.UUID, dict[str, Any]]:
    """One personal single-use code of the offer into the member's wallet (a campaign's or
    a referral's reward): its id, and what the register and the phone are shown — the
    code, its numeric barcode form (the merchant's number, PRODUCT.md part 4), the offer
    and the end of its validity."""
    [code] = insert_codes(session, offer=offer, count=1, member_id=member_id,
                          max_redemptions=1, source=source, now=now)
    voucher_id, valid_until = session.execute(
        select(Voucher.id, Voucher.valid_until).where(Voucher.code == code)).one()
    return voucher_id, {
        "code": codes.display(code), "offer_id": str(offer.id), "offer": offer.name,
        "barcode": codes.barcode_number(merchant_number, code),
        "valid_until": valid_until.isoformat() if valid_until else None}


def check_code_request(session: Session, *, offer: Offer, count: int,
                       member_id: uuid.UUID | None, max_redemptions: int | None) -> int:
    """The uses per code; refuses what cannot be issued."""
    if offer.revoked_at is not None:
        raise InvalidCodeRequest("the offer is revoked", field="offer_id")
    if not count >= 1:
        raise InvalidCodeRequest("count must be 1 or more", field="count")
    uses = 1 if max_redemptions is None else max_redemptions
    if not 1 <= uses <= MAX_VALUE:
        raise InvalidCodeRequest("max_redemptions must be 1 or more", field="max_redemptions")
    if member_id is not None:
        if uses != 1:
            raise InvalidCodeRequest("a personal code is single-use", field="max_redemptions")
        if count > MAX_CODES_AT_ONCE:
            raise InvalidCodeRequest(f"at most {MAX_CODES_AT_ONCE} personal codes at once",
                                     field="count")
        if session.get(Member, member_id) is None:
            raise NotFound("no such member")
    if OfferKind(offer.kind) == OfferKind.ticket and uses != 1:
        raise InvalidCodeRequest("a ticket admits once", field="max_redemptions")
    return uses


def issue_codes(session: Session, *, actor: Principal, offer_id: uuid.UUID, count: int,
                member_id: uuid.UUID | None, max_redemptions: int | None) -> list[str]:
    """Up to 1,000 codes at once, display forms (larger runs are batches: ``batches``)."""
    offer = visible_offer(session, actor, offer_id)
    uses = check_code_request(session, offer=offer, count=count, member_id=member_id,
                              max_redemptions=max_redemptions)
    if count > MAX_CODES_AT_ONCE:
        raise InvalidCodeRequest(f"at most {MAX_CODES_AT_ONCE} at once", field="count")
    new_codes = insert_codes(session, offer=offer, count=count, member_id=member_id,
                             max_redemptions=uses, source="api")
    return [codes.display(code) for code in new_codes]


def merchant_number(session: Session, merchant_id: uuid.UUID | None) -> int:
    if merchant_id is None:
        return codes.COALITION_MERCHANT_NUMBER
    merchant = session.get(Merchant, merchant_id)
    assert merchant is not None
    return merchant.number


def _status(voucher: Voucher, offer: Offer, now: datetime) -> str:
    if voucher.revoked_at is not None or offer.revoked_at is not None:
        return "revoked"
    if voucher.redemptions_count >= voucher.max_redemptions:
        return "used"
    if voucher.valid_until is not None and now >= voucher.valid_until:
        return "expired"
    return "active"


def voucher_read(session: Session, voucher: Voucher, offer: Offer) -> VoucherRead:
    return VoucherRead(
        code=codes.display(voucher.code),
        barcode=codes.barcode_number(merchant_number(session, voucher.merchant_id),
                                     voucher.code),
        offer=offer_read(session, offer), member_id=voucher.member_id,
        max_redemptions=voucher.max_redemptions, redemptions_count=voucher.redemptions_count,
        valid_from=voucher.valid_from, valid_until=voucher.valid_until,
        issued_at=voucher.issued_at, revoked_at=voucher.revoked_at,
        status=_status(voucher, offer, utcnow()))


def parse(text: str) -> codes.ParsedCode:
    try:
        return codes.parse_any(text)
    except (codes.CodeFormatError, codes.CodeCheckError) as exc:
        raise InvalidVoucherCode(str(exc), field="code") from exc


# Built once: every use of a code starts here. The code and its offer in one statement.
_BY_CODE = (select(Voucher, Offer).join(Offer, Offer.id == Voucher.offer_id)
            .where(Voucher.code == bindparam("code"))
            .execution_options(populate_existing=True))


def find(session: Session, *, text: str,
         merchant_id: uuid.UUID | None) -> tuple[Voucher, Offer]:
    """The code as the merchant ``merchant_id`` may see it (its own codes and the
    coalition's; None: the operator, every code). Unknown codes and other merchants' codes
    are the same ``VoucherNotFound``."""
    attempts.note_code(text)
    parsed = parse(text)
    row = session.execute(_BY_CODE, {"code": parsed.code}).one_or_none()
    if row is None:
        raise VoucherNotFound("no such voucher", field="code")
    voucher, offer = row
    if not visible(parsed, owner=voucher.merchant_id, merchant_id=merchant_id,
                   owner_number=lambda: merchant_number(session, voucher.merchant_id)):
        raise VoucherNotFound("no such voucher", field="code")
    return voucher, offer


def visible(parsed: codes.ParsedCode, *, owner: uuid.UUID | None,
            merchant_id: uuid.UUID | None, owner_number: Callable[[], int]) -> bool:
    """Whether the merchant ``merchant_id`` (None: the operator) may use a code owned by
    ``owner`` (None: the coalition) in the form given: a barcode carries its owner's
    merchant number (``owner_number``, asked only for a barcode)."""
    if merchant_id is not None and owner is not None and owner != merchant_id:
        return False
    if parsed.merchant_number is None:
        return True
    number = codes.COALITION_MERCHANT_NUMBER if owner is None else owner_number()
    return parsed.merchant_number == number


def _merchant_scope(actor: Principal) -> uuid.UUID | None:
    actor.require(Role.operator, Role.merchant, Role.terminal)
    return None if actor.role == Role.operator else actor.merchant_id


def get_voucher(session: Session, *, actor: Principal, code: str) -> VoucherRead:
    voucher, offer = find(session, text=code, merchant_id=_merchant_scope(actor))
    return voucher_read(session, voucher, offer)


def image_payload(session: Session, *, actor: Principal, code: str) -> tuple[str, str]:
    """What a code's images show: its display form (QR) and its numeric form (Code 128)."""
    read = get_voucher(session, actor=actor, code=code)
    return read.code, read.barcode


def revoke(session: Session, *, actor: Principal, code: str, reason: str | None) -> VoucherRead:
    """The code fails from the next statement on, everywhere (holds included: their
    commit checks the code again)."""
    voucher, offer = find(session, text=code, merchant_id=_merchant_scope(actor))
    actor.require(Role.operator, Role.merchant)
    if actor.role == Role.merchant and voucher.merchant_id != actor.merchant_id:
        raise Forbidden("a coalition voucher is revoked by the operator")
    session.execute(update(Voucher).where(Voucher.id == voucher.id,
                                          Voucher.revoked_at.is_(None))
                    .values(revoked_at=utcnow(), revoked_reason=reason))
    session.refresh(voucher)
    return voucher_read(session, voucher, offer)


def wallet(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID | None,
           usable_only: bool = False, now: datetime | None = None) -> list[VoucherRead]:
    """A member's personal codes (at one merchant, plus the coalition's; None: all)."""
    query = (select(Voucher, Offer).join(Offer, Offer.id == Voucher.offer_id)
             .where(Voucher.member_id == member_id).order_by(Voucher.issued_at, Voucher.code))
    if merchant_id is not None:
        query = query.where((Voucher.merchant_id == merchant_id)
                            | Voucher.merchant_id.is_(None))
    moment = now or utcnow()
    reads = [voucher_read(session, voucher, offer) for voucher, offer in session.execute(query)
             if not usable_only or _status(voucher, offer, moment) == "active"]
    return reads


def usable_personal_codes(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID,
                          now: datetime) -> list[VoucherRead]:
    """A member's unused, unrevoked, unexpired personal codes usable at a merchant."""
    return wallet(session, member_id=member_id, merchant_id=merchant_id, usable_only=True,
                  now=now)


# --- using a code -------------------------------------------------------------------------

class OfferTerms(Protocol):
    """An offer's terms as stored: the ORM row, or the plain row a statement returns."""

    kind: str
    value: int
    currency: str | None
    max_discount: int | None
    item_sku: str | None
    item_category: str | None
    min_spend: int
    categories: list[str]
    store_ids: list[str]
    channels: list[str]
    weekdays: list[int]
    from_minute: int | None
    until_minute: int | None
    max_redemptions: int | None
    budget: int | None


def terms_of(offer: OfferTerms, voucher: Voucher) -> rules.Terms:
    return offer_terms(offer, valid_from=voucher.valid_from, valid_until=voucher.valid_until)


def offer_terms(offer: OfferTerms, *, valid_from: datetime | None,
                valid_until: datetime | None) -> rules.Terms:
    """The offer's terms with the code's own validity window."""
    return rules.Terms(
        kind=OfferKind(offer.kind), value=offer.value, currency=offer.currency,
        max_discount=offer.max_discount, item_sku=offer.item_sku,
        item_category=offer.item_category, min_spend=offer.min_spend,
        categories=frozenset(offer.categories), store_ids=frozenset(offer.store_ids),
        channels=frozenset(offer.channels), weekdays=frozenset(offer.weekdays),
        from_minute=offer.from_minute, until_minute=offer.until_minute,
        valid_from=valid_from, valid_until=valid_until)


@dataclass
class Applied:
    """A code on a basket: what it takes off each line, the points it adds."""

    voucher: Voucher
    offer: Offer
    terms: rules.Terms
    line_discounts: list[int]
    hold: VoucherRedemption | None = None
    bonus_points: int = 0
    redemption: VoucherRedemption | None = field(default=None)

    @property
    def discount(self) -> int:
        return sum(self.line_discounts)

    @property
    def display(self) -> str:
        return codes.display(self.voucher.code)


def _hold(session: Session, *, hold_id: uuid.UUID | None, voucher: Voucher,
          till: Till, now: datetime) -> VoucherRedemption | None:
    """This till's live hold on the code, if the till names one."""
    if hold_id is None:
        return None
    hold = session.get(VoucherRedemption, hold_id, populate_existing=True)
    if (hold is None or hold.voucher_id != voucher.id or hold.terminal_id != till.terminal.id
            or hold.status != RedemptionStatus.reserved.value
            or (hold.expires_at is not None and hold.expires_at <= now)):
        raise ReservationEnded("the hold was released, expired, used or is not this "
                               "register's: present the code without it",
                               field="reservation_id")
    return hold


def check_state(session: Session, *, voucher: Voucher, offer: Offer, discount: int,
                member_id: uuid.UUID | None, hold: VoucherRedemption | None,
                now: datetime) -> None:
    """What the counters say, read without taking anything (validate, quote): revoked,
    used up, cap, budget, member limit. The use itself re-checks all of it atomically."""
    code = voucher.code
    if voucher.revoked_at is not None or offer.revoked_at is not None:
        raise VoucherRevoked("the voucher has been revoked", voucher_code=code)
    if voucher.member_id is not None and voucher.member_id != member_id:
        if member_id is None:
            raise VoucherNeedsMember("identify the member: this is a personal voucher",
                                     voucher_code=code)
        raise VoucherNotMembers("this voucher belongs to another member", voucher_code=code)
    if hold is not None:
        return
    if voucher.redemptions_count >= voucher.max_redemptions \
            and not _expired_holds(session, VoucherRedemption.voucher_id == voucher.id, now):
        _refuse_used(session, voucher, offer)
    offer_full = (offer.max_redemptions is not None
                  and offer.redemptions_count >= offer.max_redemptions)
    over_budget = offer.budget is not None and offer.budget_used + discount > offer.budget
    if (offer_full or over_budget) and _expired_holds(
            session, VoucherRedemption.offer_id == offer.id, now):
        offer_full = over_budget = False  # the use releases them first, then decides
    if offer_full:
        raise VoucherCapReached("the offer's redemption cap is reached", voucher_code=code)
    if over_budget:
        left = (offer.budget or 0) - offer.budget_used
        raise VoucherBudgetExhausted(f"the offer's budget has {left} minor units left",
                                     voucher_code=code, budget_left=left)
    if offer.per_member_limit is not None:
        if member_id is None:
            raise VoucherNeedsMember("identify the member: the offer has a per-member limit",
                                     voucher_code=code)
        uses = session.scalar(select(OfferMemberUse.uses).where(
            OfferMemberUse.offer_id == offer.id, OfferMemberUse.member_id == member_id)) or 0
        if uses >= offer.per_member_limit:
            raise VoucherMemberLimit(f"used {uses} of {offer.per_member_limit} times",
                                     voucher_code=code)


def _expired_holds(session: Session, whose: ColumnElement[bool], now: datetime) -> bool:
    return session.scalar(select(func.count()).select_from(VoucherRedemption).where(
        whose,
        VoucherRedemption.status == RedemptionStatus.reserved.value,
        VoucherRedemption.expires_at <= now)) != 0


def _refuse_used(session: Session, voucher: Voucher, offer: Offer) -> None:
    first = session.scalars(
        select(VoucherRedemption).where(VoucherRedemption.voucher_id == voucher.id,
                                        VoucherRedemption.status.in_(HELD))
        .order_by(VoucherRedemption.created_at).limit(1)).first()
    facts: dict[str, object] = {}
    if first is not None:
        store = session.get(Store, first.store_id)
        facts = {"first_used_at": first.created_at.isoformat(),
                 "store_id": str(first.store_id), "store_name": store.name if store else None,
                 "terminal_id": str(first.terminal_id),
                 "transaction_id": str(first.transaction_id) if first.transaction_id else None}
    if OfferKind(offer.kind) == OfferKind.ticket:
        where = f" at {facts['store_name']}" if facts.get("store_name") else ""
        when = f" on {facts['first_used_at']}" if facts else ""
        raise TicketAlreadyAdmitted(f"the ticket already admitted someone{where}{when}",
                                    voucher_code=voucher.code, **facts)
    if voucher.max_redemptions == 1:
        raise VoucherAlreadyRedeemed("the voucher has already been used",
                                     voucher_code=voucher.code, **facts)
    raise VoucherAlreadyRedeemed(f"the code's {voucher.max_redemptions} uses are taken",
                                 voucher_code=voucher.code)


def price(session: Session, *, till: Till, sale: rules.Sale,
          uses: Sequence[tuple[str, uuid.UUID | None]], lines: Sequence[rules.Line],
          subtotal: int, member_id: uuid.UUID | None, now: datetime,
          found: Mapping[str, tuple[Voucher, Offer]] | None = None) -> list[Applied]:
    """The codes a purchase presents, in order, each on what the earlier ones left due;
    read-only (a quote, and the commit before it takes them)."""
    # A member over the failure limit is refused before any code is looked up.
    attempts.note_member(session, member_id)
    if len(uses) > MAX_VOUCHERS_PER_PURCHASE:
        raise TooManyVouchers(f"at most {MAX_VOUCHERS_PER_PURCHASE} vouchers", field="vouchers")
    applied: list[Applied] = []
    seen: set[uuid.UUID] = set()
    due = [line.due for line in lines]
    for index, (text, hold_id) in enumerate(uses):
        known = found.get(text) if found is not None else None
        voucher, offer = known or find(session, text=text, merchant_id=till.merchant.id)
        if voucher.id in seen:
            raise DuplicateVoucher("a code appears twice", field=f"vouchers[{index}].code")
        seen.add(voucher.id)
        terms = terms_of(offer, voucher)
        if terms.kind == OfferKind.ticket:
            raise VoucherIsTicket("a ticket admits at a gate (redeem it there)",
                                  voucher_code=voucher.code)
        if (not offer.stackable and len(uses) > 1) or any(not a.offer.stackable for a in applied):
            raise VoucherNotStackable("an exclusive voucher is used alone",
                                      voucher_code=voucher.code)
        rules.check_time_and_place(terms, sale, code=voucher.code)
        current = [rules.Line(sku=line.sku, category=line.category, quantity=line.quantity,
                              unit_price=line.unit_price, due=due[i])
                   for i, line in enumerate(lines)]
        discounts = rules.line_discounts(terms, current, subtotal=subtotal,
                                         currency=sale.currency, code=voucher.code)
        if terms.kind in rules.POINTS_KINDS and member_id is None:
            raise VoucherNeedsMember("identify the member to earn bonus points",
                                     voucher_code=voucher.code)
        hold = _hold(session, hold_id=hold_id, voucher=voucher, till=till, now=now)
        check_state(session, voucher=voucher, offer=offer, discount=sum(discounts),
                    member_id=member_id, hold=hold, now=now)
        due = [d - off for d, off in zip(due, discounts, strict=True)]
        applied.append(Applied(voucher=voucher, offer=offer, terms=terms,
                               line_discounts=discounts, hold=hold))
    return applied


def add_bonus_points(applied: Sequence[Applied], *, points_earned: int) -> int:
    """Sets each points voucher's bonus on the basket's earned points; their sum."""
    for item in applied:
        item.bonus_points = rules.bonus_points(item.terms, points_earned=points_earned)
    return sum(item.bonus_points for item in applied)


# --- taking the counters --------------------------------------------------------------------

def _release_expired_holds(session: Session, *, now: datetime,
                           voucher_id: uuid.UUID | None = None, offer_id: uuid.UUID | None = None,
                           limit: int = EXPIRED_HOLDS_PER_RETRY) -> int:
    query = select(VoucherRedemption.id).where(
        VoucherRedemption.status == RedemptionStatus.reserved.value,
        VoucherRedemption.expires_at <= now).order_by(VoucherRedemption.expires_at).limit(limit)
    if voucher_id is not None:
        query = query.where(VoucherRedemption.voucher_id == voucher_id)
    if offer_id is not None:
        query = query.where(VoucherRedemption.offer_id == offer_id)
    released = 0
    for hold_id in list(session.scalars(query)):
        released += _give_back(session, redemption_id=hold_id, ending=RedemptionStatus.reserved,
                               to=RedemptionStatus.released, now=now)
    return released


def release_expired_holds(session: Session, *, now: datetime | None = None,
                          limit: int = 1000) -> int:
    """The job: holds past their time give their counters back."""
    return _release_expired_holds(session, now=now or utcnow(), limit=limit)


def counts_on_offer(offer: OfferTerms) -> bool:
    # Offers never change after creation, so whether a use was counted on the offer's row
    # is known from the offer alone.
    return offer.max_redemptions is not None or offer.budget is not None


# Built once, plain Core on the session's connection (no ORM bookkeeping): every use of a
# code runs them. Each matches no row when the use cannot be taken. Their parameters are
# named like no column of the two tables: SQLAlchemy would take a parameter named like a
# column as a value to SET (``direct`` runs them inside one larger statement).
VOUCHERS, OFFERS = table_of(Voucher), table_of(Offer)
TAKE_CODE = (update(VOUCHERS).where(VOUCHERS.c.id == bindparam("take_voucher_id"),
                                      VOUCHERS.c.revoked_at.is_(None),
                                      VOUCHERS.c.redemptions_count
                                      < VOUCHERS.c.max_redemptions)
              .values(redemptions_count=VOUCHERS.c.redemptions_count + 1))
TAKE_OFFER = (update(OFFERS).where(
    OFFERS.c.id == bindparam("take_offer_id"), OFFERS.c.revoked_at.is_(None),
    OFFERS.c.max_redemptions.is_(None)
    | (OFFERS.c.redemptions_count < OFFERS.c.max_redemptions),
    OFFERS.c.budget.is_(None)
    | (OFFERS.c.budget_used + bindparam("take_discount") <= OFFERS.c.budget))
    .values(redemptions_count=OFFERS.c.redemptions_count + 1,
            budget_used=OFFERS.c.budget_used + bindparam("take_discount")))


def take_code(session: Session, voucher_id: uuid.UUID) -> bool:
    """One use of the code's own counter, if it is unrevoked and has a use left."""
    return bool(rowcount(session.connection().execute(TAKE_CODE,
                                                      {"take_voucher_id": voucher_id})))


def take_offer(session: Session, offer_id: uuid.UUID, discount: int) -> bool:
    """One use of an offer's cap and ``discount`` of its budget, if it is unrevoked and
    both allow it (for an offer with a cap or a budget: ``counts_on_offer``)."""
    return bool(rowcount(session.connection().execute(
        TAKE_OFFER, {"take_offer_id": offer_id, "take_discount": discount})))


def _take_voucher(session: Session, voucher: Voucher, offer: Offer, now: datetime) -> None:
    if take_code(session, voucher.id):
        return
    if _release_expired_holds(session, now=now, voucher_id=voucher.id) \
            and take_code(session, voucher.id):
        return
    session.refresh(voucher)
    if voucher.revoked_at is not None:
        raise VoucherRevoked("the voucher has been revoked", voucher_code=voucher.code)
    _refuse_used(session, voucher, offer)


def _take_offer(session: Session, offer: Offer, voucher: Voucher, discount: int,
                now: datetime) -> None:
    if not counts_on_offer(offer):
        if offer.revoked_at is not None:
            raise VoucherRevoked("the offer has been revoked", voucher_code=voucher.code)
        return
    if take_offer(session, offer.id, discount):
        return
    if _release_expired_holds(session, now=now, offer_id=offer.id) \
            and take_offer(session, offer.id, discount):
        return
    session.refresh(offer)
    code = voucher.code
    if offer.revoked_at is not None:
        raise VoucherRevoked("the offer has been revoked", voucher_code=code)
    if offer.max_redemptions is not None and offer.redemptions_count >= offer.max_redemptions:
        raise VoucherCapReached("the offer's redemption cap is reached", voucher_code=code)
    left = (offer.budget or 0) - offer.budget_used
    raise VoucherBudgetExhausted(f"the offer's budget has {left} minor units left",
                                 voucher_code=code, budget_left=left)


def _take_member_use(session: Session, offer: Offer, voucher: Voucher,
                     member_id: uuid.UUID | None) -> None:
    if offer.per_member_limit is None:
        return
    if member_id is None:
        raise VoucherNeedsMember("identify the member: the offer has a per-member limit",
                                 voucher_code=voucher.code)
    session.execute(insert_for(session, OfferMemberUse).values(
        offer_id=offer.id, member_id=member_id, merchant_id=offer.merchant_id, uses=0)
        .on_conflict_do_nothing(index_elements=["offer_id", "member_id"]))
    taken = session.execute(update(OfferMemberUse).where(
        OfferMemberUse.offer_id == offer.id, OfferMemberUse.member_id == member_id,
        OfferMemberUse.uses < offer.per_member_limit).values(uses=OfferMemberUse.uses + 1))
    if not rowcount(taken):
        raise VoucherMemberLimit(f"the member has used this offer {offer.per_member_limit} "
                                 f"times", voucher_code=voucher.code)


def take(session: Session, *, voucher: Voucher, offer: Offer, till: Till, discount: int,
         bonus_points: int, member_id: uuid.UUID | None, status: RedemptionStatus,
         now: datetime, expires_at: datetime | None = None,
         transaction_id: uuid.UUID | None = None, idempotency_key: str | None = None,
         request_hash: str | None = None,
         answer: Callable[[VoucherRedemption], str] | None = None) -> VoucherRedemption:
    """One use of the code (or a hold on one): the counters, then the record."""
    if voucher.member_id is not None and voucher.member_id != member_id:
        raise VoucherNotMembers("this voucher belongs to another member",
                                voucher_code=voucher.code)
    _take_voucher(session, voucher, offer, now)
    _take_offer(session, offer, voucher, discount, now)
    _take_member_use(session, offer, voucher, member_id)
    redemption = VoucherRedemption(
        id=uuid.uuid4(), voucher_id=voucher.id, offer_id=offer.id,
        merchant_id=till.merchant.id, store_id=till.store.id, terminal_id=till.terminal.id,
        member_id=member_id, transaction_id=transaction_id, status=status.value,
        discount=discount, bonus_points=bonus_points, currency=till.merchant.currency,
        expires_at=expires_at, idempotency_key=idempotency_key, request_hash=request_hash,
        created_at=now)
    if answer is not None:  # stored with the row, not by a second statement
        redemption.response_json = answer(redemption)
    session.add(redemption)
    session.flush()
    return redemption


def convert_hold(session: Session, *, hold: VoucherRedemption, offer: Offer, voucher: Voucher,
                 discount: int, bonus_points: int, member_id: uuid.UUID | None,
                 transaction_id: uuid.UUID | None, now: datetime) -> VoucherRedemption:
    """A held use becomes a redemption; a revoked code fails here even though it was
    held. The budget moves by the difference when the basket changed the discount."""
    statement = (update(VoucherRedemption).where(
        VoucherRedemption.id == hold.id,
        VoucherRedemption.status == RedemptionStatus.reserved.value,
        VoucherRedemption.expires_at > now)
        .values(status=RedemptionStatus.redeemed.value, discount=discount,
                bonus_points=bonus_points, transaction_id=transaction_id,
                member_id=member_id if member_id is not None else hold.member_id))
    if not rowcount(session.execute(statement)):
        raise ReservationEnded("the hold was released, expired or already used",
                               field="reservation_id")
    session.refresh(voucher)
    session.refresh(offer)
    if voucher.revoked_at is not None or offer.revoked_at is not None:
        raise VoucherRevoked("the voucher was revoked while it was held",
                             voucher_code=voucher.code)
    delta = discount - hold.discount
    if delta and counts_on_offer(offer) and offer.budget is not None:
        moved = session.execute(update(Offer).where(
            Offer.id == offer.id, Offer.budget_used + delta >= 0,
            Offer.budget_used + delta <= Offer.budget)
            .values(budget_used=Offer.budget_used + delta))
        if not rowcount(moved):
            raise VoucherBudgetExhausted("the offer's budget cannot cover the larger discount",
                                         voucher_code=voucher.code)
    session.refresh(hold)
    return hold


def redeem_applied(session: Session, *, till: Till, applied: Sequence[Applied],
                   member_id: uuid.UUID | None, transaction_id: uuid.UUID,
                   now: datetime) -> None:
    """Inside the POS commit: every presented code is used, or the purchase fails."""
    for item in applied:
        if item.hold is not None:
            item.redemption = convert_hold(
                session, hold=item.hold, offer=item.offer, voucher=item.voucher,
                discount=item.discount, bonus_points=item.bonus_points, member_id=member_id,
                transaction_id=transaction_id, now=now)
        else:
            item.redemption = take(
                session, voucher=item.voucher, offer=item.offer, till=till,
                discount=item.discount, bonus_points=item.bonus_points, member_id=member_id,
                status=RedemptionStatus.redeemed, now=now, transaction_id=transaction_id)


def _give_back(session: Session, *, redemption_id: uuid.UUID, ending: RedemptionStatus,
               to: RedemptionStatus, now: datetime) -> int:
    """Ends a use (a hold released, a redemption reversed) and returns its counters: 1,
    or 0 when it had already ended (a concurrent release)."""
    ended = session.execute(update(VoucherRedemption).where(
        VoucherRedemption.id == redemption_id, VoucherRedemption.status == ending.value)
        .values(status=to.value, ended_at=now)
        .returning(VoucherRedemption.voucher_id, VoucherRedemption.offer_id,
                   VoucherRedemption.member_id, VoucherRedemption.discount)).one_or_none()
    if ended is None:
        return 0
    voucher_id, offer_id, member_id, discount = ended
    session.execute(update(Voucher).where(Voucher.id == voucher_id)
                    .values(redemptions_count=Voucher.redemptions_count - 1))
    offer = session.get(Offer, offer_id)
    assert offer is not None
    if counts_on_offer(offer):
        session.execute(update(Offer).where(Offer.id == offer_id).values(
            redemptions_count=Offer.redemptions_count - 1,
            budget_used=Offer.budget_used - discount))
    if offer.per_member_limit is not None and member_id is not None:
        session.execute(update(OfferMemberUse).where(
            OfferMemberUse.offer_id == offer_id, OfferMemberUse.member_id == member_id)
            .values(uses=OfferMemberUse.uses - 1))
    return 1


def reverse_for_purchase(session: Session, *, transaction_id: uuid.UUID,
                         now: datetime) -> list[str]:
    """A purchase returned in full gives its codes back (usable again while valid); the
    display forms of the codes given back."""
    used = list(session.execute(
        select(VoucherRedemption.id, Voucher.code).join(
            Voucher, Voucher.id == VoucherRedemption.voucher_id)
        .where(VoucherRedemption.transaction_id == transaction_id,
               VoucherRedemption.status == RedemptionStatus.redeemed.value)
        .order_by(Voucher.code)))
    returned = []
    for redemption_id, code in used:
        if _give_back(session, redemption_id=redemption_id, ending=RedemptionStatus.redeemed,
                      to=RedemptionStatus.reversed, now=now):
            returned.append(codes.display(code))
    return returned


def by_id(session: Session, voucher_id: uuid.UUID) -> tuple[Voucher, Offer]:
    voucher = session.get(Voucher, voucher_id)
    assert voucher is not None
    offer = session.get(Offer, voucher.offer_id)
    assert offer is not None
    return voucher, offer


def release(session: Session, *, till: Till, reservation_id: uuid.UUID) -> VoucherRedemption:
    """A register gives its hold back (the sale was aborted)."""
    hold = session.get(VoucherRedemption, reservation_id)
    if hold is None or hold.terminal_id != till.terminal.id:
        raise ReservationNotFound("no such hold on this register")
    if not _give_back(session, redemption_id=hold.id, ending=RedemptionStatus.reserved,
                      to=RedemptionStatus.released, now=utcnow()):
        raise ReservationEnded("the hold has already ended", hold_status=hold.status)
    session.refresh(hold)
    return hold


def redemption_read(voucher: Voucher, offer: Offer, redemption: VoucherRedemption
                    ) -> RedemptionRead:
    return RedemptionRead(
        id=redemption.id, code=codes.display(voucher.code), offer_id=offer.id,
        kind=OfferKind(offer.kind), status=RedemptionStatus(redemption.status),
        discount=redemption.discount, bonus_points=redemption.bonus_points,
        currency=redemption.currency, member_id=redemption.member_id,
        store_id=redemption.store_id, terminal_id=redemption.terminal_id,
        transaction_id=redemption.transaction_id, expires_at=redemption.expires_at,
        created_at=redemption.created_at)
