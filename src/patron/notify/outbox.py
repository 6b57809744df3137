"""Emit business events into the outbox, inside the caller's transaction.

``emit`` only adds a row: if the business transaction rolls back, the event never existed;
if it commits, the event is there for delivery. No network call happens here, ever.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from patron.db import insert_for
from patron.kit.clock import utcnow
from patron.notify.models import OutboxEvent


class EventType(StrEnum):
    member_enrolled = "member.enrolled"
    transaction_committed = "transaction.committed"
    points_earned = "points.earned"
    points_burned = "points.burned"
    points_returned = "points.returned"
    transaction_returned = "transaction.returned"
    tier_changed = "tier.changed"
    points_expired = "points.expired"
    points_expiring = "points.expiring"
    tap_recorded = "tap.recorded"
    benefit_issued = "benefit.issued"
    benefit_revoked = "benefit.revoked"
    # A one-time code for a till to prove the member is present (payload: the code,
    # encrypted; docs/tenancy.md).
    verification_code = "member.verification_code"
    campaign_outcome = "campaign.outcome"
    referral_rewarded = "referral.rewarded"
    referral_clawed_back = "referral.clawed_back"
    # One member's copy of a merchant's targeted message (notify.targeted).
    targeted_message = "message.targeted"


def emit(session: Session, *, type: EventType | str, merchant_id: uuid.UUID,
         member_id: uuid.UUID | None, payload: dict[str, Any],
         occurred_at: datetime | None = None) -> OutboxEvent:
    """Add one event to the caller's transaction (flushed, never committed here).

    ``payload`` must be JSON-ready (strings, numbers, lists, dicts): ids and times as
    strings, money in minor units with its currency.
    """
    now = utcnow()
    event = OutboxEvent(id=uuid.uuid4(), type=str(type), merchant_id=merchant_id,
                        member_id=member_id, payload=payload,
                        occurred_at=occurred_at or now, created_at=now)
    session.add(event)
    session.flush()
    return event


# Fixed forever: a deterministic event id must come out the same in every release.
EVENT_ID_NAMESPACE = uuid.UUID("0b8f5d2e-6c1a-5e47-9f3b-7a2d4c8e1f60")


def event_id(type: EventType | str, *parts: object) -> uuid.UUID:
    """A deterministic event id (UUID 5) for an event that must exist at most once, e.g.
    one ``points.expiring`` per member, merchant and expiry instant."""
    return uuid.uuid5(EVENT_ID_NAMESPACE, ":".join([str(type), *(str(p) for p in parts)]))


@dataclass(frozen=True)
class UniqueEvent:
    id: uuid.UUID
    type: EventType | str
    merchant_id: uuid.UUID
    member_id: uuid.UUID | None
    payload: dict[str, Any]
    occurred_at: datetime


def emit_once(session: Session, events: Sequence[UniqueEvent]) -> int:
    """Add events with deterministic ids, skipping every id that already exists; returns
    how many were added.

    One ``INSERT … ON CONFLICT (id) DO NOTHING``: the primary key decides, so concurrent
    callers adding the same event end with one row (on PostgreSQL the later insert waits
    for the earlier transaction, then skips)."""
    if not events:
        return 0
    now = utcnow()
    table = OutboxEvent.__table__
    assert isinstance(table, Table)
    statement = (insert_for(session, table).on_conflict_do_nothing(index_elements=["id"])
                 .returning(table.c.id))
    rows = [{"id": event.id, "type": str(event.type), "merchant_id": event.merchant_id,
             "member_id": event.member_id, "payload": event.payload,
             "occurred_at": event.occurred_at, "created_at": now, "delivered_at": None}
            for event in events]
    return len(session.execute(statement, rows).all())
