from __future__ import annotations

import functools
import tempfile
import uuid
from collections.abc import Callable
from typing import IO, Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from patron.db import Database
from patron.errors import UnsupportedMediaType
from patron.http import AUTHED, Caller, Db, problems
from patron.imports import MEMBERS_PATH, PURCHASES_PATH, runner
from patron.imports.schemas import ImportSummary, PointsPolicy
from patron.members.errors import MerchantRequired
from patron.tenancy.models import Role
from patron.tenancy.service import Principal

router = APIRouter(tags=["imports"])

# Spooled in memory up to this size, then to a temporary file.
_IN_MEMORY = 1024 * 1024

_CSV_BODY = {"requestBody": {"required": True, "content": {"text/csv": {
    "schema": {"type": "string", "description": "UTF-8 CSV with a header row"}}}}}

MerchantQuery = Annotated[uuid.UUID | None, Query(
    description="The merchant to import into: required with an operator key; a merchant "
                "key imports into its own merchant")]


async def _spooled(request: Request) -> IO[bytes]:
    """The request's CSV body, streamed to a spooled temporary file."""
    content_type = request.headers.get("content-type", "")
    media_type, _, parameters = content_type.partition(";")
    charset = parameters.strip().lower().removeprefix("charset=").strip('"')
    if media_type.strip().lower() != "text/csv" or charset not in ("", "utf-8", "utf8"):
        raise UnsupportedMediaType("send the file as text/csv (UTF-8)")
    spool = tempfile.SpooledTemporaryFile(max_size=_IN_MEMORY)  # noqa: SIM115 - returned
    async for chunk in request.stream():
        spool.write(chunk)
    spool.seek(0)
    return spool


async def _import(request: Request, db: Database, caller: Principal,
                  named: uuid.UUID | None, run: Callable[..., ImportSummary]) -> ImportSummary:
    """Who may (before the body is read), then the body spooled and imported."""
    merchant_id = named or caller.merchant_id
    if merchant_id is None:
        caller.require(Role.operator)  # a key of no merchant: the operator's alone
        raise MerchantRequired(field="merchant_id")
    await run_in_threadpool(runner.check_importer, db.session_scope, caller, merchant_id)
    with await _spooled(request) as file:
        return await run_in_threadpool(run, db.session_scope, actor=caller,
                                       merchant_id=merchant_id, file=file)


@router.post(MEMBERS_PATH, response_model=ImportSummary, openapi_extra=_CSV_BODY,
             responses=problems(*AUTHED, 413, 415))
async def import_members(request: Request, db: Db, caller: Caller,
                         merchant_id: MerchantQuery = None) -> ImportSummary:
    """Enrol the members of a CSV file from the merchant's previous system (operator or
    the merchant's own merchant key; docs/imports.md): columns `external_ref` (required),
    `phone`, `email`, `card_uid`, `birth_year`, `gender`, `postal_code`, `language`,
    `enrolled_at`, `points_balance`. Sent again, it adds nothing (`already_there`). Each
    refused row is listed with its line and why; the rest are imported."""
    return await _import(request, db, caller, merchant_id, runner.import_members)


@router.post(PURCHASES_PATH, response_model=ImportSummary, openapi_extra=_CSV_BODY,
             responses=problems(*AUTHED, 413, 415))
async def import_purchases(request: Request, db: Db, caller: Caller,
                           merchant_id: MerchantQuery = None,
                           points: Annotated[PointsPolicy, Query(
                               description="`none`: the purchases earn nothing; "
                                           "`as-earned`: the points the program gives, "
                                           "dated when earned")] = PointsPolicy.none,
                           ) -> ImportSummary:
    """Import the purchase history of a CSV file for the merchant's members (operator or
    the merchant's own merchant key; docs/imports.md): columns `external_ref`,
    `receipt_no`, `occurred_at` (ISO 8601 with offset), `amount` (major units),
    `currency`, then any of `store_code`, `sku`, `category`, `quantity`; the rows of one
    receipt are its lines, one after another. Purchases may be of any date in the past;
    they never set off campaigns, referrals, benefits or messages. Sent again, it adds
    nothing (`already_there`)."""
    return await _import(request, db, caller, merchant_id,
                         functools.partial(runner.import_purchases, points=points))
