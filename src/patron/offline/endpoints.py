from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from patron.http import AUTHED, Caller, Db, PageQuery, problems
from patron.kit.pagination import Page, by_creation
from patron.offline import service
from patron.offline.models import ExceptionStatus
from patron.offline.schemas import (
    AllowanceRead,
    AllowanceWrite,
    BatchRead,
    BatchWrite,
    ExceptionRead,
    PackageRead,
    ResolveWrite,
)

router = APIRouter(tags=["offline"])


@router.get("/v1/pos/offline/package", response_model=PackageRead,
            responses=problems(*AUTHED))
def get_package(db: Db, caller: Caller) -> PackageRead:
    """What a register needs to price while the server cannot be reached (terminal key):
    the program's earn and burn rules, currency, the store's time zone, the coalition
    miles rate, the public key that signs allowances, and when to fetch it again."""
    with db.session_scope() as session:
        return service.package(session, actor=caller)


@router.post("/v1/pos/offline/allowances", status_code=201, response_model=AllowanceRead,
             responses=problems(*AUTHED, 410, 423))
def issue_allowance(data: AllowanceWrite, db: Db, caller: Caller) -> AllowanceRead:
    """A signed offline allowance for one member at this terminal (terminal key), valid 24
    hours: the points the register may burn for the member offline (the balance less what
    the member's other unexpired allowances reserve; never below 0) and the member's
    personal single-use codes with their terms. A newer allowance for the same terminal and
    member replaces the older one. Identification codes as `POST /v1/identify`."""
    with db.session_scope() as session:
        return service.issue_allowance(session, actor=caller, data=data)


@router.post("/v1/pos/offline/batches", response_model=BatchRead,
             responses=problems(*AUTHED))
def replay_batch(data: BatchWrite, db: Db, caller: Caller) -> Response:
    """Replay a register's offline queue (terminal key), 1 to 500 entries in `seq` order,
    in one database transaction with a savepoint per entry. Each entry is committed with
    authority (the POS commit, idempotent by receipt number) and answered with `status`:
    `committed`, `replayed` (already done: the same answer again),
    `committed_with_exception` (a voucher refused at replay or a burn beyond the allowance
    or the balance was dropped; see `exceptions`), or `refused` (never applied; `problem`
    says why: `allowance_signature_invalid`, `allowance_unknown`,
    `allowance_wrong_terminal`, `allowance_member_mismatch`, `allowance_expired`,
    `allowance_not_yet_valid`, `offline_burn_without_allowance`,
    `offline_voucher_without_allowance`, `voucher_not_in_allowance`, `offline_miles_burn`,
    `receipt_conflict`, or the commit's own code). `differences` compares the server's
    figures with the register's provisional ones. `applied` counts the entries committed
    as a set and those applied one by one through the online commit, by reason
    (docs/offline.md).

    Whole-batch refusals (422): `batch_too_large`, `batch_out_of_order`,
    `duplicate_receipt_in_batch`, `validation_failed`."""
    with db.session_scope() as session:
        # The answer comes as JSON text, each entry's serialised once (validating it again
        # against the response model would cost as much as making it).
        answer = service.replay_batch(session, actor=caller, data=data)
    return Response(content=answer, media_type="application/json")


@router.get("/v1/offline/exceptions", response_model=Page[ExceptionRead],
            responses=problems(*AUTHED))
def list_exceptions(
    db: Db, caller: Caller, paging: PageQuery,
    status: Annotated[ExceptionStatus | None, Query(description="open or resolved")] = None,
    merchant_id: Annotated[uuid.UUID | None, Query(
        description="Operator only: one merchant's (a merchant key sees its own)")] = None,
) -> Page[ExceptionRead]:
    """The offline exceptions list, newest first (merchant or operator key): what replay
    could not honour, with the facts needed to resolve it."""
    with db.session_scope() as session:
        return paging.page(service.list_exceptions(session, actor=caller, status=status,
                                                   merchant_id=merchant_id, limit=None),
                           key=by_creation, newest_first=True)


@router.get("/v1/offline/exceptions/{exception_id}", response_model=ExceptionRead,
            responses=problems(*AUTHED))
def get_exception(exception_id: uuid.UUID, db: Db, caller: Caller) -> ExceptionRead:
    """One offline exception (merchant or operator key)."""
    with db.session_scope() as session:
        return service.get_exception(session, actor=caller, exception_id=exception_id)


@router.post("/v1/offline/exceptions/{exception_id}/resolve", response_model=ExceptionRead,
             responses=problems(*AUTHED, 409))
def resolve_exception(exception_id: uuid.UUID, data: ResolveWrite, db: Db,
                      caller: Caller) -> ExceptionRead:
    """Mark an exception resolved with a note of what was done (merchant or operator key).
    `invalid_note` (422) for an empty or over-long note; `exception_already_resolved`
    (409) the second time."""
    with db.session_scope() as session:
        return service.resolve_exception(session, actor=caller, exception_id=exception_id,
                                         note=data.note)
