from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from patron import units
from patron.http import AUTHED, Caller, ClientAddress, Db, problems
from patron.pos import returns, service
from patron.pos.schemas import (
    PurchaseWrite,
    QuoteRead,
    ReturnRead,
    ReturnWrite,
    TransactionRead,
)

router = APIRouter(prefix="/v1/pos", tags=["pos"])

_REFUSALS = """Refusals, each with its own `code`: `unknown_currency`, `currency_not_merchants`,
`channel_not_terminals` (`channel` contradicts the terminal's kind: the terminal decides),
`occurred_at_in_future` (more than 5 minutes ahead), `occurred_at_too_old` (more than 30 days),
`invalid_gtin`, `invalid_quantity`, `invalid_price`, `invalid_payment_amount`, `invalid_burn`,
`burn_below_minimum`, `burn_exceeds_basket`, `burn_needs_member`, `basket_too_large`,
`miles_to_burn` and `miles`: `invalid_miles`, `miles_not_offered`, `miles_exceed_basket`;
`insufficient_points` (409, `unit` says points or miles), the identification codes of
`POST /v1/identify`, and
`validation_failed` for the shape (unknown fields are refused). A purchase presenting
`vouchers` from a terminal, address or member with too many failed voucher attempts is 429
`too_many_failures` with `Retry-After`; a purchase refused for a voucher counts as one."""


@router.post("/quote", response_model=QuoteRead,
             responses=problems(*AUTHED, 409, 410, 423, 429))
def quote(data: PurchaseWrite, db: Db, caller: Caller, address: ClientAddress,
          explain: bool = False) -> QuoteRead:
    """Preview a purchase with a terminal key: prices, points burned as a discount, points
    earned, the balance after, the campaigns' offers the basket would earn (with
    `explain=true`, each campaign's verdict and its conditions'). Writes nothing.

    """
    return units.quote(db, caller=caller, address=address, data=data, explain=explain)


quote.__doc__ = (quote.__doc__ or "") + _REFUSALS


@router.post("/transactions", status_code=201, response_model=TransactionRead,
             responses=problems(*AUTHED, 409, 410, 423, 429))
def commit(data: PurchaseWrite, db: Db, caller: Caller, address: ClientAddress,
           explain: bool = False) -> Response:
    """Commit a purchase with a terminal key (a till, or the web shop's `online` terminal):
    the transaction and its lines, points burned and earned, member stats and outbox events,
    all in one database transaction. Anonymous purchases (no `member`) are recorded too.

    Idempotent by (terminal, `receipt_no`): a replay with the same body answers 201 with
    the identical body and changes nothing; the same `receipt_no` with a different body is
    409 `receipt_conflict`. Points are earned on what is paid (after the points discount).

    `explain=true` adds `campaign_checks`: each active campaign's verdict (`fired`,
    `condition_failed`, `held_out`, `member_limit_reached`, `budget_spent`) with every
    condition's verdict and the value it saw. It is not kept with the receipt: a replay
    answers the first answer without it.

    """
    body = units.commit(db, caller=caller, address=address, data=data, explain=explain)
    return Response(content=body, status_code=201, media_type="application/json")


commit.__doc__ = (commit.__doc__ or "") + _REFUSALS


@router.get("/transactions/{transaction_id}", response_model=TransactionRead,
            responses=problems(*AUTHED))
def get_transaction(transaction_id: uuid.UUID, db: Db, caller: Caller) -> Response:
    """The committed transaction as its commit answered (the merchant's own keys)."""
    with db.session_scope() as session:
        body = service.get_transaction(session, actor=caller, transaction_id=transaction_id)
    return Response(content=body, media_type="application/json")


@router.post("/transactions/{transaction_id}/returns", status_code=201,
             response_model=ReturnRead, responses=problems(*AUTHED, 409))
def record_return(transaction_id: uuid.UUID, data: ReturnWrite, db: Db,
                  caller: Caller) -> Response:
    """Record goods brought back, with a terminal key of the purchase's merchant (any of
    its stores): whole purchase (no `lines`) or some lines and units. Each returned unit
    gives back its exact share of what its line earned and spent: points and miles earned
    are clawed back (a member who already spent the points owes them; miles never go below
    zero, the rest is `miles_uncollected`), points and miles spent are restored, and
    `refund_amount` says what the customer paid for those units.

    Idempotent by (purchase, `return_no`): a replay answers 201 with the identical body;
    the same `return_no` with another body is 409 `return_conflict`. Other codes:
    `unknown_line`, `duplicate_line`, `invalid_quantity`, `return_before_purchase`,
    `occurred_at_in_future` (422); `return_exceeds_purchase`, `nothing_to_return` (409).
    """
    with db.session_scope() as session:
        body = returns.record_return(session, actor=caller, transaction_id=transaction_id,
                                     data=data)
    return Response(content=body, status_code=201, media_type="application/json")
