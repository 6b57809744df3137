"""Quiet hours and the weekly cap: marketing waits out the window (the merchant's in the
store's time, or the member's own), transactional messages do not; the cap holds with
concurrent senders (real threads; on PostgreSQL, concurrent transactions)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from bench.sinks import Mailbox
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock
from patron.notify import rules
from patron.notify.models import MessageSend
from patron.notify.outbox import EventType, emit
from patron.notify.worker import Deliverer, dispatch
from tests.conftest import World, auth
from tests.notify.helpers import enrol, member_deliveries

TOKYO = "Asia/Tokyo"
# 23:00 in Tokyo (merchant A's stores), a Monday.
LATE = datetime(2026, 12, 7, 14, 0, tzinfo=UTC)


def _deliverer(database: Database, mailbox: Mailbox, **settings: object) -> Deliverer:
    return Deliverer(database, get_settings().model_copy(update={
        "smtp_url": mailbox.url, **settings}))


@pytest.fixture
def deliverer(database: Database, mailbox: Mailbox) -> Iterator[Deliverer]:
    worker = _deliverer(database, mailbox)
    try:
        yield worker
    finally:
        worker.close()


def _settings(client: TestClient, world: World, **values: object) -> None:
    response = client.put(f"/v1/merchants/{world.a.merchant_id}/message-settings",
                          headers=auth(world.a.merchant_key), json=values)
    assert response.status_code == 200, response.text


def test_a_marketing_message_due_at_23_00_is_sent_when_the_window_ends(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    _settings(client, world, quiet_hours={"start": "21:00", "end": "08:00"})
    clock.freeze(LATE)
    member = enrol(client, world.a.merchant_key, email="late@example.jp",
                   consents={"email": True})

    deliverer.run_once()

    assert mailbox.to("late@example.jp") == []
    [held] = member_deliveries(client, world.a.merchant_key, member["id"], "email")
    ends = datetime(2026, 12, 7, 23, 0, tzinfo=UTC)  # 08:00 the next day in Tokyo
    assert held["status"] == "pending" and held["attempts"] == []
    assert held["reason"] == f"quiet_hours: held until {ends.isoformat()}"
    assert datetime.fromisoformat(held["next_attempt_at"]) == ends
    clock.freeze(ends - timedelta(minutes=1))
    deliverer.run_once()
    assert mailbox.to("late@example.jp") == []
    clock.freeze(ends)
    deliverer.run_once()
    assert len(mailbox.to("late@example.jp")) == 1
    [sent] = member_deliveries(client, world.a.merchant_key, member["id"], "email")
    assert sent["status"] == "delivered" and len(sent["attempts"]) == 1


def test_a_one_time_code_ignores_quiet_hours(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    _settings(client, world, quiet_hours={"start": "21:00", "end": "08:00"})
    clock.freeze(LATE)
    member = enrol(client, world.a.merchant_key, email="code@example.jp")
    response = client.post(f"/v1/members/{member['id']}/verification-codes",
                           headers=auth(world.a.pos_key), json={"channel": "email"})
    assert response.status_code in (200, 201), response.text
    deliverer.run_once()
    assert len(mailbox.to("code@example.jp")) == 1


def test_the_members_own_quiet_hours_replace_the_merchants(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    _settings(client, world, quiet_hours={"start": "21:00", "end": "08:00"})
    member = enrol(client, world.a.merchant_key, email="own@example.jp",
                   consents={"email": True})
    # Their own window, in their zone (New York: 09:00 there at 23:00 in Tokyo).
    own = client.put(f"/v1/members/{member['id']}/quiet-hours",
                     headers=auth(world.a.merchant_key),
                     json={"start": "08:30", "end": "10:00", "timezone": "America/New_York"})
    assert own.status_code == 200, own.text
    assert own.json()["quiet_hours"] == {"start": "08:30", "end": "10:00"}
    clock.freeze(LATE)
    deliverer.run_once()
    [held] = member_deliveries(client, world.a.merchant_key, member["id"], "email")
    assert held["reason"].startswith("quiet_hours: held until 2026-12-07T15:00:00")
    clock.freeze(datetime(2026, 12, 7, 15, 0, tzinfo=UTC))
    deliverer.run_once()
    assert len(mailbox.to("own@example.jp")) == 1


def test_the_weekly_cap_holds_with_concurrent_senders(
        client: TestClient, world: World, database: Database, mailbox: Mailbox) -> None:
    _settings(client, world, weekly_cap=3)
    member = enrol(client, world.a.merchant_key, email="cap@example.jp")
    consent = client.post(f"/v1/members/{member['id']}/consents",
                          headers=auth(world.a.merchant_key), json={"email": True})
    assert consent.status_code == 200, consent.text
    with database.session_scope() as session:
        for number in range(20):
            emit(session, type=EventType.tier_changed, member_id=uuid.UUID(member["id"]),
                 merchant_id=uuid.UUID(world.a.merchant_id),
                 payload={"to": f"Tier {number}", "from": None})
    workers = [_deliverer(database, mailbox, delivery_batch=5) for _ in range(4)]
    try:
        # The deliveries are made (the welcome's too); the senders then race for them.
        assert dispatch(database, messages=workers[0].messages) == 21
        start = threading.Barrier(len(workers))

        def send(worker: Deliverer) -> None:
            start.wait()
            for _ in range(3):
                worker.send_due()

        threads = [threading.Thread(target=send, args=(worker,)) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        for worker in workers:
            worker.close()
    deliveries = member_deliveries(client, world.a.merchant_key, member["id"], "email")
    # 21 marketing messages (the welcome and 20 tier changes): 3 sent, the rest capped.
    assert len(deliveries) == 21
    assert [d["status"] for d in deliveries].count("delivered") == 3
    assert len(mailbox.to("cap@example.jp")) == 3
    assert {d["reason"] for d in deliveries if d["status"] != "delivered"} == {
        "frequency_cap: 3 a week"}
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(MessageSend)) == 3


@pytest.mark.parametrize(("local", "start", "end", "until"), [
    ("23:00", "21:00", "08:00", "2026-12-08 08:00"),
    ("07:59", "21:00", "08:00", "2026-12-07 08:00"),
    ("08:00", "21:00", "08:00", None),
    ("20:59", "21:00", "08:00", None),
    ("12:30", "12:00", "13:00", "2026-12-07 13:00"),
    ("13:00", "12:00", "13:00", None),
    ("03:00", "00:00", "00:00", None),
])
def test_quiet_until(local: str, start: str, end: str, until: str | None) -> None:
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(TOKYO)
    hours, minutes = map(int, local.split(":"))
    now = datetime(2026, 12, 7, hours, minutes, tzinfo=zone)
    quiet = rules.QuietHours(int(start[:2]) * 60 + int(start[3:]),
                             int(end[:2]) * 60 + int(end[3:]), TOKYO)
    found = rules.quiet_until(now, quiet)
    expected = (datetime.fromisoformat(until).replace(tzinfo=zone) if until else None)
    assert found == expected
