"""Reading the outbox and the deliveries, and sending a delivery again.

A merchant's key sees its own merchant's events and their deliveries (the rows carry the
event's merchant); the operator's sees every merchant's. Terminal, reader and sales-rep
keys see none (403): what a till did is in the till's own answers (docs/notify.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, or_, select, update
from sqlalchemy.orm import Session

from patron.errors import Forbidden, PatronError
from patron.kit.clock import utcnow
from patron.ledger.views import Position, decode_cursor, encode_cursor
from patron.members import consent
from patron.members.models import Member, Purpose
from patron.members.service import parse_phone, phone_lookup
from patron.notify import templates
from patron.notify.errors import DeliveryNotFound, NothingToReplay
from patron.notify.messages import read_unsubscribe_token
from patron.notify.models import Delivery, DeliveryAttempt, OutboxEvent, WebhookEndpoint
from patron.notify.rules import DeliveryChannel, DeliveryStatus
from patron.notify.schemas import (
    AttemptRead,
    DeliveryPage,
    DeliveryRead,
    EventPage,
    EventRead,
)
from patron.notify.webhooks import PRIVATE_EVENTS, owned_endpoint
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal

# Fields of an event's data that are never shown (a one-time code, sealed for the member).
_SEALED_FIELDS = frozenset({"code_encrypted"})


def _require_reader(actor: Principal) -> None:
    if actor.role not in (Role.operator, Role.merchant):
        raise Forbidden("events and deliveries are read with the operator's or the "
                        "merchant's key")


@dataclass(frozen=True)
class DeliveryQuery:
    member_id: uuid.UUID | None = None
    endpoint_id: uuid.UUID | None = None
    event_id: uuid.UUID | None = None
    status: DeliveryStatus | None = None
    channel: DeliveryChannel | None = None
    merchant_id: uuid.UUID | None = None
    cursor: str | None = None
    limit: int = 100


def _scoped(actor: Principal, statement: Select[Any], merchant_column: Any,
            merchant_id: uuid.UUID | None) -> Select[Any]:
    if actor.role != Role.operator:
        return statement.where(merchant_column == actor.merchant_id)
    if merchant_id is not None:
        return statement.where(merchant_column == merchant_id)
    return statement


def _page_after(statement: Select[Any], created: Any, id_: Any,
                cursor: str | None) -> Select[Any]:
    """Newest first, after the cursor's position."""
    if cursor is not None:
        after = decode_cursor(cursor)
        statement = statement.where(or_(created < after.occurred_at,
                                        (created == after.occurred_at)
                                        & (id_ < after.entry_id)))
    return statement.order_by(created.desc(), id_.desc())


def list_deliveries(session: Session, *, actor: Principal,
                    query: DeliveryQuery) -> DeliveryPage:
    """Deliveries, newest first, each with every attempt."""
    if query.endpoint_id is None:
        _require_reader(actor)
    statement = select(Delivery)
    if query.endpoint_id is not None:
        # 404 for an endpoint the key may not see, as on the endpoint's own routes.
        owned_endpoint(session, actor=actor, endpoint_id=query.endpoint_id)
        statement = statement.where(Delivery.endpoint_id == query.endpoint_id)
    statement = _scoped(actor, statement, Delivery.merchant_id, query.merchant_id)
    for column, value in ((Delivery.member_id, query.member_id),
                          (Delivery.event_id, query.event_id),
                          (Delivery.status, query.status), (Delivery.channel, query.channel)):
        if value is not None:
            statement = statement.where(column == value)
    statement = _page_after(statement, Delivery.created_at, Delivery.id, query.cursor)
    rows = list(session.scalars(statement.limit(query.limit + 1)))
    page = rows[:query.limit]
    return DeliveryPage(deliveries=_with_attempts(session, page), next_cursor=(
        encode_cursor(Position(occurred_at=page[-1].created_at, entry_id=page[-1].id))
        if len(rows) > query.limit else None))


def _with_attempts(session: Session, deliveries: Sequence[Delivery]) -> list[DeliveryRead]:
    attempts: dict[uuid.UUID, list[AttemptRead]] = {}
    if deliveries:
        for attempt in session.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id.in_([d.id for d in deliveries]))
                .order_by(DeliveryAttempt.delivery_id, DeliveryAttempt.number)):
            attempts.setdefault(attempt.delivery_id, []).append(
                AttemptRead.model_validate(attempt))
    return [DeliveryRead(
        id=delivery.id, merchant_id=delivery.merchant_id, event_id=delivery.event_id,
        event_type=delivery.event_type,
        channel=delivery.channel, endpoint_id=delivery.endpoint_id,
        member_id=delivery.member_id, purpose=delivery.purpose, status=delivery.status,
        reason=delivery.reason, attempts=attempts.get(delivery.id, []),
        next_attempt_at=delivery.next_attempt_at, created_at=delivery.created_at,
        delivered_at=delivery.delivered_at) for delivery in deliveries]


def replay(session: Session, *, actor: Principal, delivery_id: uuid.UUID,
           webhook_only: bool = False) -> DeliveryRead:
    """Send a delivery again, at once, with the same id: a new round of the retry
    schedule. A pending one is already on its way (409); a suppressed one was never
    allowed to go (409: the reason still holds, or it would not be suppressed)."""
    delivery = session.scalar(select(Delivery).where(Delivery.id == delivery_id)
                              .with_for_update())
    if (delivery is None or not actor.holds(delivery.merchant_id)
            or (webhook_only and delivery.channel != DeliveryChannel.webhook)):
        raise DeliveryNotFound("no such delivery")
    _require_reader(actor)
    if delivery.status not in (DeliveryStatus.failed, DeliveryStatus.delivered):
        raise NothingToReplay(f"the delivery is {delivery.status}; only a failed or "
                              "delivered one is sent again")
    if delivery.endpoint_id is not None:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if endpoint is not None and endpoint.disabled_at is not None:
            raise NothingToReplay("its webhook endpoint is disabled: enable it first "
                                  "(PATCH /v1/webhook-endpoints/{id} {\"enabled\": true})")
    now = utcnow()
    session.execute(update(Delivery).where(Delivery.merchant_id == delivery.merchant_id,
                                           Delivery.id == delivery.id)
                    .values(status=DeliveryStatus.pending.value, round_attempts=0,
                            next_attempt_at=now, reason="replayed", updated_at=now))
    session.refresh(delivery)
    return _with_attempts(session, [delivery])[0]


