"""The POS pipeline: price a basket (quote, no writes) and commit a purchase atomically.

Commit order (one transaction, owned by the endpoint):
1. validate what the body alone decides (currency, GTINs, ranges);
2. **claim the receipt**: insert the transaction row under the unique
   ``(terminal_id, receipt_no)`` in a savepoint. A concurrent duplicate waits on the
   unique index (PostgreSQL) or on the write lock (SQLite) until the first commits, then
   fails the insert and reads the first one's row: same body → the stored answer, other
   body → ``receipt_conflict`` (whenever the replay comes). Nothing else is locked
   before this point. Then the time window (5 minutes ahead, 30 days back);
3. identify the member, price the basket, burn then earn on the ledger, count the member's
   stats, write the lines and the outbox events, and store the exact answer on the row.

Earning is on what the customer actually pays: the points discount is split over the
lines in proportion to their amounts (largest remainder) and each line earns on its amount
less its share (see docs/pos.md).
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from stdnum import ean
from stdnum.exceptions import ValidationError as StdnumError

from patron.basket import shares
from patron.campaigns import engine as campaigns
from patron.campaigns import occasions
from patron.campaigns.context import Line as CampaignLine
from patron.campaigns.models import Trigger
from patron.coalition import rules as coalition_rules
from patron.coalition.errors import InvalidMiles, MilesExceedBasket, MilesNotOffered
from patron.coalition.rules import Rate
from patron.coalition.service import rate_for as coalition_rate_for
from patron.db import table_of
from patron.errors import PatronError
from patron.identity.service import member_for
from patron.kit.clock import utcnow
from patron.kit.validation import currency_code
from patron.ledger import service as ledger
from patron.ledger.errors import InsufficientPoints
from patron.members.access import is_member_of
from patron.members.models import Member, Membership
from patron.notify.outbox import EventType, emit
from patron.operations.service import check_occurred_at
from patron.pos.channel import sale_channel
from patron.pos.errors import (
    BasketTooLarge,
    BurnNeedsMember,
    CurrencyMismatch,
    InvalidGtin,
    InvalidPaymentAmount,
    InvalidPrice,
    InvalidQuantity,
    ReceiptConflict,
    TransactionNotFound,
    UnknownCurrency,
)
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.pos.schemas import (
    AppliedVoucher,
    IssuedBenefitRead,
    LineRead,
    LineWrite,
    PurchaseWrite,
    QuoteRead,
    TransactionRead,
)
from patron.programs import rules
from patron.programs.errors import InvalidBurn
from patron.programs.rules import TierProgress, TierView
from patron.programs.service import MerchantProgram, get_program, member_tier
from patron.referrals import service as referrals
from patron.scores.service import record_purchase
from patron.tenancy.models import Role
from patron.tenancy.service import Principal, Till, till_of
from patron.vouchers import rules as voucher_rules
from patron.vouchers import service as vouchers
from patron.vouchers.benefits import service as benefits

MAX_QUANTITY = 1_000_000


@dataclass(frozen=True)
class Priced:
    member_id: uuid.UUID | None
    program: MerchantProgram
    tier_name: str | None
    balance_before: int | None
    max_burnable: int | None
    subtotal: int
    voucher_discount: int
    points_discount: int
    miles_discount: int
    total: int
    points_burned: int
    points_earned: int
    miles_burned: int
    miles_earned: int
    lines: list[LineRead]
    vouchers: list[vouchers.Applied]
    explanation: list[str]


# --- input ------------------------------------------------------------------------------

def _gtin(text: str, index: int) -> str:
    try:
        return str(ean.validate(text))
    except StdnumError as exc:
        raise InvalidGtin(f"lines[{index}].gtin is not a GTIN-8, -12, -13 or -14 with a "
                          f"correct check digit", field=f"lines[{index}].gtin") from exc


def check_time(data: PurchaseWrite, *, now: datetime) -> None:
    check_occurred_at(data.occurred_at, now=now, field="occurred_at")


def at_terminal(data: PurchaseWrite, till: Till) -> PurchaseWrite:
    """The body with the channel its terminal decides (``pos.channel``) filled in, so that
    a body without ``channel`` hashes and replays as one that states it; a contradicting
    ``channel`` is refused."""
    channel = sale_channel(till.terminal.kind, data.channel)
    return data if data.channel == channel else data.model_copy(update={"channel": channel})


def validate(data: PurchaseWrite, *, till: Till) -> list[str | None]:
    """What the body and the terminal decide (not the clock); the lines' GTINs in compact
    form."""
    merchant = till.merchant
    sale_channel(till.terminal.kind, data.channel)
    try:
        currency = currency_code(data.currency)
    except ValueError as exc:
        raise UnknownCurrency(f"{data.currency!r} is not an ISO 4217 currency code",
                              field="currency") from exc
    if currency != merchant.currency:
        raise CurrencyMismatch(f"this merchant takes {merchant.currency}, not {currency}",
                               field="currency", expected=merchant.currency)
    if data.points_to_burn < 0:
        raise InvalidBurn("points_to_burn must be 0 or more", field="points_to_burn")
    if data.payment is not None and not 0 <= data.payment.amount <= rules.MAX_AMOUNT_MINOR:
        raise InvalidPaymentAmount(field="payment.amount")
    check_lines(data.lines)
    return [_gtin(line.gtin, index) if line.gtin is not None else None
            for index, line in enumerate(data.lines)]


def check_lines(lines: Sequence[LineWrite]) -> int:
    """Quantities, prices and the basket's size (each its own code); the subtotal."""
    subtotal = 0
    for index, line in enumerate(lines):
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidQuantity(f"lines[{index}].quantity must be 1 to {MAX_QUANTITY}",
                                  field=f"lines[{index}].quantity")
        if not 0 <= line.unit_price <= rules.MAX_AMOUNT_MINOR:
            raise InvalidPrice(f"lines[{index}].unit_price must be 0 to "
                               f"{rules.MAX_AMOUNT_MINOR} minor units",
                               field=f"lines[{index}].unit_price")
        subtotal += line.quantity * line.unit_price
    if subtotal > rules.MAX_AMOUNT_MINOR:
        raise BasketTooLarge(f"the basket comes to {subtotal} minor units; at most "
                             f"{rules.MAX_AMOUNT_MINOR}", field="lines")
    return subtotal


