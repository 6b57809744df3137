"""Targeted messages: an audience over member fields, counted after consent; sent on one
channel with a personal code each; results from the deliveries and the codes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from bench.sinks import Mailbox
from fastapi.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.notify.worker import Deliverer
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.notify.helpers import enrol
from tests.notify.test_email import text_of
from tests.vouchers.conftest import make_offer


@pytest.fixture
def deliverer(database: Database, mailbox: Mailbox) -> Iterator[Deliverer]:
    worker = Deliverer(database, get_settings().model_copy(update={"smtp_url": mailbox.url}))
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture
def members(client: TestClient, world: World) -> dict[str, dict[str, Any]]:
    key = world.a.merchant_key
    return {
        "kanto": enrol(client, key, email="kanto@example.jp", region="Kanto", language="en",
                       consents={"email": True}),
        "kansai": enrol(client, key, email="kansai@example.jp", region="Kansai",
                        language="en", consents={"email": True}),
        "silent": enrol(client, key, email="silent@example.jp", region="Kanto"),
        "phone": enrol(client, key, phone="+81 90-7777-0001", region="Kanto",
                       consents={"sms": True}),
    }


def _preview(client: TestClient, key: str, conditions: Any,
             channel: str = "email") -> Any:
    return client.post("/v1/messages/preview", headers=auth(key), json={
        "audience": {"conditions": conditions}, "channel": channel})


def test_the_preview_counts_the_audience_and_whom_the_channel_reaches(
        client: TestClient, world: World, members: dict[str, dict[str, Any]]) -> None:
    everyone = _preview(client, world.a.merchant_key, {"all": []})
    assert everyone.status_code == 200, everyone.text
    # World's own members count too: compare with an audience that names the region.
    kanto = _preview(client, world.a.merchant_key,
                     {"field": "member.region", "op": "eq", "value": "Kanto"}).json()
    assert kanto == {"selected": 3, "reachable": 1}
    by_sms = _preview(client, world.a.merchant_key,
                      {"field": "member.region", "op": "eq", "value": "Kanto"}, "sms").json()
    assert by_sms == {"selected": 3, "reachable": 1}
    # Another merchant's audience never holds A's members.
    other = _preview(client, world.b.merchant_key,
                     {"field": "member.region", "op": "eq", "value": "Kanto"}).json()
    assert other == {"selected": 0, "reachable": 0}


def test_an_audience_reads_member_fields_only(client: TestClient, world: World,
                                              database: Database) -> None:
    before = snapshot(database)
    response = _preview(client, world.a.merchant_key,
                        {"field": "purchase.total_minor", "op": "ge", "value": 100})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["type"] == "not_a_member_field"
    sent = client.post("/v1/messages", headers=auth(world.a.merchant_key), json={
        "audience": {"conditions": {"field": "env.hour", "op": "lt", "value": 9}},
        "channel": "email", "text": "Hello"})
    assert sent.status_code == 422
    assert changed_tables(before, snapshot(database)) == []


def test_a_message_with_an_offer_reaches_each_member_with_their_own_code(
        client: TestClient, world: World, members: dict[str, dict[str, Any]],
        mailbox: Mailbox, deliverer: Deliverer) -> None:
    offer = make_offer(client, world.a.merchant_key, name="Autumn 100 off", value=100)
    sent = client.post("/v1/messages", headers=auth(world.a.merchant_key), json={
        "audience": {"conditions": {"field": "member.region", "op": "in",
                                    "value": ["Kanto", "Kansai"]}},
        "channel": "email", "subject": "Autumn sale", "text": "100 yen off this weekend",
        "offer_id": offer["id"]})
    assert sent.status_code == 201, sent.text
    message = sent.json()
    assert (message["selected"], message["sent"]) == (4, 2)

    deliverer.run_once()

    mails = {address: mailbox.to(address) for address in
             ("kanto@example.jp", "kansai@example.jp", "silent@example.jp")}
    assert mails["silent@example.jp"] == []
    codes = []
    for address in ("kanto@example.jp", "kansai@example.jp"):
        [mail] = [m for m in mails[address] if m["Subject"] == "Autumn sale"]
        body = text_of(mail)
        assert "100 yen off this weekend" in body
        codes.append(body.split("Your code: ")[1].split(" ")[0].rstrip(".,"))
    assert len(set(codes)) == 2
    redeemed = client.post(f"/v1/vouchers/{codes[0]}/redeem", headers=auth(world.a.pos_key),
                           json={"receipt_no": "T-1",
                                 "member": {"member_id": members["kanto"]["id"]}})
    assert redeemed.status_code == 200, redeemed.text
    results = client.get(f"/v1/messages/{message['id']}",
                         headers=auth(world.a.merchant_key)).json()
    assert {key: results[key] for key in ("selected", "sent", "delivered", "failed",
                                          "suppressed", "pending", "redemptions")} == {
        "selected": 4, "sent": 2, "delivered": 2, "failed": 0, "suppressed": 0,
        "pending": 0, "redemptions": 1}


def test_who_may_send_and_read_messages(client: TestClient, world: World,
                                        database: Database) -> None:
    body = {"audience": {"conditions": {"all": []}}, "channel": "sms", "text": "Hi"}
    for key in (world.operator_key, world.a.pos_key):
        assert client.post("/v1/messages", headers=auth(key), json=body).status_code == 403
    sent = client.post("/v1/messages", headers=auth(world.a.merchant_key), json=body)
    assert sent.status_code == 201, sent.text
    path = f"/v1/messages/{sent.json()['id']}"
    assert client.get(path, headers=auth(world.a.merchant_key)).status_code == 200
    assert client.get(path, headers=auth(world.operator_key)).status_code == 200
    assert client.get(path, headers=auth(world.b.merchant_key)).status_code == 404
    assert client.get(path, headers=auth(world.a.pos_key)).status_code == 403
