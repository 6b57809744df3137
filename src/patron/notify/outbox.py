"""Emit business events into the outbox, inside the caller's transaction.

``emit`` only adds a row: if the business transaction rolls back, the event never existed;
if it commits, the event is there for delivery. No network call happens here, ever.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

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