def request_hash(data: PurchaseWrite) -> str:
    """SHA-256 of the canonical body (defaults filled in, keys sorted; the PIN left out).
    No vouchers hashes as before vouchers existed, so older receipts still replay."""
    return body_hash(purchase_body(data))


def purchase_body(data: PurchaseWrite) -> dict[str, Any]:
    """The body as JSON-ready data with defaults filled in and without the PIN: what a
    replay must match (``body_hash``)."""
    return data.model_dump(mode="json", exclude={"member": {"pin"}})


def body_hash(body: dict[str, Any]) -> str:
    """``request_hash`` of a ``purchase_body``."""
    if not body.get("vouchers"):
        body = {name: value for name, value in body.items() if name != "vouchers"}
    return json_hash(body)


def canonical_hash(data: BaseModel, exclude: dict[str, Any] | None = None) -> str:
    """SHA-256 of a request body as JSON with defaults filled in and keys sorted: what a
    replay must match exactly."""
    return json_hash(data.model_dump(mode="json", exclude=exclude))


def json_hash(body: dict[str, Any]) -> str:
    """SHA-256 of JSON-ready data, keys sorted, compact, UTF-8."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


# --- pricing ----------------------------------------------------------------------------

def _miles_discount(data: PurchaseWrite, *, rate: Rate | None, due: int) -> int:
    if data.miles_to_burn < 0:
        raise InvalidMiles("miles_to_burn must be 0 or more", field="miles_to_burn")
    if data.miles_to_burn == 0:
        return 0
    if data.miles_to_burn > coalition_rules.MAX_MILES:
        raise InvalidMiles(f"at most {coalition_rules.MAX_MILES} miles",
                           field="miles_to_burn")
    if rate is None:
        raise MilesNotOffered("the coalition has no miles rate for this currency",
                              field="miles_to_burn")
    discount = coalition_rules.redemption_discount(data.miles_to_burn, rate)
    if discount > due:
        most = due * 1000 // rate.mile_value_milli
        raise MilesExceedBasket(f"{data.miles_to_burn} miles are worth {discount} minor units; "
                                f"{due} is left to pay: use at most {most}",
                                field="miles_to_burn", max_miles=most)
    return discount


def _sale(data: PurchaseWrite, till: Till) -> voucher_rules.Sale:
    return voucher_rules.Sale(at=data.occurred_at.astimezone(UTC), store_id=str(till.store.id),
                              timezone=till.store.timezone,
                              channel=sale_channel(till.terminal.kind, data.channel).value,
                              currency=till.merchant.currency)


def _vouchers(session: Session, *, data: PurchaseWrite, till: Till, member: Member | None,
              amounts: list[int], now: datetime) -> list[vouchers.Applied]:
    if not data.vouchers:
        return []
    lines = [voucher_rules.Line(sku=line.sku, quantity=line.quantity, unit_price=line.unit_price,
                                category=(rules.normalise_category(line.category)
                                          if line.category is not None else None),
                                due=amount)
             for line, amount in zip(data.lines, amounts, strict=True)]
    return vouchers.price(session, till=till, sale=_sale(data, till),
                          uses=[(use.code, use.reservation_id) for use in data.vouchers],
                          lines=lines, subtotal=sum(amounts),
                          member_id=member.id if member else None, now=now)


def check_payers(data: PurchaseWrite, *, identified: bool) -> None:
    """Burns need a member; reported miles must be in range (before any voucher is read)."""
    if (data.points_to_burn or data.miles_to_burn) and not identified:
        field = "points_to_burn" if data.points_to_burn else "miles_to_burn"
        raise BurnNeedsMember("identify the member to pay with points or miles", field=field)
    if data.miles is not None and not 0 <= data.miles <= coalition_rules.MAX_MILES:
        raise InvalidMiles(f"miles must be 0 to {coalition_rules.MAX_MILES}", field="miles")


def _price(session: Session, *, data: PurchaseWrite, till: Till, member: Member | None,
           gtins: list[str | None], now: datetime, explain: bool) -> Priced:
    """Read what pricing needs (program, vouchers, rate, balance, tier), then price."""
    program = get_program(session, merchant_id=till.merchant.id)
    check_payers(data, identified=member is not None)
    amounts = [line.quantity * line.unit_price for line in data.lines]
    applied = _vouchers(session, data=data, till=till, member=member, amounts=amounts, now=now)
    rate = coalition_rate_for(session, till.merchant.currency)
    balance: int | None = None
    tier: TierView | None = None
    if member is not None:
        balance = ledger.points_balance(session, merchant_id=till.merchant.id,
                                        member_id=member.id)
        tier = member_tier(session, merchant_id=till.merchant.id, member_id=member.id,
                           program=program).current
    return price_sale(data, program=program, gtins=gtins,
                      member_id=member.id if member else None, applied=applied, rate=rate,
                      balance=balance, tier=tier, explain=explain)


def price_sale(data: PurchaseWrite, *, program: MerchantProgram, gtins: list[str | None],
               member_id: uuid.UUID | None, applied: list[vouchers.Applied],
               rate: Rate | None, balance: int | None, tier: TierView | None,
               explain: bool = True) -> Priced:
    """The whole price of a sale from what was read for it, without a session: the one
    pricing of the online commit, the quote and the set-wise offline replay.

    ``balance`` and ``tier`` are the member's points and tier before the sale (None when
    anonymous); ``applied`` the vouchers already priced on the lines. ``explain=False``
    (a commit: its answer shows no explanation) skips writing the earn's explanation.
    """
    view = program.rules
    amounts = [line.quantity * line.unit_price for line in data.lines]
    subtotal = sum(amounts)
    voucher_shares = [sum(parts) for parts in zip(
        *(item.line_discounts for item in applied), strict=True)] if applied else [0] * len(amounts)
    voucher_discount = sum(voucher_shares)
    after_vouchers = [amount - share for amount, share in zip(amounts, voucher_shares,
                                                              strict=True)]
    discount = rules.check_burn(data.points_to_burn,
                                basket_total_minor=subtotal - voucher_discount,
                                point_value_minor=view.point_value_minor,
                                min_burn=view.min_burn)
    miles_discount = _miles_discount(data, rate=rate, due=subtotal - voucher_discount - discount)
    # Each discount is split over the lines in proportion to what is still due on them.
    point_shares = shares(discount, after_vouchers)
    after_points = [due - share for due, share in zip(after_vouchers, point_shares,
                                                      strict=True)]
    mile_shares = shares(miles_discount, after_points)
    paid = [due - share for due, share in zip(after_points, mile_shares, strict=True)]
    total = subtotal - voucher_discount - discount - miles_discount
    most: int | None = None
    tier_name: str | None = None
    tier_bp = rules.BP_ONE
    miles_earned = 0
    if member_id is not None:
        assert balance is not None
        most = rules.max_burnable(balance=balance,
                                  basket_total_minor=subtotal - voucher_discount,
                                  point_value_minor=view.point_value_minor,
                                  min_burn=view.min_burn)
        if tier is not None:
            tier_name, tier_bp = tier.name, tier.earn_multiplier_bp
        # Earn on what is paid: each line's amount less its shares of the discounts.
        earned = rules.earn_for_basket(
            view, [rules.BasketLine(amount=amount, category=line.category)
                   for amount, line in zip(paid, data.lines, strict=True)],
            tier_bp, currency=program.currency, minor_units=program.currency_minor_units,
            explain=explain)
        line_points = [line.points for line in earned.lines]
        points_earned, explanation = earned.points, list(earned.explanation)
        bonus = vouchers.add_bonus_points(applied, points_earned=points_earned)
        if bonus:
            # Voucher points ride on the lines like the rest, so a return takes back each
            # unit's share of them too.
            line_points = [base + extra for base, extra in zip(
                line_points, shares(bonus, paid), strict=True)]
            points_earned += bonus
            explanation.extend(f"{item.bonus_points} bonus points from voucher {item.display}"
                               for item in applied if item.bonus_points)
        if data.miles is not None:
            miles_earned = data.miles
            explanation.append(f"{miles_earned} coalition miles as reported by the merchant")
        elif rate is not None:
            miles_earned = coalition_rules.miles_for_spend(total, rate)
            explanation.append(f"{miles_earned} coalition miles: 1 per {rate.spend_per_mile} "
                               f"minor units paid ({total})")
    else:
        line_points = [0] * len(amounts)
        points_earned, explanation = 0, ["anonymous purchase: no points"]
    explanation[:0] = [f"voucher {item.display}: {item.discount} off" for item in applied
                       if item.discount]
    line_burned = shares(data.points_to_burn, after_vouchers)
    line_miles_burned = shares(data.miles_to_burn, after_points)
    line_miles = shares(miles_earned, paid)
    lines = [LineRead(line_no=index + 1, sku=line.sku, gtin=gtins[index], name=line.name,
                      category=line.category, quantity=line.quantity,
                      unit_price=line.unit_price, amount=amounts[index],
                      voucher_discount=voucher_shares[index],
                      points_discount=point_shares[index], miles_discount=mile_shares[index],
                      points_earned=line_points[index], points_burned=line_burned[index],
                      miles_earned=line_miles[index], miles_burned=line_miles_burned[index])
             for index, line in enumerate(data.lines)]
    return Priced(member_id=member_id, program=program,
                  tier_name=tier_name, balance_before=balance, max_burnable=most,
                  subtotal=subtotal, voucher_discount=voucher_discount,
                  points_discount=discount, miles_discount=miles_discount, total=total,
                  points_burned=data.points_to_burn, points_earned=points_earned,
                  miles_burned=data.miles_to_burn, miles_earned=miles_earned,
                  lines=lines, vouchers=applied, explanation=explanation)


def _applied_read(applied: list[vouchers.Applied]) -> list[AppliedVoucher]:
    return [AppliedVoucher(code=item.display, offer_id=item.offer.id, name=item.offer.name,
                           kind=item.offer.kind, discount=item.discount,
                           bonus_points=item.bonus_points) for item in applied]


# --- quote ------------------------------------------------------------------------------

def quote(session: Session, *, actor: Principal, data: PurchaseWrite,
          explain: bool = False) -> QuoteRead:
    """What committing this body would do now. Writes nothing (the one exception is the
    identity service counting a wrong PIN, which must hold whatever the caller asked)."""
    till = till_of(session, actor)
    data = at_terminal(data, till)
    gtins = validate(data, till=till)
    now = utcnow()
    check_time(data, now=now)
    member = member_for(session, actor=actor, identification=data.member)
    priced = _price(session, data=data, till=till, member=member, gtins=gtins, now=now,
                    explain=True)
    if priced.balance_before is not None and data.points_to_burn > priced.balance_before:
        raise InsufficientPoints(f"the points balance is lower than {data.points_to_burn}",
                                 unit="points", requested=data.points_to_burn)
    # Read here, not in _price: a commit learns the balance after from its own entries.
    miles_before = (None if member is None
                    else ledger.miles_balance(session, member_id=member.id))
    if miles_before is not None and data.miles_to_burn > miles_before:
        raise InsufficientPoints(f"the miles balance is lower than {data.miles_to_burn}",
                                 unit="miles", requested=data.miles_to_burn)
    balance_after = (None if priced.balance_before is None else
                     priced.balance_before - priced.points_burned + priced.points_earned)
    miles_after = (None if miles_before is None else
                   miles_before - priced.miles_burned + priced.miles_earned)
    decision = campaigns.Decision(offers=[], checks=[])
    if member is not None:
        decision = campaigns.preview(session, campaign_checkout(
            till=till, member_id=member.id, data=data, priced=priced,
            occurred_at=data.occurred_at.astimezone(UTC)), now=now, explain=explain)
    return QuoteRead(receipt_no=data.receipt_no, member_id=priced.member_id,
                     currency=till.merchant.currency, subtotal=priced.subtotal,
                     voucher_discount=priced.voucher_discount,
                     points_discount=priced.points_discount,
                     miles_discount=priced.miles_discount, total=priced.total,
                     points_earned=priced.points_earned, points_burned=priced.points_burned,
                     miles_earned=priced.miles_earned, miles_burned=priced.miles_burned,
                     balance_before=priced.balance_before, balance_after=balance_after,
                     miles_balance_before=miles_before, miles_balance_after=miles_after,
                     max_burnable=priced.max_burnable, lines=priced.lines,
                     vouchers=_applied_read(priced.vouchers), offers=decision.offers,
                     campaign_checks=decision.checks, explanation=priced.explanation)


# --- commit -----------------------------------------------------------------------------

def _existing(session: Session, terminal_id: uuid.UUID, receipt_no: str) -> PosTransaction:
    existing = session.scalars(
        select(PosTransaction).where(PosTransaction.terminal_id == terminal_id,
                                     PosTransaction.receipt_no == receipt_no)
        .execution_options(populate_existing=True)).one_or_none()
    if existing is None:  # the insert failed on something other than the receipt
        raise LookupError("receipt claim failed but no transaction holds it")
    return existing


def _ensure_membership(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                       now: datetime) -> None:
    if is_member_of(session, member_id=member_id, merchant_id=merchant_id):
        return
    try:
        with session.begin_nested():
            session.add(Membership(member_id=member_id, merchant_id=merchant_id,
                                   joined_at=now, source="purchase"))
            session.flush()
    except IntegrityError:
        if not is_member_of(session, member_id=member_id, merchant_id=merchant_id):
            raise


class Claimable(Protocol):
    id: uuid.UUID
    request_hash: str
    response_json: str | None


def claim(session: Session, row: Claimable, *, digest: str,
          first: Callable[[], Claimable],
          conflict: Callable[[Claimable], PatronError]) -> str | None:
    """Insert ``row`` under its unique business key (receipt, return number), in a
    savepoint; None when this request holds the key now.

    A concurrent duplicate waits on the unique index (PostgreSQL) or the write lock
    (SQLite) until the holder commits, then fails the insert: ``first()`` reads the
    holder's row — the same body (``digest``) gets its stored answer text, another body
    ``conflict(row)``.
    """
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:
        # A new statement under READ COMMITTED sees the holder's committed row.
        existing = first()
        if existing.request_hash != digest or existing.response_json is None:
            raise conflict(existing) from None
        return existing.response_json
    return None


def commit(session: Session, *, actor: Principal, data: PurchaseWrite,
           explain: bool = False) -> str:
    """Record the purchase and move the points; the answer as JSON text.

    A replay of a committed receipt returns the first answer's exact text; the same
    receipt with another body is ``ReceiptConflict``. ``explain``: the answer also says
    why each campaign did or did not fire (``campaign_checks``); that is not kept with the
    receipt, so a replay answers without it.
    """
    till = till_of(session, actor)
    now = utcnow()
    data = at_terminal(data, till)
    gtins = validate(data, till=till)
    digest = request_hash(data)
    try:
        occurred_at = data.occurred_at.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: outside the window anyway
        check_time(data, now=now)
        raise
    transaction = PosTransaction(
        id=uuid.uuid4(), merchant_id=till.merchant.id, store_id=till.store.id,
        terminal_id=till.terminal.id, receipt_no=data.receipt_no, member_id=None,
        channel=sale_channel(till.terminal.kind, data.channel).value,
        currency=till.merchant.currency, subtotal=0,
        points_discount=0, total=0, points_earned=0, points_burned=0,
        payment_method=data.payment.method.value if data.payment else None,
        payment_amount=data.payment.amount if data.payment else None,
        occurred_at=occurred_at, created_at=now, request_hash=digest)
    replay = claim(session, transaction, digest=digest, first=lambda: _existing(
        session, till.terminal.id, data.receipt_no), conflict=lambda existing: ReceiptConflict(
        f"receipt {data.receipt_no!r} was already committed on this terminal with a "
        f"different body", field="receipt_no", transaction_id=str(existing.id)))
    if replay is not None:
        return replay
    # After the claim: a replay is answered whenever it comes, a new purchase must be recent.
    check_time(data, now=now)

    try:
        member = member_for(session, actor=actor, identification=data.member)
    except PatronError as exc:
        if exc.keep_side_effects:
            # A counted wrong PIN is committed; the receipt claim must not be.
            session.delete(transaction)
            session.flush()
        raise
    priced = _price(session, data=data, till=till, member=member, gtins=gtins, now=now,
                    explain=False)
    # Codes first: a refused code fails the purchase before any ledger row is locked.
    vouchers.redeem_applied(session, till=till, applied=priced.vouchers,
                            member_id=priced.member_id, transaction_id=transaction.id, now=now)
    source = f"pos:{till.terminal.id}"
    reason = f"purchase {data.receipt_no}"
    balance_after: int | None = None
    miles_after: int | None = None
    issued: list[IssuedBenefitRead] = []
    offers: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    if member is not None:
        _ensure_membership(session, member_id=member.id, merchant_id=till.merchant.id, now=now)
        # What this purchase's points earn, and the campaigns' and referrals' points, expire.
        expires_at = rules.points_expire_at(priced.program.rules, earned_at=occurred_at,
                                            timezone=till.store.timezone)
        # The campaigns decide on this purchase and the member as they came in (their stats
        # and scores before this purchase counts: docs/campaigns.md), and before the ledger
        # rows every checkout of the merchant shares are locked: those locks are held to
        # the commit, so the campaigns' reads and writes would lengthen every checkout's
        # wait. Their points are booked after the purchase's own.
        campaign_points: list[Grant] = []
        decided = _campaign_outcomes(session, till=till, member_id=member.id, data=data,
                                     priced=priced, transaction_id=transaction.id,
                                     occurred_at=occurred_at, now=now,
                                     grants=campaign_points, explain=explain)
        offers, checks = decided.offers, decided.checks
        # Burn before earn: points earned by this purchase cannot pay for it.
        if priced.points_burned:
            burn = ledger.burn(session, merchant_id=till.merchant.id, member_id=member.id,
                               points=priced.points_burned,
                               idempotency_key=f"pos:{transaction.id}:burn", source=source,
                               reason=reason, occurred_at=occurred_at)
            transaction.burn_entry_id = burn.id
        if priced.points_earned:
            earn = ledger.earn(session, merchant_id=till.merchant.id, member_id=member.id,
                               points=priced.points_earned, expires_at=expires_at,
                               idempotency_key=f"pos:{transaction.id}:earn", source=source,
                               reason=reason, occurred_at=occurred_at)
            transaction.earn_entry_id = earn.id
        for grant in campaign_points:
            ledger.earn(session, merchant_id=till.merchant.id, member_id=member.id,
                        points=grant.points, expires_at=expires_at,
                        idempotency_key=grant.idempotency_key, source=source,
                        reason=grant.reason, occurred_at=occurred_at)
        if priced.miles_burned:
            transaction.miles_burn_entry_id = ledger.burn_miles(
                session, member_id=member.id, miles=priced.miles_burned,
                merchant_id=till.merchant.id, idempotency_key=f"pos:{transaction.id}:miles-burn",
                source=source, reason=reason, occurred_at=occurred_at).id
        if priced.miles_earned:
            transaction.miles_earn_entry_id = ledger.earn_miles(
                session, member_id=member.id, miles=priced.miles_earned,
                merchant_id=till.merchant.id, idempotency_key=f"pos:{transaction.id}:miles",
                source=source, reason=reason, occurred_at=occurred_at).id
        # The referee's first qualifying purchase rewards the referral (docs/referrals.md).
        referral = referrals.on_purchase(session, referrals.Purchase(
            merchant_id=till.merchant.id, merchant_number=till.merchant.number,
            member_id=member.id, transaction_id=transaction.id, total_minor=priced.total,
            occurred_at=occurred_at, source=source, points_expire_at=expires_at), now=now)
        if referral is not None:
            offers.append(referral)
        record_purchase(session, member_id=member.id, merchant_id=till.merchant.id,
                        store_id=till.store.id, occurred_at=occurred_at,
                        spend_minor=priced.total,
                        category_quantities=category_quantities(data.lines))
        # After the earn: thresholds crossed and stamp cards completed (docs/vouchers.md).
        issued = benefits.on_purchase(
            session, merchant_id=till.merchant.id, member_id=member.id,
            transaction_id=transaction.id, points_earned=priced.points_earned,
            miles_earned=priced.miles_earned,
            lines=[(line.sku, line.category, line.quantity) for line in data.lines],
            occurred_at=occurred_at, now=now)
        balance_after = ledger.points_balance(session, merchant_id=till.merchant.id,
                                              member_id=member.id)
        miles_after = ledger.miles_balance(session, member_id=member.id)

    transaction.member_id = priced.member_id
    transaction.subtotal = priced.subtotal
    transaction.voucher_discount = priced.voucher_discount
    transaction.points_discount = priced.points_discount
    transaction.miles_discount = priced.miles_discount
    transaction.total = priced.total
    transaction.points_earned = priced.points_earned
    transaction.points_burned = priced.points_burned
    transaction.miles_earned = priced.miles_earned
    transaction.miles_burned = priced.miles_burned
    answer = answer_for(transaction.id, data=data, till=till, priced=priced,
                        balance_after=balance_after, miles_after=miles_after, issued=issued,
                        occurred_at=occurred_at, now=now, offers=offers)
    transaction.response_json = answer.model_dump_json()
    session.flush()
    session.execute(insert(table_of(PosTransactionLine)), line_rows(transaction.id, till=till,
                                                          priced=priced))
    tier_after: TierProgress | None = None
    if member is not None and transaction.earn_entry_id is not None:
        # Only an earn can move a member up (or, with the window, keep them); compare the
        # tier the purchase was priced in with the one after it.
        tier_after = member_tier(session, merchant_id=till.merchant.id, member_id=member.id,
                                 now=max(now, occurred_at), program=priced.program)
    for type_, payload in commit_events(
            till=till, transaction_id=transaction.id, data=data, priced=priced,
            burn_entry_id=transaction.burn_entry_id, earn_entry_id=transaction.earn_entry_id,
            balance_after=balance_after, tier_after=tier_after):
        emit(session, type=type_, merchant_id=till.merchant.id, member_id=priced.member_id,
             occurred_at=occurred_at, payload=payload)
        if type_ == EventType.tier_changed and member is not None:
            # Tier-change campaigns see the member in their new tier.
            occasions.fire(session, occasions.Occasion(
                trigger=Trigger.tier_change, key=f"tier:{transaction.id}",
                merchant_id=till.merchant.id, member_id=member.id, occurred_at=occurred_at,
                store_id=till.store.id), now=now)
    if explain:
        return json.dumps({**json.loads(transaction.response_json), "campaign_checks": checks},
                          separators=(",", ":"))
    return transaction.response_json


def campaign_checkout(*, till: Till, member_id: uuid.UUID, data: PurchaseWrite,
                      priced: Priced, occurred_at: datetime) -> campaigns.Checkout:
    """What the campaigns are told of a purchase (``campaigns.engine``)."""
    return campaigns.Checkout(
        merchant_id=till.merchant.id, merchant_number=till.merchant.number,
        country=till.merchant.country, currency=till.merchant.currency,
        store_id=till.store.id, timezone=till.store.timezone, member_id=member_id,
        lines=[CampaignLine(sku=line.sku, quantity=line.quantity,
                            category=(rules.normalise_category(line.category)
                                      if line.category is not None else None))
               for line in data.lines],
        total_minor=priced.total, channel=sale_channel(till.terminal.kind, data.channel).value,
        offers_used=[str(applied.offer.id) for applied in priced.vouchers],
        points_earned=priced.points_earned, tier=priced.tier_name, occurred_at=occurred_at)


@dataclass(frozen=True)
class Grant:
    """Points a campaign gives at a checkout, booked after the purchase's own."""

    points: int
    idempotency_key: str
    reason: str


