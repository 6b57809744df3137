from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from patron.coalition import service
from patron.coalition.schemas import RatesRead, RatesWrite, SettlementRead
from patron.http import AUTHED, Caller, Db, problems

router = APIRouter(prefix="/v1/coalition", tags=["coalition"])


@router.get("/rates", response_model=RatesRead, responses=problems(*AUTHED))
def get_rates(db: Db, caller: Caller) -> RatesRead:
    """The operator's miles rates per currency (any key): spend per mile earned, and what
    a mile is worth when redeemed and settled."""
    with db.session_scope() as session:
        return service.get_rates(session, actor=caller)


@router.put("/rates", response_model=RatesRead, responses=problems(*AUTHED))
def put_rates(data: RatesWrite, db: Db, caller: Caller) -> RatesRead:
    """Replace all rates (operator key). 422 codes: `unknown_currency`, `duplicate_rate`,
    `invalid_rate` (each with `field`)."""
    with db.session_scope() as session:
        return service.put_rates(session, actor=caller, data=data)


@router.get("/settlements", response_model=SettlementRead, responses=problems(*AUTHED))
def get_settlement(db: Db, caller: Caller,
                   period: Annotated[str, Query(description="A UTC month, YYYY-MM",
                                                examples=["2026-11"], max_length=16)]
                   ) -> SettlementRead:
    """Miles issued, redeemed and the net per merchant for one month, in miles and in each
    merchant's currency at the operator's rates. The operator sees every merchant and the
    coalition's line (all nets in miles sum to zero); a merchant key sees its own line.
    422 `invalid_period`."""
    with db.session_scope() as session:
        return service.settlement(session, actor=caller, period=period)
