"""The event stream against the NATS server (JetStream) running on this machine: the
outbox relayed in order, each event once, a relay repeated after a crash de-duplicated by
the broker (``Nats-Msg-Id``)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from patron.config import get_settings
from patron.db import Database
from patron.notify.models import OutboxEvent
from patron.notify.outbox import EventType, emit
from patron.notify.stream import NatsPublisher, relay
from patron.notify.worker import Deliverer
from tests.conftest import World, auth

NATS_URL = "nats://127.0.0.1:4222"


@pytest.fixture
def stream() -> Iterator[tuple[str, str]]:
    """A stream and subject of this test's own (tests run in parallel)."""
    name = f"PATRON_TEST_{uuid.uuid4().hex[:12].upper()}"
    subject = f"test.{name.lower()}"
    yield name, subject

    async def drop() -> None:
        import nats

        connection = await nats.connect(NATS_URL)
        try:
            await connection.jetstream().delete_stream(name)
        finally:
            await connection.close()

    asyncio.run(drop())


def _read(name: str, subject: str) -> list[tuple[str, dict[str, Any], str]]:
    """Every message in the stream, in its order: (subject, body, Nats-Msg-Id)."""
    async def fetch() -> list[tuple[str, dict[str, Any], str]]:
        import nats

        connection = await nats.connect(NATS_URL)
        try:
            jetstream = connection.jetstream()
            info = await jetstream.stream_info(name)
            found = []
            for sequence in range(1, info.state.messages + 1):
                message = await jetstream.get_msg(name, sequence)
                found.append((message.subject, json.loads(message.data or b"{}"),
                              (message.headers or {}).get("Nats-Msg-Id", "")))
            return found
        finally:
            await connection.close()

    return asyncio.run(fetch())


def test_the_outbox_reaches_the_stream_in_order_once_each(
        client: TestClient, database: Database, world: World,
        stream: tuple[str, str]) -> None:
    name, subject = stream
    member = client.post("/v1/members", headers=auth(world.a.merchant_key),
                         json={"phone": "+81 90-5555-0101"}).json()
    with database.session_scope() as session:
        for number in range(30):
            emit(session, type=EventType.points_earned, merchant_id=uuid.UUID(world.a.merchant_id),
                 member_id=uuid.UUID(member["id"]), payload={"number": number})
    verification = client.post(f"/v1/members/{member['id']}/verification-codes",
                               headers=auth(world.a.pos_key), json={"channel": "sms"})
    assert verification.status_code == 201, verification.text
    publisher = NatsPublisher(NATS_URL, stream=name, subject=subject)
    try:
        assert relay(database, publisher, subject=subject, limit=10) == 10
        # The enrolment, 30 earns and the one-time code (marked, never published).
        assert relay(database, publisher, subject=subject) == 22
        assert relay(database, publisher, subject=subject) == 0
    finally:
        publisher.close()

    messages = _read(name, subject)
    with database.session_scope() as session:
        events = session.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at,
                                                              OutboxEvent.id)).all()
        public = [event for event in events if event.type != "member.verification_code"]
        assert [msg_id for _, _, msg_id in messages] == [str(event.id) for event in public]
        assert session.scalar(select(func.count()).select_from(OutboxEvent)
                              .where(OutboxEvent.streamed_at.is_(None))) == 0
    numbers = [body["data"]["number"] for _, body, _ in messages
               if body["type"] == "points.earned"]
    assert numbers == list(range(30))
    first_subject, first, _ = messages[0]
    assert first_subject == f"{subject}.{world.a.number:05d}.member.enrolled"
    assert first["member_id"] == member["id"] and first["merchant_id"] == world.a.merchant_id


def test_a_relay_repeated_after_a_crash_is_de_duplicated_by_the_broker(
        client: TestClient, database: Database, world: World,
        stream: tuple[str, str]) -> None:
    name, subject = stream
    with database.session_scope() as session:
        for number in range(5):
            emit(session, type=EventType.points_earned, merchant_id=uuid.UUID(world.a.merchant_id),
                 member_id=None, payload={"number": number})
    publisher = NatsPublisher(NATS_URL, stream=name, subject=subject)
    try:
        assert relay(database, publisher, subject=subject) == 5
        # The process died after the broker's acknowledgements, before it marked them.
        with database.session_scope() as session:
            session.execute(update(OutboxEvent).values(streamed_at=None))
        assert relay(database, publisher, subject=subject) == 5
    finally:
        publisher.close()
    assert len(_read(name, subject)) == 5


def test_the_worker_relays_when_the_stream_is_configured(
        client: TestClient, database: Database, world: World,
        stream: tuple[str, str]) -> None:
    name, subject = stream
    client.post("/v1/members", headers=auth(world.a.merchant_key), json={})
    worker = Deliverer(database, get_settings().model_copy(update={
        "event_stream_url": NATS_URL, "event_stream_name": name,
        "event_stream_subject": subject}))
    try:
        assert worker.run_once().streamed == 1
    finally:
        worker.close()
    [(_, body, _)] = _read(name, subject)
    assert body["type"] == "member.enrolled"


class Refusing:
    """A broker that acknowledges two messages, then is gone."""

    def __init__(self) -> None:
        self.published: list[str] = []

    def publish(self, subject: str, body: bytes, *, message_id: str) -> None:
        if len(self.published) == 2:
            raise ConnectionError("the broker is gone")
        self.published.append(message_id)

    def close(self) -> None:
        return None


def test_a_broker_gone_mid_batch_keeps_the_rest_for_next_time_in_order(
        database: Database, world: World) -> None:
    with database.session_scope() as session:
        ids = [emit(session, type=EventType.points_earned, member_id=None,
                    merchant_id=uuid.UUID(world.a.merchant_id), payload={"n": n}).id
               for n in range(4)]
    broker = Refusing()
    with pytest.raises(ConnectionError):
        relay(database, broker, subject="x")
    with database.session_scope() as session:
        streamed = session.scalars(select(OutboxEvent.id).where(
            OutboxEvent.streamed_at.is_not(None), OutboxEvent.id.in_(ids))).all()
    assert set(streamed) == set(ids[:2])