def _campaign_outcomes(session: Session, *, till: Till, member_id: uuid.UUID,
                       data: PurchaseWrite, priced: Priced, transaction_id: uuid.UUID,
                       occurred_at: datetime, now: datetime, grants: list[Grant],
                       explain: bool) -> campaigns.Decision:
    """The campaigns' outcomes; the points they give are added to ``grants``."""
    def grant(*, points: int, idempotency_key: str, reason: str) -> None:
        grants.append(Grant(points=points, idempotency_key=idempotency_key, reason=reason))

    checkout = campaign_checkout(till=till, member_id=member_id, data=data, priced=priced,
                                 occurred_at=occurred_at)
    return campaigns.at_checkout(session, checkout, transaction_id=transaction_id, now=now,
                                 grant_points=grant, explain=explain)


def category_quantities(lines: Sequence[LineWrite]) -> dict[str, int]:
    """Units bought per (normalised) category: what the member's statistics count."""
    categories: dict[str, int] = {}
    for line in lines:
        if line.category is not None:
            name = rules.normalise_category(line.category)
            categories[name] = categories.get(name, 0) + line.quantity
    return categories


def answer_for(transaction_id: uuid.UUID, *, data: PurchaseWrite, till: Till, priced: Priced,
               balance_after: int | None, miles_after: int | None,
               issued: list[IssuedBenefitRead], occurred_at: datetime,
               now: datetime, offers: list[dict[str, Any]] | None = None) -> TransactionRead:
    """The commit's answer (stored with the receipt and returned to every replay)."""
    return TransactionRead(
        id=transaction_id, receipt_no=data.receipt_no, member_id=priced.member_id,
        channel=sale_channel(till.terminal.kind, data.channel),
        currency=till.merchant.currency, subtotal=priced.subtotal,
        voucher_discount=priced.voucher_discount, points_discount=priced.points_discount,
        miles_discount=priced.miles_discount,
        total=priced.total, points_earned=priced.points_earned,
        points_burned=priced.points_burned, miles_earned=priced.miles_earned,
        miles_burned=priced.miles_burned, balance_after=balance_after,
        miles_balance_after=miles_after, lines=priced.lines,
        vouchers=_applied_read(priced.vouchers), offers=offers or [], benefits=issued,
        occurred_at=occurred_at, created_at=now)


