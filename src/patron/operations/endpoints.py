from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from patron.http import AUTHED, Caller, ClientAddress, Db, problems
from patron.kit.validation import Instant
from patron.operations import service
from patron.operations.schemas import (
    EventBatch,
    EventBatchResult,
    EventPage,
    TapIn,
    TapResult,
    VisitPage,
)
from patron.security.attempts import identification_attempt

router = APIRouter(prefix="/v1", tags=["operations"])


@router.post("/pos/events", status_code=202, response_model=EventBatchResult,
             responses=problems(*AUTHED))
def record_events(data: EventBatch, db: Db, caller: Caller) -> EventBatchResult:
    """Register operation events (terminal key): a batch of 1 to 1,000, stored all or
    none. Events whose `seq` this terminal already sent are skipped and counted as
    duplicates, so a batch can be resent after a timeout. A time more than 5 minutes in the
    future (`occurred_at_in_future`) or more than 30 days ago (`occurred_at_too_old`)
    refuses the whole batch; `field` names the event, e.g. `events[3].occurred_at`."""
    with db.session_scope() as session:
        return service.record_events(session, actor=caller, batch=data)


@router.get("/stores/{store_id}/events", response_model=EventPage,
            responses=problems(*AUTHED))
def list_events(
    store_id: uuid.UUID, db: Db, caller: Caller,
    since: Annotated[Instant | None, Query(description="occurred_at ≥ since")] = None,
    until: Annotated[Instant | None, Query(description="occurred_at < until")] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**63 - 1,
                                        description="`next_cursor` of the previous page")
                      ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """A store's register events in arrival order (merchant, operator or sales-rep key)."""
    with db.session_scope() as session:
        events, next_cursor = service.list_events(
            session, actor=caller, store_id=store_id,
            query=service.EventQuery(since=since, until=until, cursor=cursor, limit=limit))
        return EventPage(events=events, next_cursor=next_cursor)


@router.post("/pos/taps", status_code=201, response_model=TapResult,
             responses=problems(*AUTHED, 409, 410, 423, 429))
def record_tap(data: TapIn, db: Db, caller: Caller, address: ClientAddress) -> TapResult:
    """A card tapped at a reader (the reader's key; other terminals get 403
    `not_a_reader`). Records the visit and grants the reader's `points_per_tap`, at most
    once per member per reader per `PATRON_TAP_INTERVAL_MINUTES`; a tap within the
    interval is recorded with 0 points and `reason: "interval"`. Card refusals are those
    of `POST /v1/identify` (`card_not_found`, `card_blocked`, `member_withdrawn`, PIN).

    The answer itemises the points: the reader's (`points_granted`), each visit campaign
    that fired with its bonus points and message (`campaigns`, `campaign_points`), their
    sum (`points_total`), and the balance after all of them; and the `receipt` content the
    reader shows (facility information, a questionnaire link, a consent prompt: the
    reader's own field, else its store's)."""
    with (identification_attempt(db, caller=caller, address=address) as attempt,
          attempt.session() as session):
        return service.record_tap(session, actor=caller, data=data)


@router.get("/stores/{store_id}/visits", response_model=VisitPage,
            responses=problems(*AUTHED))
def list_visits(
    store_id: uuid.UUID, db: Db, caller: Caller,
    since: Annotated[Instant | None, Query(description="occurred_at ≥ since")] = None,
    until: Annotated[Instant | None, Query(description="occurred_at < until")] = None,
    cursor: Annotated[str | None, Query(max_length=200,
                                        description="`next_cursor` of the previous page")
                      ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> VisitPage:
    """A facility's visits (taps at its readers), newest first, each with the visiting
    member's id and member number only (merchant or operator key; its terminals, sales
    reps and other merchants get 404). An unusable `cursor` is 422 `invalid_cursor`."""
    with db.session_scope() as session:
        return service.list_visits(
            session, actor=caller, store_id=store_id,
            query=service.VisitQuery(since=since, until=until, cursor=cursor, limit=limit))
