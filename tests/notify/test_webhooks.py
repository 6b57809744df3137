"""Webhooks end to end in one process: endpoints registered through the API, events
dispatched and sent by the worker's ``Deliverer`` to a real HTTP receiver on loopback,
signatures checked with the ``standardwebhooks`` library (an independent
implementation of Standard Webhooks 1.0)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from bench.sinks import Receiver, webhook_receiver
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.notify.models import Delivery, OutboxEvent
from patron.notify.worker import Deliverer, dispatch
from tests.conftest import World, auth
from tests.notify.helpers import enrol


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def deliverer(database: Database) -> Iterator[Deliverer]:
    worker = Deliverer(database, get_settings())
    try:
        yield worker
    finally:
        worker.close()


def register(client: TestClient, key: str, url: str, events: list[str] | None = None,
             **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/webhook-endpoints", headers=auth(key),
                           json={"url": url, "events": events or ["*"], **extra})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def deliveries(client: TestClient, key: str, endpoint_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
                          headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["deliveries"]
    return items


def verify(secret: str, item: Any) -> Any:
    return Webhook(secret).verify(item.body, item.headers)


def test_an_event_reaches_the_endpoint_signed_with_its_secret(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url, ["member.enrolled"])
    assert endpoint["secret"].startswith("whsec_")
    assert len(base64.b64decode(endpoint["secret"].removeprefix("whsec_"))) == 32
    member = enrol(client, world.a.merchant_key, language="ja")

    done = deliverer.run_once()

    assert done.sent.delivered == 1
    [item] = receiver.received
    payload = verify(endpoint["secret"], item)
    assert payload["type"] == "member.enrolled"
    assert payload["data"]["member_id"] == member["id"]
    assert set(payload) == {"type", "timestamp", "data"}
    assert item.headers["content-type"] == "application/json"
    [delivery] = deliveries(client, world.a.merchant_key, endpoint["id"])
    assert delivery["id"] == item.webhook_id
    assert delivery["status"] == "delivered"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [200]
    assert delivery["attempts"][0]["outcome"] == "delivered"


def test_only_subscribed_types_and_the_merchants_own_events_are_sent(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    register(client, world.a.merchant_key, receiver.url, ["tier.changed"])
    everything_of_a = register(client, world.a.merchant_key, receiver.url + "/a")
    coalition = register(client, world.operator_key, receiver.url + "/all")
    enrol(client, world.a.merchant_key)
    enrol(client, world.b.merchant_key)

    deliverer.run_once()

    by_path = sorted((item.path, item.json["type"]) for item in receiver.received)
    assert by_path == [("/hooks/a", "member.enrolled"), ("/hooks/all", "member.enrolled"),
                       ("/hooks/all", "member.enrolled")]
    assert deliveries(client, world.a.merchant_key, everything_of_a["id"])[0]["status"] \
        == "delivered"
    assert len(deliveries(client, world.operator_key, coalition["id"])) == 2


def test_a_one_time_code_never_goes_to_a_webhook(
        client: TestClient, world: World, receiver: Receiver, database: Database,
        deliverer: Deliverer) -> None:
    register(client, world.a.merchant_key, receiver.url)
    member = enrol(client, world.a.merchant_key, phone="+819012345678")
    response = client.post(f"/v1/members/{member['id']}/verification-codes",
                           headers=auth(world.a.merchant_key), json={"channel": "sms"})
    assert response.status_code in (200, 201), response.text

    deliverer.run_once()

    assert [item.json["type"] for item in receiver.received] == ["member.enrolled"]
    assert "member.verification_code" not in client.get(
        "/v1/event-types", headers=auth(world.a.merchant_key)).json()["types"]
    events = client.get("/v1/events", headers=auth(world.a.merchant_key),
                        params={"member_id": member["id"]}).json()["events"]
    code_event = next(e for e in events if e["type"] == "member.verification_code")
    assert "code_encrypted" not in code_event["data"]


def test_500_three_times_then_200_arrives_on_the_fourth_attempt_on_the_schedule(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    receiver.answer(500, 500, 500)
    start = utcnow()
    clock.freeze(start)
    enrol(client, world.a.merchant_key)

    deliverer.run_once()
    [delivery] = deliveries(client, world.a.merchant_key, endpoint["id"])
    assert delivery["status"] == "pending"
    # The first retry 5 s later, give or take the 10 % jitter.
    due = _instant(delivery["next_attempt_at"]) - start
    assert timedelta(seconds=4.5) <= due <= timedelta(seconds=5.5)
    deliverer.run_once()
    assert len(receiver.received) == 1  # not due yet
    for wait in (timedelta(seconds=6), timedelta(minutes=6), timedelta(minutes=34)):
        clock.freeze(utcnow() + wait)
        deliverer.run_once()

    assert len(receiver.received) == 4
    assert len(receiver.unique_ids()) == 1
    secret = endpoint["secret"]
    for item in receiver.received:
        verify(secret, item)
    [delivery] = deliveries(client, world.a.merchant_key, endpoint["id"])
    assert delivery["status"] == "delivered"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 500, 200]
    assert [a["outcome"] for a in delivery["attempts"]] == ["retry"] * 3 + ["delivered"]
    assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3, 4]
    endpoint_now = client.get(f"/v1/webhook-endpoints/{endpoint['id']}",
                              headers=auth(world.a.merchant_key)).json()
    assert endpoint_now["failing_since"] is None and endpoint_now["enabled"]


def _instant(text: str) -> Any:
    from datetime import datetime
    return datetime.fromisoformat(text)


def test_retry_after_postpones_the_next_attempt(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    receiver.answer(503, headers={"Retry-After": "120"})
    start = utcnow()
    clock.freeze(start)
    enrol(client, world.a.merchant_key)

    deliverer.run_once()

    [delivery] = deliveries(client, world.a.merchant_key, endpoint["id"])
    assert _instant(delivery["next_attempt_at"]) - start >= timedelta(seconds=120)
    clock.freeze(start + timedelta(seconds=60))
    deliverer.run_once()
    assert len(receiver.received) == 1
    clock.freeze(start + timedelta(seconds=121))
    deliverer.run_once()
    assert len(receiver.received) == 2


def test_410_disables_the_endpoint_and_later_events_are_not_sent(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    receiver.answer(410)
    enrol(client, world.a.merchant_key)
    deliverer.run_once()

    read = client.get(f"/v1/webhook-endpoints/{endpoint['id']}",
                      headers=auth(world.a.merchant_key)).json()
    assert read["enabled"] is False and read["disabled_reason"] == "gone"
    [delivery] = deliveries(client, world.a.merchant_key, endpoint["id"])
    assert delivery["status"] == "failed"
    assert delivery["reason"].startswith("endpoint_gone")
    assert delivery["attempts"][0]["outcome"] == "gone"

    enrol(client, world.a.merchant_key)
    deliverer.run_once()
    assert len(receiver.received) == 1
    assert len(deliveries(client, world.a.merchant_key, endpoint["id"])) == 1

    # Replaying needs the endpoint enabled first; then it arrives with the same id.
    replay = client.post(f"/v1/webhook-deliveries/{delivery['id']}/replay",
                         headers=auth(world.a.merchant_key))
    assert replay.status_code == 409, replay.text
    assert client.patch(f"/v1/webhook-endpoints/{endpoint['id']}",
                        headers=auth(world.a.merchant_key),
                        json={"enabled": True}).json()["enabled"] is True
    replay = client.post(f"/v1/webhook-deliveries/{delivery['id']}/replay",
                         headers=auth(world.a.merchant_key))
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "pending"
    deliverer.run_once()
    assert [item.webhook_id for item in receiver.received] == [delivery["id"]] * 2


def test_after_the_last_retry_the_delivery_is_a_dead_letter_that_can_be_replayed(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    receiver.otherwise = (500, {})
    clock.freeze(utcnow())
    enrol(client, world.a.merchant_key)
    deliverer.run_once()
    for _ in range(7):
        clock.freeze(utcnow() + timedelta(hours=11))
        deliverer.run_once()

    assert len(receiver.received) == 8  # at once + the 7 retries of the schedule
    dead = client.get("/v1/deliveries", headers=auth(world.a.merchant_key),
                      params={"status": "failed"}).json()["deliveries"]
    assert [d["id"] for d in dead] == [receiver.received[0].webhook_id]
    assert dead[0]["reason"].startswith("gave up after 8 attempts")
    assert dead[0]["attempts"][-1]["outcome"] == "failed"
    clock.freeze(utcnow() + timedelta(hours=11))
    deliverer.run_once()
    assert len(receiver.received) == 8

    receiver.otherwise = (200, {})
    response = client.post(f"/v1/deliveries/{dead[0]['id']}/replay",
                           headers=auth(world.a.merchant_key))
    assert response.status_code == 200, response.text
    deliverer.run_once()
    assert len(receiver.received) == 9
    [delivery] = deliveries(client, world.a.merchant_key, endpoint["id"])
    assert delivery["status"] == "delivered"
    assert len(delivery["attempts"]) == 9


def test_five_days_of_failures_disable_the_endpoint(
        client: TestClient, world: World, receiver: Receiver, database: Database,
        deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    receiver.otherwise = (502, {})
    clock.freeze(utcnow())
    for day in range(6):
        enrol(client, world.a.merchant_key)
        deliverer.run_once()
        read = client.get(f"/v1/webhook-endpoints/{endpoint['id']}",
                          headers=auth(world.a.merchant_key)).json()
        if day < 5:
            assert read["enabled"], day
        clock.freeze(utcnow() + timedelta(days=1))
    assert read["enabled"] is False and read["disabled_reason"] == "failing"


def test_a_rotated_secret_signs_beside_the_new_one_for_the_window(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    rotated = client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
                          headers=auth(world.a.merchant_key))
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != endpoint["secret"]
    enrol(client, world.a.merchant_key)
    deliverer.run_once()
    [item] = receiver.received
    assert len(item.headers["webhook-signature"].split(" ")) == 2
    verify(endpoint["secret"], item)
    verify(new_secret, item)

    clock.freeze(utcnow() + timedelta(hours=25))
    enrol(client, world.a.merchant_key)
    deliverer.run_once()
    later = receiver.received[1]
    verify(new_secret, later)
    with pytest.raises(WebhookVerificationError):
        verify(endpoint["secret"], later)


def test_a_tampered_body_an_old_timestamp_or_another_secret_fail_verification(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    enrol(client, world.a.merchant_key)
    deliverer.run_once()
    [item] = receiver.received
    secret = endpoint["secret"]
    verify(secret, item)
    tampered = item.body.replace(b"member.enrolled", b"member.enroled")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, item.headers)
    # An old message re-signed correctly is still refused for its age.
    old = str(int(time.time()) - 3600)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{item.webhook_id}.{old}.".encode() + item.body,
                      hashlib.sha256).digest()
    replayed = {**item.headers, "webhook-timestamp": old,
                "webhook-signature": "v1," + base64.b64encode(digest).decode()}
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(item.body, replayed)
    other = register(client, world.a.merchant_key, receiver.url + "/other")
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(item.body, item.headers)


def test_dispatching_twice_makes_each_delivery_once(
        client: TestClient, world: World, receiver: Receiver, database: Database) -> None:
    register(client, world.a.merchant_key, receiver.url)
    register(client, world.a.merchant_key, receiver.url + "/2")
    enrol(client, world.a.merchant_key)
    assert dispatch(database) == 1
    with database.session_scope() as session:
        session.execute(update(OutboxEvent).values(delivered_at=None))
    assert dispatch(database) == 1
    assert dispatch(database) == 0
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2


def test_an_endpoint_hears_only_of_events_after_it_was_registered(
        client: TestClient, world: World, receiver: Receiver, deliverer: Deliverer) -> None:
    enrol(client, world.a.merchant_key)
    register(client, world.a.merchant_key, receiver.url)
    deliverer.run_once()
    assert receiver.received == []


def test_the_body_is_the_events_type_time_and_data(
        client: TestClient, world: World, receiver: Receiver, database: Database,
        deliverer: Deliverer) -> None:
    endpoint = register(client, world.a.merchant_key, receiver.url)
    member = enrol(client, world.a.merchant_key)
    deliverer.run_once()
    [item] = receiver.received
    with database.session_scope() as session:
        event = session.scalar(select(OutboxEvent).where(
            OutboxEvent.member_id == uuid.UUID(member["id"])))
        assert event is not None
        assert json.loads(item.body) == {"type": event.type,
                                         "timestamp": event.occurred_at.isoformat(),
                                         "data": event.payload}
    events = client.get("/v1/events", headers=auth(world.a.merchant_key)).json()["events"]
    assert events[0]["id"] == str(event.id)
    assert events[0]["dispatched_at"] is not None
    assert endpoint["events"] == ["*"]
