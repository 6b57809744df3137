"""The event stream: the outbox relayed, in order, to a broker for downstream systems.

NATS JetStream (``PATRON_EVENT_STREAM_URL=nats://host:4222``), behind one small
``Publisher`` interface. Each event is published on
``{PATRON_EVENT_STREAM_SUBJECT}.{merchant number}.{event type}`` with its id as
``Nats-Msg-Id``, one at a time, each acknowledged before the next: events leave in the
order they were written (per member too), and an event published again after a crash (its
acknowledgement came, the process died before it was marked) is dropped by JetStream as a
duplicate. Marking happens after the acknowledgements, in one statement per batch. Off by
default; one relay runs (the delivery worker's lease).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import select, update

from patron.db import Database
from patron.kit.clock import utcnow
from patron.notify.models import OutboxEvent
from patron.notify.webhooks import PRIVATE_EVENTS
from patron.tenancy.models import Merchant

T = TypeVar("T")


class Publisher(Protocol):
    def publish(self, subject: str, body: bytes, *, message_id: str) -> None:
        """Publish and wait for the broker's acknowledgement; raise when it does not
        come."""

    def close(self) -> None: ...


class NatsPublisher:
    """A JetStream publisher for the worker's threads: nats-py runs on an event loop of
    its own, in a thread of its own. The stream is made if it does not exist."""

    def __init__(self, url: str, *, stream: str, subject: str, timeout: float = 5.0) -> None:
        import nats

        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="patron-event-stream", daemon=True)
        self._thread.start()

        async def connect() -> tuple[Any, Any]:
            connection = await nats.connect(url, connect_timeout=timeout,
                                            max_reconnect_attempts=-1)
            jetstream = connection.jetstream(timeout=timeout)
            try:
                await jetstream.stream_info(stream)
            except nats.js.errors.NotFoundError:
                await jetstream.add_stream(name=stream, subjects=[f"{subject}.>"])
            return connection, jetstream

        self._connection, self._jetstream = self._run(connect())

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(
            self.timeout * 3)

    def publish(self, subject: str, body: bytes, *, message_id: str) -> None:
        self._run(self._jetstream.publish(subject, body,
                                          headers={"Nats-Msg-Id": message_id}))

    def close(self) -> None:
        try:
            self._run(self._connection.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)


def event_body(event: OutboxEvent) -> bytes:
    return json.dumps({"id": str(event.id), "type": event.type,
                       "merchant_id": str(event.merchant_id),
                       "member_id": str(event.member_id) if event.member_id else None,
                       "occurred_at": event.occurred_at.isoformat(),
                       "created_at": event.created_at.isoformat(), "data": event.payload},
                      separators=(",", ":"), ensure_ascii=False).encode()


def relay(database: Database, publisher: Publisher, *, subject: str, limit: int = 500,
          now: datetime | None = None) -> int:
    """Publish up to ``limit`` events not yet streamed, oldest first; how many were
    streamed. A failure stops the batch: what was acknowledged before it is marked, the
    rest goes next time, in order."""
    with database.read_scope() as session:
        rows = session.execute(
            select(OutboxEvent, Merchant.number)
            .join(Merchant, Merchant.id == OutboxEvent.merchant_id)
            .where(OutboxEvent.streamed_at.is_(None))
            .order_by(OutboxEvent.created_at, OutboxEvent.id).limit(limit)).all()
    done = []
    failure: Exception | None = None
    for event, merchant_number in rows:
        if event.type not in PRIVATE_EVENTS:
            try:
                publisher.publish(f"{subject}.{merchant_number:05d}.{event.type}",
                                  event_body(event), message_id=str(event.id))
            except Exception as exc:  # the broker is away: mark what went, retry the rest
                failure = exc
                break
        done.append(event.id)
    if done:
        with database.session_scope() as session:
            session.execute(update(OutboxEvent).where(OutboxEvent.id.in_(done))
                            .values(streamed_at=now or utcnow()))
    if failure is not None:
        raise failure
    return len(done)