def line_rows(transaction_id: uuid.UUID, *, till: Till, priced: Priced) -> list[dict[str, Any]]:
    """The purchase's lines as rows of ``pos_transaction_lines``."""
    return [{"transaction_id": transaction_id, "line_no": line.line_no,
             "merchant_id": till.merchant.id, "sku": line.sku, "gtin": line.gtin,
             "name": line.name, "category": line.category, "quantity": line.quantity,
             "unit_price": line.unit_price, "amount": line.amount,
             "voucher_discount": line.voucher_discount,
             "points_discount": line.points_discount, "miles_discount": line.miles_discount,
             "points_earned": line.points_earned, "points_burned": line.points_burned,
             "miles_earned": line.miles_earned, "miles_burned": line.miles_burned,
             "returned_quantity": 0}
            for line in priced.lines]


@functools.lru_cache(maxsize=1024)
def _till_ids(merchant_id: uuid.UUID, store_id: uuid.UUID,
              terminal_id: uuid.UUID) -> dict[str, str]:
    """A till's ids as event payloads show them (made once per till, not per purchase)."""
    return {"merchant_id": str(merchant_id), "store_id": str(store_id),
            "terminal_id": str(terminal_id)}


def commit_events(*, till: Till, transaction_id: uuid.UUID, data: PurchaseWrite,
                  priced: Priced, burn_entry_id: uuid.UUID | None,
                  earn_entry_id: uuid.UUID | None, balance_after: int | None,
                  tier_after: TierProgress | None) -> list[tuple[EventType, dict[str, Any]]]:
    """The outbox events of a committed purchase, in order: (type, payload).

    ``tier_after`` is the member's tier after an earn (None without one): a
    ``tier.changed`` event when it differs from the tier the purchase was priced in."""
    member_id = priced.member_id
    currency = till.merchant.currency
    base: dict[str, Any] = {"transaction_id": str(transaction_id),
                            "receipt_no": data.receipt_no,
                            **_till_ids(till.merchant.id, till.store.id, till.terminal.id),
                            "member_id": str(member_id) if member_id else None}
    events: list[tuple[EventType, dict[str, Any]]] = [(EventType.transaction_committed, {
        **base, "channel": sale_channel(till.terminal.kind, data.channel).value,
        "currency": currency,
        "subtotal": priced.subtotal, "points_discount": priced.points_discount,
        "total": priced.total, "points_earned": priced.points_earned,
        "points_burned": priced.points_burned})]
    if member_id is None:
        return events
    if burn_entry_id is not None:
        events.append((EventType.points_burned, {
            **base, "entry_id": str(burn_entry_id), "points": priced.points_burned,
            "discount_minor": priced.points_discount, "currency": currency,
            "balance_after": balance_after}))
    if earn_entry_id is not None:
        events.append((EventType.points_earned, {
            **base, "entry_id": str(earn_entry_id), "points": priced.points_earned,
            "balance_after": balance_after}))
        if tier_after is not None and tier_changed(priced, tier_after):
            events.append((EventType.tier_changed, {
                **base, "from": priced.tier_name, "to": _tier_name(tier_after),
                "points_earned_12m": tier_after.points_earned_12m}))
    return events


def _tier_name(progress: TierProgress) -> str | None:
    return progress.current.name if progress.current is not None else None


def tier_changed(priced: Priced, tier_after: TierProgress) -> bool:
    """Whether the purchase's earn moves the member out of the tier it was priced in (a
    ``tier.changed`` event, and the tier-change campaigns run)."""
    return _tier_name(tier_after) != priced.tier_name


# --- reading ----------------------------------------------------------------------------

def get_transaction(session: Session, *, actor: Principal,
                    transaction_id: uuid.UUID) -> str:
    """The answer the commit gave, as JSON text; the merchant's own keys only."""
    actor.require(Role.operator, Role.merchant, Role.terminal)
    transaction = session.get(PosTransaction, transaction_id)
    if (transaction is None or transaction.response_json is None
            or not actor.sees_merchant(transaction.merchant_id)):
        raise TransactionNotFound("no such transaction")
    return transaction.response_json
