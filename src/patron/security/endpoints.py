from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from patron.http import AUTHED, Caller, Db, problems
from patron.kit.validation import Instant
from patron.security import service
from patron.security.models import SecurityEventKind
from patron.security.schemas import SecurityEventPage

router = APIRouter(prefix="/v1", tags=["security"])


@router.get("/security-events", response_model=SecurityEventPage,
            responses=problems(*AUTHED))
def list_security_events(
    db: Db, caller: Caller,
    kind: Annotated[SecurityEventKind | None, Query(description="Only this kind")] = None,
    terminal_id: Annotated[uuid.UUID | None, Query(description="Only this terminal's")
                           ] = None,
    since: Annotated[Instant | None, Query(description="occurred_at ≥ since")] = None,
    merchant_id: Annotated[uuid.UUID | None, Query(
        description="The operator: only this merchant's (a merchant key may name only its "
                    "own)")] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**63 - 1,
                                        description="`next_cursor` of the previous page")
                      ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> SecurityEventPage:
    """Refused voucher attempts, newest first (merchant key: its own; operator: every
    merchant's): unknown, malformed or unusable codes at validation, hold, redemption,
    look-up and in purchases, with the terminal, client address and member, the refusal's
    code and what is kept of the code tried (its first symbols and a keyed digest, never
    the code). They are what the abuse controls count: a terminal, address or member with
    `PATRON_VOUCHER_FAILURE_LIMIT` of them within `PATRON_VOUCHER_FAILURE_WINDOW_SECONDS`
    is refused with 429 `too_many_failures` until they age out."""
    with db.session_scope() as session:
        events, next_cursor = service.list_events(
            session, actor=caller, query=service.EventQuery(
                merchant_id=merchant_id, kind=kind.value if kind else None,
                terminal_id=terminal_id, since=since, cursor=cursor, limit=limit))
        return SecurityEventPage(events=events, next_cursor=next_cursor)
