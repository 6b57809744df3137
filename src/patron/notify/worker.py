"""The delivery worker: outbox events become deliveries, deliveries are sent.

Two steps, each its own short transaction, and no network call inside either:

1. **Dispatch.** Claim undelivered outbox events (``FOR UPDATE SKIP LOCKED`` on
   PostgreSQL; SQLite has one writer, and one runner holds the lease), make one delivery
   per destination — each subscribed webhook endpoint, each of the member's channels a
   message goes to — with an id derived from the event and the destination, and mark the
   events dispatched. Making them twice makes them once (``ON CONFLICT DO NOTHING``).
2. **Send.** Claim due deliveries the same way and lease them (``next_attempt_at`` moves
   past the longest attempt, ``attempts`` goes up) in one transaction; send them
   concurrently outside any transaction; record each outcome in another. A process
   killed between the two leaves the lease to run out: the delivery is sent again with
   the same id (at least once; receivers de-duplicate on it). The record is conditional
   on the attempt count the claim set, so a late sender never overwrites a newer attempt.

``patron.jobs.deliveries`` runs ``Deliverer`` rounds in a loop inside ``patron serve``
(or ``patron worker``), in the process holding the deliveries' lease.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import httpx
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from patron.config import Settings, get_settings
from patron.db import Database, UTCDateTime, insert_for, table_of
from patron.kit.clock import utcnow
from patron.notify import rules, signing, webhooks
from patron.notify.errors import TargetNotAllowed
from patron.notify.models import (
    Delivery,
    DeliveryAttempt,
    OutboxEvent,
    PushSubscription,
    WebhookEndpoint,
)
from patron.notify.rules import AttemptOutcome, DeliveryChannel, DeliveryStatus
from patron.notify.stream import NatsPublisher, Publisher, relay

log = logging.getLogger("patron.notify")

# Fixed forever: a delivery's id must come out the same in every release.
DELIVERY_ID_NAMESPACE = uuid.UUID("5c3e9a71-2f4b-4d8e-a1c6-0e7b9d2f4a85")


def delivery_id(event_id: uuid.UUID, channel: str, destination: uuid.UUID | None) -> uuid.UUID:
    return uuid.uuid5(DELIVERY_ID_NAMESPACE, f"{event_id}:{channel}:{destination or ''}")


@dataclass(frozen=True)
class Attempt:
    """What one attempt came to."""

    outcome: AttemptOutcome
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    retry_after: timedelta | None = None
    # Web push: the subscriptions a push service took it for, and those it said are gone.
    pushed: tuple[uuid.UUID, ...] = ()
    gone_subscriptions: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class Due:
    """A claimed delivery, with its attempt count after the claim."""

    merchant_id: uuid.UUID
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    channel: str
    endpoint_id: uuid.UUID | None
    member_id: uuid.UUID | None
    purpose: str | None
    attempts: int
    round_attempts: int


@dataclass(frozen=True)
class Skip:
    """A delivery that is not attempted: suppressed (never to be sent, e.g. no consent)
    or failed (the dead letter, e.g. its endpoint is disabled)."""

    status: DeliveryStatus
    reason: str


@dataclass(frozen=True)
class Hold:
    """A delivery that waits (quiet hours) until ``until``; not an attempt."""

    until: datetime
    reason: str


Send = Callable[[], Attempt]


class Channel(Protocol):
    """One way out. ``prepare`` runs inside the read transaction (decrypts, renders,
    checks consent); the callable it returns runs outside any transaction."""

    name: str

    def prepare(self, session: Session, due: Sequence[Due], now: datetime
                ) -> dict[uuid.UUID, Send | Skip | Hold]: ...


class MemberMessages(Protocol):
    """What a member is sent for an event (the messages module): rows of deliveries."""

    def plan(self, session: Session, events: Sequence[OutboxEvent], now: datetime
             ) -> list[dict[str, Any]]: ...


# --- dispatch ---------------------------------------------------------------------------

def _webhook_rows(events: Sequence[OutboxEvent], endpoints: Sequence[WebhookEndpoint],
                  now: datetime) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        for endpoint in endpoints:
            if endpoint.merchant_id is not None and endpoint.merchant_id != event.merchant_id:
                continue
            # An endpoint hears of what happens after it was registered, not before.
            if event.created_at < endpoint.created_at:
                continue
            if not webhooks.subscribed(endpoint.event_types, event.type):
                continue
            rows.append(new_delivery(event, DeliveryChannel.webhook, endpoint.id, now,
                                     endpoint_id=endpoint.id))
    return rows


def new_delivery(event: OutboxEvent, channel: str, destination: uuid.UUID | None,
                 now: datetime, *, endpoint_id: uuid.UUID | None = None,
                 purpose: str | None = None, status: DeliveryStatus = DeliveryStatus.pending,
                 reason: str | None = None, due_at: datetime | None = None
                 ) -> dict[str, Any]:
    """A delivery row of an event (every column, for a multi-row insert)."""
    pending = status == DeliveryStatus.pending
    return {"merchant_id": event.merchant_id,
            "id": delivery_id(event.id, channel, destination),
            "event_id": event.id, "event_type": event.type, "channel": channel,
            "endpoint_id": endpoint_id, "member_id": event.member_id, "purpose": purpose,
            "status": status.value, "reason": reason, "attempts": 0, "round_attempts": 0,
            "next_attempt_at": (due_at or now) if pending else None,
            "created_at": now, "updated_at": now, "delivered_at": None}


def dispatch(database: Database, *, now: datetime | None = None, limit: int = 500,
             messages: MemberMessages | None = None) -> int:
    """Make the deliveries of up to ``limit`` undispatched events, oldest first; how many
    events were dispatched."""
    now = now or utcnow()
    with database.session_scope() as session:
        events = list(session.scalars(
            select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None))
            .order_by(OutboxEvent.created_at, OutboxEvent.id).limit(limit)
            .with_for_update(skip_locked=True)))
        if not events:
            return 0
        endpoints = list(session.scalars(select(WebhookEndpoint)
                                         .where(WebhookEndpoint.disabled_at.is_(None))))
        rows = _webhook_rows(events, endpoints, now)
        if messages is not None:
            rows += messages.plan(session, events, now)
        if rows:
            table = table_of(Delivery)
            session.execute(insert_for(session, table).on_conflict_do_nothing(
                index_elements=["merchant_id", "id"]), rows)
        outbox = table_of(OutboxEvent)
        session.execute(update(outbox).where(outbox.c.id.in_([event.id for event in events]))
                        .values(delivered_at=now))
    return len(events)


# --- send -------------------------------------------------------------------------------

def _these(table: Any, rows: Sequence[Any]) -> tuple[Any, Any]:
    """The deliveries ``rows`` name (the tenant key first, so the primary key serves)."""
    return (table.c.merchant_id.in_({row.merchant_id for row in rows}),
            table.c.id.in_([row.id for row in rows]))


def claim(database: Database, *, now: datetime, limit: int, lease: timedelta) -> list[Due]:
    """Lease up to ``limit`` due deliveries, oldest due first."""
    table = table_of(Delivery)
    with database.session_scope() as session:
        rows = session.execute(
            select(table.c.merchant_id, table.c.id, table.c.event_id, table.c.event_type,
                   table.c.channel, table.c.endpoint_id, table.c.member_id, table.c.purpose,
                   table.c.attempts, table.c.round_attempts)
            .where(table.c.status == DeliveryStatus.pending.value,
                   table.c.next_attempt_at <= now)
            .order_by(table.c.next_attempt_at).limit(limit)
            .with_for_update(skip_locked=True)).all()
        if not rows:
            return []
        session.execute(update(table).where(*_these(table, rows))
                        .values(attempts=table.c.attempts + 1,
                                round_attempts=table.c.round_attempts + 1,
                                next_attempt_at=now + lease, updated_at=now))
    return [Due(merchant_id=row.merchant_id, id=row.id, event_id=row.event_id,
                event_type=row.event_type, channel=row.channel, endpoint_id=row.endpoint_id,
                member_id=row.member_id, purpose=row.purpose, attempts=row.attempts + 1,
                round_attempts=row.round_attempts + 1) for row in rows]


@dataclass
class Recorded:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    held: int = 0


def record(database: Database, due: Sequence[Due],
           results: Mapping[uuid.UUID, Attempt | Skip | Hold], *, now: datetime,
           attempted_at: Mapping[uuid.UUID, datetime]) -> Recorded:
    """Write each claimed delivery's outcome, its attempt row, and what it means for its
    webhook endpoint (a success clears the failure clock; 410 or five days of failures
    disable it)."""
    counts = Recorded()
    deliveries = table_of(Delivery)
    attempts = table_of(DeliveryAttempt)
    with database.session_scope() as session:
        endpoints: dict[uuid.UUID, WebhookEndpoint] = {}
        ids = {item.endpoint_id for item in due if item.endpoint_id is not None}
        if ids:
            endpoints = {endpoint.id: endpoint for endpoint in session.scalars(
                select(WebhookEndpoint).where(WebhookEndpoint.id.in_(ids))
                .order_by(WebhookEndpoint.id).with_for_update())}
        # Only the attempts this claim made: a lease that ran out and was claimed again
        # belongs to the newer attempt.
        current = {row.id: row.attempts for row in session.execute(
            select(deliveries.c.id, deliveries.c.attempts).where(*_these(deliveries, due))
            .with_for_update())}
        changes: list[dict[str, Any]] = []
        attempt_rows: list[dict[str, Any]] = []
        for item in due:
            if current.get(item.id) != item.attempts:
                continue
            result = results[item.id]
            values = _outcome_values(item, result, now)
            # Not attempted (skipped or held): the attempt the claim took is given back.
            given_back = 0 if isinstance(result, Attempt) else 1
            changes.append({"b_merchant_id": item.merchant_id, "b_id": item.id,
                            "b_status": values["status"], "b_reason": values["reason"],
                            "b_next": values["next_attempt_at"],
                            "b_delivered_at": values.get("delivered_at"),
                            "b_given_back": given_back, "b_now": now})
            status = values["status"]
            if isinstance(result, Hold):
                counts.held += 1
            elif status == DeliveryStatus.delivered:
                counts.delivered += 1
            elif status == DeliveryStatus.pending:
                counts.retried += 1
            elif status == DeliveryStatus.suppressed:
                counts.suppressed += 1
            else:
                counts.failed += 1
            if isinstance(result, Attempt):
                attempt_rows.append({
                    "merchant_id": item.merchant_id, "delivery_id": item.id,
                    "number": item.attempts, "attempted_at": attempted_at.get(item.id, now),
                    "duration_ms": result.duration_ms,
                    "outcome": _attempt_outcome(result, status),
                    "status_code": result.status_code,
                    "error": rules.reason_text(result.error) if result.error else None})
                endpoint = endpoints.get(item.endpoint_id) if item.endpoint_id else None
                if endpoint is not None:
                    _endpoint_after(endpoint, result, now)
        _subscriptions_after(session, [result for result in results.values()
                                       if isinstance(result, Attempt)], now)
        if changes:
            session.execute(_RECORD, changes, execution_options={"synchronize_session": False})
        if attempt_rows:
            session.execute(attempts.insert(), attempt_rows)
    return counts


_DELIVERIES = table_of(Delivery)
# One statement for every outcome of a batch (executemany).
_RECORD = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.merchant_id == bindparam("b_merchant_id"),
           _DELIVERIES.c.id == bindparam("b_id"))
    .values(status=bindparam("b_status"), reason=bindparam("b_reason"),
            next_attempt_at=bindparam("b_next"),
            delivered_at=func.coalesce(bindparam("b_delivered_at", type_=UTCDateTime()),
                                       _DELIVERIES.c.delivered_at),
            attempts=_DELIVERIES.c.attempts - bindparam("b_given_back"),
            round_attempts=_DELIVERIES.c.round_attempts - bindparam("b_given_back"),
            updated_at=bindparam("b_now", type_=UTCDateTime())))


def _attempt_outcome(result: Attempt, status: str) -> str:
    """The attempt's outcome as recorded: a retry that was the last is a failure."""
    if result.outcome == AttemptOutcome.retry and status == DeliveryStatus.failed:
        return AttemptOutcome.failed.value
    return result.outcome.value


