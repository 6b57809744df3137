from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from patron.http import AUTHED, Caller, Db, problems
from patron.ledger import views
from patron.ledger.models import Unit
from patron.ledger.schemas import Balances, LedgerPage

router = APIRouter(prefix="/v1/members", tags=["ledger"])

MerchantFilter = Annotated[uuid.UUID | None, Query(
    description="Narrow the answer to this merchant (the operator); a merchant or terminal "
                "key may name only its own")]


@router.get("/{member_id}/balances", response_model=Balances, responses=problems(*AUTHED))
def balances(member_id: uuid.UUID, db: Db, caller: Caller,
             merchant_id: MerchantFilter = None) -> Balances:
    """Points per merchant with what expires in the next 30 days and the tier there, and
    the coalition miles. A merchant or terminal key sees only its own merchant's points
    (other merchants' balances are private to them) and the shared miles; the operator
    sees every merchant. Sales-rep keys see no member (403)."""
    with db.session_scope() as session:
        return views.member_balances(session, actor=caller, member_id=member_id,
                                     merchant_id=merchant_id)


@router.get("/{member_id}/ledger", response_model=LedgerPage, responses=problems(*AUTHED))
def ledger_history(
    member_id: uuid.UUID, db: Db, caller: Caller,
    limit: Annotated[int, Query(description="Lines per page, 1 … 200 (`invalid_limit` "
                                            "otherwise)",
                                json_schema_extra={"minimum": 1,
                                                   "maximum": views.MAX_LIMIT})
                     ] = views.DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page "
                                                    "(`invalid_cursor` otherwise)")] = None,
    merchant_id: MerchantFilter = None,
    unit: Annotated[Unit | None, Query(description="Only points or only miles")] = None,
) -> LedgerPage:
    """The member's ledger history, newest first, with a human-readable reason per line.
    A merchant or terminal key sees its own merchant's lines only (points, and the miles
    earned or spent there); the operator sees every line."""
    with db.session_scope() as session:
        return views.member_history(
            session, actor=caller, member_id=member_id,
            query=views.HistoryQuery(limit=limit, cursor=cursor, merchant_id=merchant_id,
                                     unit=unit))