@dataclass(frozen=True)
class EventQuery:
    member_id: uuid.UUID | None = None
    type: str | None = None
    merchant_id: uuid.UUID | None = None
    cursor: str | None = None
    limit: int = 100


def _data(event: OutboxEvent) -> dict[str, Any]:
    if event.type in PRIVATE_EVENTS:
        return {key: value for key, value in event.payload.items()
                if key not in _SEALED_FIELDS}
    return dict(event.payload)


def list_events(session: Session, *, actor: Principal, query: EventQuery) -> EventPage:
    """The outbox, newest first: every event with when its deliveries were made."""
    _require_reader(actor)
    statement = _scoped(actor, select(OutboxEvent), OutboxEvent.merchant_id,
                        query.merchant_id)
    if query.member_id is not None:
        statement = statement.where(OutboxEvent.member_id == query.member_id)
    if query.type is not None:
        statement = statement.where(OutboxEvent.type == query.type)
    statement = _page_after(statement, OutboxEvent.created_at, OutboxEvent.id, query.cursor)
    rows = list(session.scalars(statement.limit(query.limit + 1)))
    page = rows[:query.limit]
    return EventPage(events=[EventRead(
        id=event.id, type=event.type, merchant_id=event.merchant_id,
        member_id=event.member_id, occurred_at=event.occurred_at,
        created_at=event.created_at, dispatched_at=event.delivered_at, data=_data(event))
        for event in page], next_cursor=(
        encode_cursor(Position(occurred_at=page[-1].created_at, entry_id=page[-1].id))
        if len(rows) > query.limit else None))


# --- one-click unsubscribe -------------------------------------------------------------

@dataclass(frozen=True)
class UnsubscribePage:
    language: str
    merchant: str
    done: bool


def unsubscribe(session: Session, *, token: str, confirm: bool) -> UnsubscribePage | None:
    """What the link in a marketing message does: with ``confirm`` (the one-click POST of
    RFC 8058, or the page's button), withdraw that merchant's marketing consent on that
    channel for the member — recorded in the consent ledger with the source
    ``unsubscribe_link`` and the message as evidence; without it, only say what it would
    do (a GET: mail scanners open links, and must not unsubscribe anyone). None for a
    token that is not Patron's."""
    link = read_unsubscribe_token(token)
    if link is None:
        return None
    member = session.get(Member, link.member_id)
    merchant = session.get(Merchant, link.merchant_id)
    if member is None or merchant is None:
        return None
    language = templates.language_for(member.language, merchant.country)
    if confirm:
        verdict = consent.allows(session, member_id=member.id, merchant_id=merchant.id,
                                 channel=link.channel, purpose=Purpose.marketing)
        # Already stopped: nothing to record (the link may be clicked twice).
        if verdict.allowed:
            consent.record(session, member_id=member.id, merchant_id=merchant.id,
                           channel=link.channel, purpose=Purpose.marketing, granted=False,
                           source="unsubscribe_link",
                           evidence=f"delivery {link.delivery_id}")
            session.flush()
    return UnsubscribePage(language=language, merchant=merchant.name, done=confirm)


def unsubscribe_html(page: UnsubscribePage, action: str) -> str:
    values = {"merchant": page.merchant}
    return templates.page(
        "unsubscribe.html", language=page.language, action=action,
        title=templates.phrase(page.language, "unsubscribe_page_title", values),
        text=templates.phrase(page.language, "unsubscribe_page_text", values),
        button=templates.phrase(page.language, "unsubscribe_button", values),
        done=templates.phrase(page.language, "unsubscribed", values) if page.done else None)


# --- STOP replies ----------------------------------------------------------------------

# What a member texts back to stop marketing SMS (English, Japanese, Chinese, Korean); the
# reply's whole text, case and spaces aside.
STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit",
                        "停止", "配信停止", "退订", "td", "수신거부", "거부"})


def is_stop(text: str) -> bool:
    return "".join(text.split()).lower() in STOP_WORDS


def stop_reply(session: Session, *, sender: str, text: str, region: str) -> int:
    """A reply to one of Patron's SMS: STOP (or its equivalents) withdraws the sender's
    SMS marketing consent in every scope that has it — the reply does not say which
    merchant's message it answers — recorded with the source ``stop_reply``. The number
    of withdrawals (0: not a stop word, no such member, nothing granted)."""
    if not is_stop(text):
        return 0
    try:
        number = parse_phone(sender, region)
    except PatronError:
        return 0
    member_id = session.scalar(select(Member.id).where(
        Member.phone_hash == phone_lookup(number)))
    if member_id is None:
        return 0
    granted = [state for state in consent.current(session, member_id=member_id)
               if state.channel == DeliveryChannel.sms and state.granted
               and state.purpose == Purpose.marketing]
    for state in granted:
        consent.record(session, member_id=member_id, merchant_id=state.merchant_id,
                       channel=DeliveryChannel.sms, purpose=Purpose.marketing,
                       granted=False, source="stop_reply",
                       evidence=f"reply: {' '.join(text.split())[:40]}")
    session.flush()
    return len(granted)