def _outcome_values(item: Due, result: Attempt | Skip | Hold,
                    now: datetime) -> dict[str, Any]:
    if isinstance(result, Hold):
        return {"status": DeliveryStatus.pending.value, "next_attempt_at": result.until,
                "reason": rules.reason_text(result.reason)}
    if isinstance(result, Skip):
        return {"status": result.status.value, "reason": rules.reason_text(result.reason),
                "next_attempt_at": None}
    if result.outcome == AttemptOutcome.delivered:
        return {"status": DeliveryStatus.delivered.value, "reason": None,
                "next_attempt_at": None, "delivered_at": now}
    if result.outcome == AttemptOutcome.gone:
        return {"status": DeliveryStatus.failed.value, "next_attempt_at": None,
                "reason": "endpoint_gone: the receiver answered 410 Gone; the endpoint is "
                          "disabled"}
    if result.outcome == AttemptOutcome.retry:
        due_at = rules.next_attempt(channel=item.channel, round_attempts=item.round_attempts,
                                    now=now, retry_after=result.retry_after)
        if due_at is not None:
            return {"status": DeliveryStatus.pending.value, "next_attempt_at": due_at,
                    "reason": rules.reason_text(result.error or "failed")}
        return {"status": DeliveryStatus.failed.value, "next_attempt_at": None,
                "reason": rules.reason_text(
                    f"gave up after {item.round_attempts} attempts: {result.error}")}
    return {"status": DeliveryStatus.failed.value, "next_attempt_at": None,
            "reason": rules.reason_text(result.error or "failed")}


