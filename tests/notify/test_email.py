"""Member e-mail end to end in one process: events made through the API, dispatched and
sent by the worker's ``Deliverer`` to a real SMTP server (aiosmtpd), each received
message parsed back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import pytest
from bench.sinks import Mailbox
from fastapi.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.notify.worker import Deliverer
from tests.conftest import World, auth
from tests.notify.helpers import enrol, member_deliveries
from tests.pos.conftest import purchase
from tests.vouchers.conftest import make_offer

COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
          "unit_price": 400}


@pytest.fixture
def deliverer(database: Database, mailbox: Mailbox) -> Iterator[Deliverer]:
    settings = get_settings().model_copy(update={"smtp_url": mailbox.url,
                                                 "mail_from": "hello@patron.example"})
    worker = Deliverer(database, settings)
    try:
        yield worker
    finally:
        worker.close()


def email_deliveries(client: TestClient, key: str, member_id: str) -> list[dict[str, Any]]:
    return member_deliveries(client, key, member_id, "email")


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def html_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def voucher_campaign(client: TestClient, world: World) -> dict[str, Any]:
    offer = make_offer(client, world.a.merchant_key, kind="free_item", item_sku="CR-1",
                       name="Free croissant")
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Coffee lovers", "trigger": "checkout",
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "issue_voucher", "offer_id": offer["id"]},
                    {"type": "message", "text": "Thank you for your coffee!"}]})
    assert created.status_code == 201, created.text
    campaign: dict[str, Any] = created.json()
    return campaign


def checkout(client: TestClient, world: World, member: dict[str, Any],
             receipt: str) -> dict[str, Any]:
    done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no=receipt, lines=[COFFEE],
                                     member={"member_id": member["id"]}))
    assert done.status_code == 201, done.text
    answer: dict[str, Any] = done.json()
    return answer


@pytest.mark.parametrize(("language", "greeting"), [("ja", "ようこそ"), ("en", "Welcome"),
                                                    ("zh-Hans", "欢迎"), ("ko", "환영")])
def test_the_welcome_arrives_in_the_members_language_with_one_click_unsubscribe(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer,
        language: str, greeting: str) -> None:
    member = enrol(client, world.a.merchant_key, email="hana@example.jp", language=language,
                   consents={"email": True})

    deliverer.run_once()

    [message] = mailbox.to("hana@example.jp")
    assert greeting in message["Subject"]
    assert member["member_number"] in text_of(message)
    assert member["member_number"] in html_of(message)
    assert message["From"].addresses[0].addr_spec == "hello@patron.example"
    assert message["From"].addresses[0].display_name  # the merchant's name
    assert message["Content-Language"] == language
    assert message.get_content_type() == "multipart/alternative"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    link = message["List-Unsubscribe"].strip().strip("<>")
    assert link in text_of(message) and link in html_of(message)
    [delivery] = email_deliveries(client, world.a.merchant_key, member["id"])
    assert delivery["status"] == "delivered" and delivery["purpose"] == "marketing"
    assert message["Message-ID"] == f"<{delivery['id']}@patron.example>"


def test_a_checkouts_voucher_reaches_the_members_mailbox_with_its_code(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    voucher_campaign(client, world)
    member = enrol(client, world.a.merchant_key, email="ken@example.jp", language="ja",
                   consents={"email": True})
    answer = checkout(client, world, member, "R-1")
    [offer] = [item for item in answer["offers"] if item.get("voucher")]
    code = offer["voucher"]["code"]

    deliverer.run_once()

    messages = mailbox.to("ken@example.jp")
    [voucher_mail] = [m for m in messages if code in text_of(m)]
    assert "クーポン" in voucher_mail["Subject"]
    body = text_of(voucher_mail)
    assert offer["voucher"]["barcode"] in body
    assert "Thank you for your coffee!" in body
    assert f"/wallet/vouchers/{code}" in body
    assert code in html_of(voucher_mail)


def test_without_marketing_consent_at_that_merchant_nothing_is_sent_and_the_record_says_why(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    voucher_campaign(client, world)
    member = enrol(client, world.a.merchant_key, email="no@example.jp")
    checkout(client, world, member, "R-1")

    deliverer.run_once()

    assert mailbox.to("no@example.jp") == []
    deliveries = email_deliveries(client, world.a.merchant_key, member["id"])
    assert {(d["event_type"], d["status"], d["reason"]) for d in deliveries} == {
        ("member.enrolled", "suppressed", "no_marketing_consent"),
        ("campaign.outcome", "suppressed", "no_marketing_consent")}
    assert all(d["attempts"] == [] for d in deliveries)


def test_one_click_unsubscribe_revokes_that_merchants_email_marketing_and_the_next_is_not_sent(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, email="mio@example.jp", language="ja",
                   consents={"email": True})
    deliverer.run_once()
    [welcome] = mailbox.to("mio@example.jp")
    link = urlsplit(welcome["List-Unsubscribe"].strip().strip("<>")).path

    # Opening the link changes nothing (mail scanners open links).
    page = client.get(link)
    assert page.status_code == 200 and "<form" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # RFC 8058: one POST with List-Unsubscribe=One-Click.
    done = client.post(link, content="List-Unsubscribe=One-Click",
                       headers={"content-type": "application/x-www-form-urlencoded"})
    assert done.status_code == 200, done.text
    history = client.get(f"/v1/members/{member['id']}/consents",
                         headers=auth(world.a.merchant_key)).json()["history"]
    revoked = [h for h in history if h["source"] == "unsubscribe_link"]
    assert len(revoked) == 1
    assert (revoked[0]["channel"], revoked[0]["purpose"], revoked[0]["granted"],
            revoked[0]["merchant_id"]) == ("email", "marketing", False, world.a.merchant_id)
    [delivery] = email_deliveries(client, world.a.merchant_key, member["id"])
    assert revoked[0]["evidence"] == f"delivery {delivery['id']}"
    # A second click records nothing more.
    assert client.post(link).status_code == 200
    history = client.get(f"/v1/members/{member['id']}/consents",
                         headers=auth(world.a.merchant_key)).json()["history"]
    assert len([h for h in history if h["source"] == "unsubscribe_link"]) == 1

    voucher_campaign(client, world)
    checkout(client, world, member, "R-2")
    deliverer.run_once()
    assert len(mailbox.to("mio@example.jp")) == 1
    outcome = [d for d in email_deliveries(client, world.a.merchant_key, member["id"])
               if d["event_type"] == "campaign.outcome"]
    assert [(d["status"], d["reason"]) for d in outcome] == [("suppressed", "revoked")]


def test_a_forged_unsubscribe_link_changes_nothing(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, email="yu@example.jp",
                   consents={"email": True})
    deliverer.run_once()
    [welcome] = mailbox.to("yu@example.jp")
    link = urlsplit(welcome["List-Unsubscribe"].strip().strip("<>")).path
    forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    other_member = link.replace(member["id"].replace("-", ""), uuid.uuid4().hex)
    for bad in (forged, other_member, "/unsubscribe/nonsense"):
        assert client.post(bad).status_code == 404
    history = client.get(f"/v1/members/{member['id']}/consents",
                         headers=auth(world.a.merchant_key)).json()["history"]
    assert not [h for h in history if h["source"] == "unsubscribe_link"]


def test_a_one_time_code_is_transactional_and_needs_no_marketing_consent(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, email="sora@example.jp", language="ko")
    response = client.post(f"/v1/members/{member['id']}/verification-codes",
                           headers=auth(world.a.pos_key), json={"channel": "email"})
    assert response.status_code in (200, 201), response.text

    deliverer.run_once()

    [message] = mailbox.to("sora@example.jp")
    assert "인증 코드" in message["Subject"]
    assert "List-Unsubscribe" not in message
    deliveries = email_deliveries(client, world.a.merchant_key, member["id"])
    assert {(d["event_type"], d["purpose"], d["status"]) for d in deliveries} == {
        ("member.enrolled", "marketing", "suppressed"),
        ("member.verification_code", "transactional", "delivered")}


def test_a_refused_recipient_is_a_dead_letter_not_retried(
        client: TestClient, world: World, mailbox: Mailbox, deliverer: Deliverer) -> None:
    mailbox.refuse = "550 5.1.1 no such mailbox"
    member = enrol(client, world.a.merchant_key, email="gone@example.jp",
                   consents={"email": True})
    deliverer.run_once()
    [delivery] = email_deliveries(client, world.a.merchant_key, member["id"])
    assert delivery["status"] == "failed"
    assert [(a["outcome"], a["status_code"]) for a in delivery["attempts"]] == [("failed", 550)]


def test_no_smtp_settings_no_email_deliveries(client: TestClient, world: World,
                                             database: Database) -> None:
    worker = Deliverer(database, get_settings().model_copy(update={"smtp_url": None}))
    try:
        member = enrol(client, world.a.merchant_key, email="x@example.jp",
                       consents={"email": True})
        worker.run_once()
    finally:
        worker.close()
    assert email_deliveries(client, world.a.merchant_key, member["id"]) == []
