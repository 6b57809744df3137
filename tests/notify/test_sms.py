"""Member SMS through the generic HTTP provider (a fake provider on loopback: the test's
receiver), the file provider, and STOP replies through the inbound webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from bench.sinks import Receiver, webhook_receiver
from fastapi.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.notify.worker import Deliverer
from tests.conftest import World, auth
from tests.notify.helpers import enrol, member_deliveries
from tests.notify.test_email import checkout, voucher_campaign

PHONE = "+81 90-1111-2222"
E164 = "+819011112222"


@pytest.fixture
def provider() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


def deliverer_for(database: Database, **settings: Any) -> Deliverer:
    return Deliverer(database, get_settings().model_copy(update=settings))


@pytest.fixture
def deliverer(database: Database, provider: Receiver) -> Iterator[Deliverer]:
    worker = deliverer_for(database, sms_provider="http", sms_url=provider.url,
                           sms_auth="bearer:provider-token", sms_from="PATRON")
    try:
        yield worker
    finally:
        worker.close()


def sms_deliveries(client: TestClient, key: str, member_id: str) -> list[dict[str, Any]]:
    return member_deliveries(client, key, member_id, "sms")


def test_a_checkouts_voucher_reaches_the_provider_in_the_members_language(
        client: TestClient, world: World, provider: Receiver, deliverer: Deliverer) -> None:
    voucher_campaign(client, world)
    member = enrol(client, world.a.merchant_key, phone=PHONE, language="ja",
                   consents={"sms": True})
    answer = checkout(client, world, member, "R-1")
    [offer] = [item for item in answer["offers"] if item.get("voucher")]

    deliverer.run_once()

    sent = [item.json for item in provider.received]
    assert all(item.headers["authorization"] == "Bearer provider-token"
               for item in provider.received)
    [voucher_sms] = [body for body in sent if offer["voucher"]["code"] in body["text"]]
    assert voucher_sms["to"] == E164 and voucher_sms["from"] == "PATRON"
    assert "クーポン" in voucher_sms["text"]
    assert all(body["text"].startswith(answer_merchant(client, world)) for body in sent)
    deliveries = sms_deliveries(client, world.a.merchant_key, member["id"])
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert voucher_sms["reference"] in {d["id"] for d in deliveries}


def answer_merchant(client: TestClient, world: World) -> str:
    merchant = client.get(f"/v1/merchants/{world.a.merchant_id}",
                          headers=auth(world.a.merchant_key))
    name: str = merchant.json()["name"]
    return name


def test_the_provider_failing_is_retried_and_a_refusal_is_final(
        client: TestClient, world: World, provider: Receiver, deliverer: Deliverer) -> None:
    provider.answer(503, 400)
    member = enrol(client, world.a.merchant_key, phone=PHONE, consents={"sms": True})
    deliverer.run_once()
    [delivery] = sms_deliveries(client, world.a.merchant_key, member["id"])
    assert (delivery["status"], delivery["attempts"][0]["status_code"]) == ("pending", 503)
    from datetime import timedelta

    from patron.kit.clock import clock, utcnow
    clock.freeze(utcnow() + timedelta(seconds=12))
    deliverer.run_once()
    [delivery] = sms_deliveries(client, world.a.merchant_key, member["id"])
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [503, 400]


def test_without_sms_consent_at_that_merchant_nothing_is_sent(
        client: TestClient, world: World, provider: Receiver, deliverer: Deliverer) -> None:
    voucher_campaign(client, world)
    member = enrol(client, world.a.merchant_key, phone=PHONE, consents={"email": True})
    checkout(client, world, member, "R-1")
    deliverer.run_once()
    assert provider.received == []
    assert {(d["status"], d["reason"]) for d in sms_deliveries(
        client, world.a.merchant_key, member["id"])} == {("suppressed", "no_marketing_consent")}


def test_the_file_provider_writes_each_message_as_a_json_line(
        client: TestClient, world: World, database: Database, tmp_path: Path) -> None:
    path = tmp_path / "sms.jsonl"
    worker = deliverer_for(database, sms_provider="file", sms_file=str(path), sms_from="SHOP")
    try:
        member = enrol(client, world.a.merchant_key, phone=PHONE, language="ko",
                       consents={"sms": True})
        worker.run_once()
    finally:
        worker.close()
    [line] = [json.loads(text) for text in path.read_text(encoding="utf-8").splitlines()]
    assert (line["to"], line["from"]) == (E164, "SHOP")
    assert member["member_number"] in line["text"] and "환영" in line["text"]


def test_a_form_bodied_provider_gets_its_fields(
        client: TestClient, world: World, database: Database, provider: Receiver) -> None:
    worker = deliverer_for(database, sms_provider="http", sms_url=provider.url,
                           sms_body_type="form", sms_auth="basic:acct:pw")
    try:
        enrol(client, world.a.merchant_key, phone=PHONE, language="en",
              consents={"sms": True})
        worker.run_once()
    finally:
        worker.close()
    [item] = provider.received
    assert item.headers["content-type"] == "application/x-www-form-urlencoded"
    assert item.headers["authorization"] == "Basic YWNjdDpwdw=="
    form = parse_qs(item.body.decode())
    assert form["To"] == [E164] and "Welcome" in form["Body"][0]


def _signed(body: bytes) -> dict[str, str]:
    signature = hmac.new(get_settings().sms_inbound_token.encode(), body,
                         hashlib.sha256).hexdigest()
    return {"content-type": "application/x-www-form-urlencoded",
            "x-patron-signature": signature}


@pytest.mark.parametrize("word", ["STOP", " stop ", "配信停止", "退订", "수신거부"])
def test_a_stop_reply_withdraws_sms_marketing_everywhere_and_the_next_sms_is_not_sent(
        client: TestClient, world: World, provider: Receiver, deliverer: Deliverer,
        word: str) -> None:
    member = enrol(client, world.a.merchant_key, phone=PHONE, consents={"sms": True})
    deliverer.run_once()
    assert len(provider.received) == 1
    body = f"From=%2B819011112222&To=PATRON&Body={word}".encode()

    response = client.post("/v1/sms/inbound", content=body, headers=_signed(body))

    assert response.status_code == 200, response.text
    assert response.json() == {"stop": True, "consents_withdrawn": 1}
    history = client.get(f"/v1/members/{member['id']}/consents",
                         headers=auth(world.a.merchant_key)).json()["history"]
    [stopped] = [h for h in history if h["source"] == "stop_reply"]
    assert (stopped["channel"], stopped["purpose"], stopped["granted"]) == (
        "sms", "marketing", False)
    voucher_campaign(client, world)
    checkout(client, world, member, "R-1")
    deliverer.run_once()
    assert len(provider.received) == 1


def test_an_inbound_sms_without_the_secret_is_refused_and_other_texts_change_nothing(
        client: TestClient, world: World) -> None:
    member = enrol(client, world.a.merchant_key, phone=PHONE, consents={"sms": True})
    body = b"From=%2B819011112222&Body=STOP"
    refused = client.post("/v1/sms/inbound", content=body,
                          headers={"content-type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 401 and refused.json()["code"] == "bad_signature"
    wrong = client.post("/v1/sms/inbound?token=nope", content=body,
                        headers={"content-type": "application/x-www-form-urlencoded"})
    assert wrong.status_code == 401
    hello = b"From=%2B819011112222&Body=thanks%21"
    assert client.post("/v1/sms/inbound", content=hello, headers=_signed(hello)).json() == {
        "stop": False, "consents_withdrawn": 0}
    history = client.get(f"/v1/members/{member['id']}/consents",
                         headers=auth(world.a.merchant_key)).json()["history"]
    assert not [h for h in history if h["source"] == "stop_reply"]