def _endpoint_after(endpoint: WebhookEndpoint, result: Attempt, now: datetime) -> None:
    if result.outcome == AttemptOutcome.delivered:
        endpoint.failing_since = None
        return
    if endpoint.disabled_at is not None:
        return
    if result.outcome == AttemptOutcome.gone:
        endpoint.disabled_at, endpoint.disabled_reason = now, "gone"
        return
    if endpoint.failing_since is None:
        endpoint.failing_since = now
    elif now - endpoint.failing_since >= rules.DISABLE_AFTER_FAILING:
        endpoint.disabled_at, endpoint.disabled_reason = now, "failing"


def _subscriptions_after(session: Session, results: Sequence[Attempt], now: datetime) -> None:
    """What push services said of members' subscriptions: gone ones are kept as gone (no
    longer pushed to), the others note their last success."""
    gone = {found for result in results for found in result.gone_subscriptions}
    pushed = {found for result in results for found in result.pushed}
    if gone:
        session.execute(update(PushSubscription).where(PushSubscription.id.in_(gone),
                                                       PushSubscription.gone_at.is_(None))
                        .values(gone_at=now))
    if pushed:
        session.execute(update(PushSubscription).where(PushSubscription.id.in_(pushed))
                        .values(last_delivered_at=now))


def post_pinned(client: httpx.Client, url: str, *, content: bytes, headers: dict[str, str],
                allow_private: bool, started: float) -> httpx.Response | Attempt:
    """POST to an address a client gave (a webhook endpoint, a browser's push service):
    its name resolved and checked now, and the checked address the one connected to (DNS
    cannot move it to a private one between the two). The answer, or the attempt it came
    to when there was none."""

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        address = webhooks.resolve_target(url, allow_private=allow_private)
    except TargetNotAllowed as exc:
        return Attempt(AttemptOutcome.retry, took(), error=exc.detail)
    except OSError as exc:
        return Attempt(AttemptOutcome.retry, took(), error=f"could not resolve the host: {exc}")
    parts = urlsplit(url)
    host = f"[{address}]" if ":" in address else address
    pinned = urlunsplit((parts.scheme, f"{host}:{parts.port}" if parts.port else host,
                         parts.path or "/", parts.query, ""))
    try:
        return client.post(pinned, content=content, headers={**headers, "host": parts.netloc},
                           extensions={"sni_hostname": parts.hostname or ""})
    except httpx.TimeoutException:
        return Attempt(AttemptOutcome.retry, took(), error="timed out")
    except httpx.HTTPError as exc:
        return Attempt(AttemptOutcome.retry, took(), error=f"{type(exc).__name__}: {exc}")


