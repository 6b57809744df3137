"""How deliveries are going (read only): the outbox's backlog, and per channel the
deliveries of the last day by status, with what still waits and for how long.

For the operator's console (docs/web.md, "Delivery health"): a worker that stopped shows
as events not dispatched and pending deliveries past their time, growing older. The
operator sees every merchant's; a merchant key its own merchant's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import Select, case, func, select
from sqlalchemy.orm import Session

from patron.notify.models import Delivery, OutboxEvent
from patron.notify.rules import DeliveryChannel, DeliveryStatus
from patron.tenancy.models import Role
from patron.tenancy.service import Principal

WINDOW = timedelta(days=1)
Columns = TypeVarTuple("Columns")


@dataclass(frozen=True)
class ChannelHealth:
    channel: str
    # Deliveries made in the window, by their status now.
    delivered: int
    pending: int
    failed: int
    suppressed: int
    # Pending now, whenever made: all of them, those already due (the worker is behind
    # when these stay), and the oldest one's creation.
    waiting: int
    due: int
    oldest_waiting_at: datetime | None


@dataclass(frozen=True)
class OutboxHealth:
    written: int  # events written in the window
    undispatched: int  # events whose deliveries are not made yet, whenever written
    oldest_undispatched_at: datetime | None


@dataclass(frozen=True)
class DeliveryHealth:
    since: datetime
    now: datetime
    outbox: OutboxHealth
    channels: list[ChannelHealth]


def _scoped(statement: Select[*Columns], column: Any, merchant_id: uuid.UUID | None
            ) -> Select[*Columns]:
    return statement if merchant_id is None else statement.where(column == merchant_id)


def delivery_health(session: Session, *, actor: Principal, now: datetime,
                    window: timedelta = WINDOW) -> DeliveryHealth:
    actor.require(Role.operator, Role.merchant)
    merchant_id = None if actor.role == Role.operator else actor.merchant_id
    since = now - window
    counts: dict[tuple[str, str], int] = {
        (channel, status): count for channel, status, count in session.execute(_scoped(
            select(Delivery.channel, Delivery.status, func.count())
            .where(Delivery.created_at >= since), Delivery.merchant_id, merchant_id)
            .group_by(Delivery.channel, Delivery.status))}
    waiting = {channel: (int(count), int(due or 0), oldest) for channel, count, due, oldest
               in session.execute(_scoped(
                   select(Delivery.channel, func.count(),
                          func.sum(case((Delivery.next_attempt_at <= now, 1), else_=0)),
                          func.min(Delivery.created_at))
                   .where(Delivery.status == DeliveryStatus.pending.value),
                   Delivery.merchant_id, merchant_id).group_by(Delivery.channel))}
    channels = [str(channel) for channel in DeliveryChannel]
    channels += sorted({channel for channel, _status in counts} - set(channels))
    written = session.scalar(_scoped(
        select(func.count()).select_from(OutboxEvent).where(OutboxEvent.created_at >= since),
        OutboxEvent.merchant_id, merchant_id)) or 0
    undispatched, oldest = session.execute(_scoped(
        select(func.count(), func.min(OutboxEvent.created_at))
        .where(OutboxEvent.delivered_at.is_(None)),
        OutboxEvent.merchant_id, merchant_id)).one()
    return DeliveryHealth(
        since=since, now=now,
        outbox=OutboxHealth(written=int(written), undispatched=int(undispatched or 0),
                            oldest_undispatched_at=oldest),
        channels=[ChannelHealth(
            channel=channel,
            delivered=counts.get((channel, DeliveryStatus.delivered.value), 0),
            pending=counts.get((channel, DeliveryStatus.pending.value), 0),
            failed=counts.get((channel, DeliveryStatus.failed.value), 0),
            suppressed=counts.get((channel, DeliveryStatus.suppressed.value), 0),
            waiting=waiting.get(channel, (0, 0, None))[0],
            due=waiting.get(channel, (0, 0, None))[1],
            oldest_waiting_at=waiting.get(channel, (0, 0, None))[2])
            for channel in channels])
