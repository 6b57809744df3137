"""Returns: goods brought back from a purchase, whole or some lines or units.

One database transaction (owned by the endpoint):
1. **claim the return number**: insert the ``pos_returns`` row under the unique
   ``(transaction_id, return_no)`` in a savepoint; a concurrent duplicate waits there, then
   gets the stored answer (same body) or ``return_conflict`` (another body);
2. take the units: one conditional ``UPDATE … SET returned_quantity = returned_quantity + q
   WHERE returned_quantity + q <= quantity`` per line, in line order, so concurrent
   returns of one purchase can never bring back more than was bought;
3. each returned unit gives back its **exact share** of what the line earned and spent:
   ``share(after) - share(before)`` with ``share(n) = floor(x x n / quantity)``, so
   returning all units, in any number of returns, gives back exactly the line's figures;
4. ledger: points spent are restored, points earned clawed back (a debt if the member has
   spent them, docs/ledger.md), miles likewise (miles never go below zero: what cannot be
   collected is recorded as ``miles_uncollected``); member spend, the answer, outbox events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.notify.outbox import EventType, emit
from patron.operations.errors import OccurredInFuture
from patron.operations.service import MAX_FUTURE
from patron.pos.errors import (
    DuplicateLine,
    InvalidQuantity,
    NothingToReturn,
    ReturnBeforePurchase,
    ReturnConflict,
    ReturnExceedsPurchase,
    TransactionNotFound,
    UnknownLine,
)
from patron.pos.models import PosReturn, PosReturnLine, PosTransaction, PosTransactionLine
from patron.pos.schemas import ReturnLineRead, ReturnRead, ReturnWrite
from patron.pos.service import MAX_QUANTITY, canonical_hash, claim
from patron.referrals import service as referrals
from patron.scores.service import record_refund
from patron.tenancy.service import Principal, Till, till_of
from patron.vouchers import service as vouchers
from patron.vouchers.benefits import service as benefits


@dataclass(frozen=True)
class Portion:
    refund_amount: int
    points_clawed_back: int
    points_restored: int
    miles_clawed_back: int
    miles_restored: int


def portion(line: PosTransactionLine, *, before: int, after: int) -> Portion:
    """What units ``before+1 … after`` of the line carry (cumulative floor shares)."""

    def share(value: int) -> int:
        return value * after // line.quantity - value * before // line.quantity

    paid = line.amount - line.voucher_discount - line.points_discount - line.miles_discount
    return Portion(refund_amount=share(paid), points_clawed_back=share(line.points_earned),
                   points_restored=share(line.points_burned),
                   miles_clawed_back=share(line.miles_earned),
                   miles_restored=share(line.miles_burned))


def record_return(session: Session, *, actor: Principal, transaction_id: uuid.UUID,
                  data: ReturnWrite) -> str:
    """Record a return of the calling merchant's purchase; the answer as JSON text.

    Idempotent by (purchase, ``return_no``): a replay gets the first answer's exact text.
    """
    till = till_of(session, actor)
    now = utcnow()
    purchase = session.get(PosTransaction, transaction_id)
    if (purchase is None or purchase.merchant_id != till.merchant.id
            or purchase.response_json is None):
        raise TransactionNotFound("no such transaction")
    requested = _requested(data)
    digest = canonical_hash(data)
    try:
        occurred_at = data.occurred_at.astimezone(UTC)
    except OverflowError as exc:
        raise ReturnBeforePurchase("occurred_at is out of range", field="occurred_at") from exc
    record = PosReturn(id=uuid.uuid4(), transaction_id=purchase.id,
                       merchant_id=till.merchant.id, terminal_id=till.terminal.id,
                       return_no=data.return_no, member_id=purchase.member_id,
                       refund_amount=0, points_clawed_back=0, points_restored=0,
                       miles_clawed_back=0, miles_uncollected=0, miles_restored=0,
                       occurred_at=occurred_at, created_at=now, request_hash=digest)
    replay = claim(session, record, digest=digest, first=lambda: session.scalars(
        select(PosReturn).where(PosReturn.transaction_id == purchase.id,
                                PosReturn.return_no == data.return_no)
        .execution_options(populate_existing=True)).one(),
        conflict=lambda existing: ReturnConflict(
            f"return {data.return_no!r} of this purchase was already recorded with a "
            f"different body", field="return_no", return_id=str(existing.id)))
    if replay is not None:
        return replay
    if occurred_at > now + MAX_FUTURE:
        raise OccurredInFuture("occurred_at is more than 5 minutes after the server's time; "
                               "check the terminal's clock", field="occurred_at")
    if occurred_at < purchase.occurred_at:
        raise ReturnBeforePurchase("occurred_at is before the purchase's", field="occurred_at",
                                   purchase_occurred_at=purchase.occurred_at.isoformat())

    # Returns of one purchase queue here, so exactly one of them sees the last unit go.
    # FOR NO KEY UPDATE: each return already holds a key-share lock on this row (its
    # pos_returns row's foreign key), which a plain FOR UPDATE would wait on — two
    # returns would deadlock.
    session.execute(select(PosTransaction.id).where(PosTransaction.id == purchase.id)
                    .with_for_update(key_share=True))
    lines = _take_units(session, purchase=purchase, requested=requested)
    # Codes before the ledger (the commit's lock order): a purchase returned in full gives
    # its vouchers back; a partial return keeps them used (docs/vouchers.md).
    fully_returned = _fully_returned(session, purchase.id)
    vouchers_returned = (vouchers.reverse_for_purchase(session, transaction_id=purchase.id,
                                                       now=now)
                         if fully_returned else [])
    totals = Portion(*(sum(getattr(part, name) for _, _, part in lines)
                       for name in Portion.__dataclass_fields__))
    record.refund_amount = totals.refund_amount
    record.points_restored = totals.points_restored
    record.points_clawed_back = totals.points_clawed_back
    record.miles_restored = totals.miles_restored
    record.miles_clawed_back = totals.miles_clawed_back
    balance_after = miles_after = None
    benefits_revoked: list[str] = []
    referral_clawed_back: uuid.UUID | None = None
    if purchase.member_id is not None:
        _move_ledger(session, purchase=purchase, record=record, totals=totals)
        record_refund(session, member_id=purchase.member_id, merchant_id=purchase.merchant_id,
                      store_id=purchase.store_id, purchased_at=purchase.occurred_at,
                      refund_minor=totals.refund_amount)
        # What the purchase counted towards benefit rules goes back (docs/vouchers.md).
        benefits_revoked = benefits.on_return(
            session, transaction_id=purchase.id, return_id=record.id,
            merchant_id=purchase.merchant_id, member_id=purchase.member_id,
            returned={line_no: quantity for line_no, quantity, _ in lines},
            points_clawed_back=totals.points_clawed_back,
            miles_clawed_back=totals.miles_clawed_back, occurred_at=record.occurred_at,
            now=now)
        # A referral this purchase qualified is undone when the return undoes the purchase
        # (docs/referrals.md).
        referral_clawed_back = referrals.on_return(
            session, transaction_id=purchase.id,
            net_minor=purchase.total - _refunded(session, purchase.id, record),
            fully_returned=fully_returned,
            source=f"pos:{till.terminal.id}", occurred_at=record.occurred_at, now=now)
        balance_after = ledger.points_balance(session, merchant_id=purchase.merchant_id,
                                              member_id=purchase.member_id)
        miles_after = ledger.miles_balance(session, member_id=purchase.member_id)
    session.add_all(PosReturnLine(return_id=record.id, line_no=line_no,
                                  merchant_id=till.merchant.id, quantity=quantity,
                                  **vars(part)) for line_no, quantity, part in lines)
    answer = ReturnRead(
        id=record.id, transaction_id=purchase.id, return_no=data.return_no,
        member_id=purchase.member_id, currency=purchase.currency,
        refund_amount=record.refund_amount, vouchers_returned=vouchers_returned,
        benefits_revoked=benefits_revoked, referral_clawed_back=referral_clawed_back,
        points_clawed_back=record.points_clawed_back,
        points_restored=record.points_restored, miles_clawed_back=record.miles_clawed_back,
        miles_uncollected=record.miles_uncollected, miles_restored=record.miles_restored,
        balance_after=balance_after, miles_balance_after=miles_after,
        lines=[ReturnLineRead(line_no=line_no, quantity=quantity, **vars(part))
               for line_no, quantity, part in lines],
        occurred_at=occurred_at, created_at=now)
    record.response_json = answer.model_dump_json()
    session.flush()
    _emit_events(session, till=till, purchase=purchase, record=record,
                 balance_after=balance_after, miles_after=miles_after)
    return record.response_json


def _requested(data: ReturnWrite) -> dict[int, int] | None:
    if data.lines is None:
        return None
    requested: dict[int, int] = {}
    for index, line in enumerate(data.lines):
        if line.line_no in requested:
            raise DuplicateLine(f"line {line.line_no} appears twice",
                                field=f"lines[{index}].line_no")
        if not 1 <= line.quantity <= MAX_QUANTITY:
            raise InvalidQuantity(f"lines[{index}].quantity must be 1 to {MAX_QUANTITY}",
                                  field=f"lines[{index}].quantity")
        requested[line.line_no] = line.quantity
    return requested


def _take_units(session: Session, *, purchase: PosTransaction,
                requested: dict[int, int] | None) -> list[tuple[int, int, Portion]]:
    """Mark the units returned (atomically, line by line in order); their portions."""
    stored = {line.line_no: line for line in session.scalars(
        select(PosTransactionLine).where(PosTransactionLine.transaction_id == purchase.id)
        .execution_options(populate_existing=True))}
    if requested is None:
        wanted = {line_no: line.quantity - line.returned_quantity
                  for line_no, line in stored.items()
                  if line.quantity > line.returned_quantity}
        if not wanted:
            raise NothingToReturn("every unit of this purchase has already been returned")
    else:
        for line_no in requested:
            if line_no not in stored:
                raise UnknownLine(f"the purchase has no line {line_no}", field="lines",
                                  line_no=line_no)
        wanted = requested
    taken = []
    for line_no in sorted(wanted):
        line, quantity = stored[line_no], wanted[line_no]
        after = session.execute(
            update(PosTransactionLine)
            .where(PosTransactionLine.transaction_id == purchase.id,
                   PosTransactionLine.line_no == line_no,
                   PosTransactionLine.returned_quantity + quantity <= PosTransactionLine.quantity)
            .values(returned_quantity=PosTransactionLine.returned_quantity + quantity)
            .returning(PosTransactionLine.returned_quantity),
            execution_options={"synchronize_session": False}).scalar_one_or_none()
        if after is None:
            left = session.scalar(select(PosTransactionLine.quantity
                                         - PosTransactionLine.returned_quantity)
                                  .where(PosTransactionLine.transaction_id == purchase.id,
                                         PosTransactionLine.line_no == line_no))
            raise ReturnExceedsPurchase(f"line {line_no}: {quantity} units asked back, "
                                        f"{left} not yet returned", field="lines",
                                        line_no=line_no, returnable=int(left or 0))
        taken.append((line_no, quantity,
                      portion(line, before=int(after) - quantity, after=int(after))))
    return taken


def _move_ledger(session: Session, *, purchase: PosTransaction, record: PosReturn,
                 totals: Portion) -> None:
    source = f"pos-return:{record.terminal_id}"
    reason = f"return {record.return_no} of purchase {purchase.receipt_no}"
    common: dict[str, Any] = {"source": source, "reason": reason,
                              "occurred_at": record.occurred_at}
    key = f"return:{record.id}"
    # Give back before taking back, so that a member who spent the earned points owes
    # only what the restored ones do not cover; the claw-back draws the purchase's own lot
    # first (docs/ledger.md).
    if totals.points_restored and purchase.burn_entry_id is not None:
        ledger.restore_burn(session, burn_entry_id=purchase.burn_entry_id,
                            points=totals.points_restored, idempotency_key=f"{key}:restore",
                            **common)
    if totals.points_clawed_back and purchase.earn_entry_id is not None:
        ledger.claw_back(session, earn_entry_id=purchase.earn_entry_id,
                         points=totals.points_clawed_back, idempotency_key=f"{key}:claw",
                         **common)
    if totals.miles_restored and purchase.miles_burn_entry_id is not None:
        ledger.restore_miles(session, burn_entry_id=purchase.miles_burn_entry_id,
                             miles=totals.miles_restored,
                             idempotency_key=f"{key}:miles-restore", **common)
    if totals.miles_clawed_back and purchase.miles_earn_entry_id is not None:
        _, uncollected = ledger.claw_back_miles(
            session, earn_entry_id=purchase.miles_earn_entry_id,
            miles=totals.miles_clawed_back, idempotency_key=f"{key}:miles-claw", **common)
        record.miles_uncollected = uncollected
        record.miles_clawed_back = totals.miles_clawed_back - uncollected


def _fully_returned(session: Session, transaction_id: uuid.UUID) -> bool:
    return session.scalar(select(func.count()).select_from(PosTransactionLine).where(
        PosTransactionLine.transaction_id == transaction_id,
        PosTransactionLine.returned_quantity < PosTransactionLine.quantity)) == 0


def _refunded(session: Session, transaction_id: uuid.UUID, record: PosReturn) -> int:
    """What the purchase's returns have refunded, this one included."""
    earlier = session.scalar(select(func.coalesce(func.sum(PosReturn.refund_amount), 0)).where(
        PosReturn.transaction_id == transaction_id, PosReturn.id != record.id)) or 0
    return int(earlier) + record.refund_amount