# --- the webhook channel ----------------------------------------------------------------

def webhook_body(event: OutboxEvent) -> bytes:
    """Standard Webhooks' payload: the type, the event's time and its data."""
    return json.dumps({"type": event.type, "timestamp": event.occurred_at.isoformat(),
                       "data": event.payload}, separators=(",", ":"),
                      ensure_ascii=False).encode()


class WebhookChannel:
    name = DeliveryChannel.webhook.value

    def __init__(self, client: httpx.Client, settings: Settings) -> None:
        self.client = client
        self.allow_private = settings.webhook_allow_private_targets

    def prepare(self, session: Session, due: Sequence[Due], now: datetime
                ) -> dict[uuid.UUID, Send | Skip | Hold]:
        endpoint_ids = {item.endpoint_id for item in due if item.endpoint_id is not None}
        event_ids = {item.event_id for item in due}
        endpoints = {endpoint.id: endpoint for endpoint in session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.id.in_(endpoint_ids)))}
        events = {event.id: event for event in session.scalars(
            select(OutboxEvent).where(OutboxEvent.id.in_(event_ids)))}
        prepared: dict[uuid.UUID, Send | Skip | Hold] = {}
        for item in due:
            endpoint = endpoints.get(item.endpoint_id) if item.endpoint_id else None
            if endpoint is None or endpoint.disabled_at is not None:
                prepared[item.id] = Skip(DeliveryStatus.failed,
                                         "endpoint_disabled: replay it once it is enabled")
                continue
            prepared[item.id] = self._sender(
                url=endpoint.url, secrets=webhooks.signing_secrets(endpoint, now),
                message_id=str(item.id), body=webhook_body(events[item.event_id]))
        return prepared

    def _sender(self, *, url: str, secrets: list[str], message_id: str, body: bytes) -> Send:
        def send() -> Attempt:
            return self.post(url=url, secrets=secrets, message_id=message_id, body=body)
        return send

    def post(self, *, url: str, secrets: list[str], message_id: str, body: bytes) -> Attempt:
        started = time.monotonic()
        # The timestamp is the wall clock's: receivers compare it with theirs.
        headers = signing.headers(secrets, message_id=message_id,
                                  timestamp=int(time.time()), body=body)
        headers.update({"content-type": "application/json", "user-agent": "Patron-Webhooks/1"})
        response = post_pinned(self.client, url, content=body, headers=headers,
                               allow_private=self.allow_private, started=started)
        if isinstance(response, Attempt):
            return response
        outcome = rules.webhook_outcome(response.status_code)
        return Attempt(outcome, int((time.monotonic() - started) * 1000),
                       status_code=response.status_code,
                       error=None if outcome == AttemptOutcome.delivered
                       else f"the receiver answered {response.status_code}",
                       retry_after=rules.parse_retry_after(
                           response.headers.get("retry-after"), utcnow()))


# --- one round and the loop -------------------------------------------------------------

@dataclass
class Round:
    dispatched: int = 0
    sent: Recorded = field(default_factory=Recorded)
    streamed: int = 0

    @property
    def idle(self) -> bool:
        sent = self.sent
        return not (self.dispatched or self.streamed or sent.delivered or sent.retried
                    or sent.failed or sent.suppressed or sent.held)


class Deliverer:
    """Dispatch and send, one batch at a time, with one pool of threads and HTTP
    connections for the life of the worker."""

    def __init__(self, database: Database, settings: Settings | None = None, *,
                 channels: Sequence[Channel] | None = None,
                 messages: MemberMessages | None = None,
                 publisher: Publisher | None = None) -> None:
        self.database = database
        self.settings = settings or get_settings()
        self.client = httpx.Client(
            timeout=self.settings.webhook_timeout_seconds, follow_redirects=False,
            limits=httpx.Limits(max_connections=self.settings.delivery_concurrency))
        if channels is None:
            from patron.notify.channels import member_channels

            channels = [WebhookChannel(self.client, self.settings),
                        *member_channels(self.settings, self.client)]
        self.channels = {channel.name: channel for channel in channels}
        if messages is None:
            from patron.notify.messages import MemberMessages

            messages = MemberMessages(channels=[name for name in self.channels
                                                if name != DeliveryChannel.webhook])
        self.messages = messages
        self.executor = ThreadPoolExecutor(self.settings.delivery_concurrency,
                                           thread_name_prefix="patron-delivery")
        if publisher is None and self.settings.event_stream_url:
            publisher = NatsPublisher(self.settings.event_stream_url,
                                      stream=self.settings.event_stream_name,
                                      subject=self.settings.event_stream_subject)
        self.publisher = publisher
        # Longer than any attempt can take: the lease must not run out while it runs.
        self.lease = timedelta(seconds=self.settings.webhook_timeout_seconds * 2 + 10)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.client.close()
        if self.publisher is not None:
            self.publisher.close()

    def run_once(self, now: datetime | None = None) -> Round:
        result = Round()
        result.dispatched = dispatch(self.database, now=now, limit=self.settings.delivery_batch,
                                     messages=self.messages)
        result.sent = self.send_due(now)
        if self.publisher is not None:
            result.streamed = relay(self.database, self.publisher, now=now,
                                    subject=self.settings.event_stream_subject,
                                    limit=self.settings.delivery_batch)
        return result

    def send_due(self, now: datetime | None = None) -> Recorded:
        now = now or utcnow()
        due = claim(self.database, now=now, limit=self.settings.delivery_batch,
                    lease=self.lease)
        if not due:
            return Recorded()
        prepared: dict[uuid.UUID, Send | Skip | Hold] = {}
        # A write transaction: the frequency cap takes its slots here (no network inside).
        with self.database.session_scope() as session:
            by_channel: dict[str, list[Due]] = {}
            for item in due:
                by_channel.setdefault(item.channel, []).append(item)
            for name, items in by_channel.items():
                channel = self.channels.get(name)
                if channel is None:
                    prepared.update({item.id: Skip(DeliveryStatus.failed,
                                                   f"channel_not_configured: {name}")
                                     for item in items})
                    continue
                prepared.update(channel.prepare(session, items, now))
        results: dict[uuid.UUID, Attempt | Skip | Hold] = {}
        attempted_at: dict[uuid.UUID, datetime] = {}
        futures = {}
        for item in due:
            action = prepared[item.id]
            if isinstance(action, Skip | Hold):
                results[item.id] = action
            else:
                attempted_at[item.id] = utcnow()
                futures[item.id] = self.executor.submit(action)
        for key, future in futures.items():
            try:
                results[key] = future.result()
            except Exception as exc:  # a channel's bug must not lose the batch's records
                log.exception("delivery %s failed in its channel", key)
                results[key] = Attempt(AttemptOutcome.retry, 0,
                                       error=f"internal error: {type(exc).__name__}")
        return record(self.database, due, results, now=utcnow(), attempted_at=attempted_at)