def _emit_events(session: Session, *, till: Till, purchase: PosTransaction, record: PosReturn,
                 balance_after: int | None, miles_after: int | None) -> None:
    payload: dict[str, Any] = {
        "return_id": str(record.id), "return_no": record.return_no,
        "transaction_id": str(purchase.id), "receipt_no": purchase.receipt_no,
        "merchant_id": str(till.merchant.id), "store_id": str(till.store.id),
        "terminal_id": str(till.terminal.id),
        "member_id": str(purchase.member_id) if purchase.member_id else None,
        "currency": purchase.currency, "refund_amount": record.refund_amount}
    emit(session, type=EventType.transaction_returned, merchant_id=till.merchant.id,
         member_id=purchase.member_id, occurred_at=record.occurred_at, payload=payload)
    moved = (record.points_clawed_back, record.points_restored, record.miles_clawed_back,
             record.miles_restored)
    if purchase.member_id is not None and any(moved):
        emit(session, type=EventType.points_returned, merchant_id=till.merchant.id,
             member_id=purchase.member_id, occurred_at=record.occurred_at, payload={
                 **payload, "points_clawed_back": record.points_clawed_back,
                 "points_restored": record.points_restored,
                 "miles_clawed_back": record.miles_clawed_back,
                 "miles_uncollected": record.miles_uncollected,
                 "miles_restored": record.miles_restored, "balance_after": balance_after,
                 "miles_balance_after": miles_after})
