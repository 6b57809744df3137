"""Targeted messages: an audience over member fields, counted after consent; sent on one
channel with a personal code each; results from the deliveries and the codes."""

from __future__ import annotations

import re
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


def _links(html: str) -> list[str]:
    return re.findall(r'href="([^"]+)"', html)


def test_opens_and_clicks_of_a_targeted_email_are_counted_once_per_recipient(
        client: TestClient, world: World, members: dict[str, dict[str, Any]],
        mailbox: Mailbox, deliverer: Deliverer, database: Database) -> None:
    from urllib.parse import urlsplit

    from tests.notify.test_email import html_of

    sent = client.post("/v1/messages", headers=auth(world.a.merchant_key), json={
        "audience": {"conditions": {"field": "member.region", "op": "in",
                                    "value": ["Kanto", "Kansai"]}},
        "channel": "email", "subject": "New menu",
        "text": "See the menu at https://shop.example/menu?from=mail and enjoy."})
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]
    deliverer.run_once()

    def results() -> dict[str, Any]:
        answer: dict[str, Any] = client.get(f"/v1/messages/{message_id}",
                                            headers=auth(world.a.merchant_key)).json()
        return answer

    assert (results()["opened"], results()["clicked"]) == (0, 0)
    [kanto] = [m for m in mailbox.to("kanto@example.jp") if m["Subject"] == "New menu"]
    [kansai] = [m for m in mailbox.to("kansai@example.jp") if m["Subject"] == "New menu"]
    html = html_of(kanto)
    # The HTML shows the address and links through Patron; the text part carries the
    # tracked link; the image is the open.
    assert ">https://shop.example/menu?from=mail</a>" in html
    [click] = [link for link in _links(html) if "/track/click/" in link]
    assert click in text_of(kanto)
    [image] = re.findall(r'<img src="([^"]+)"', html)
    assert "/track/open/" in image
    # The image's token is no click (nor a click's an image): 404, nothing counted.
    image_token = urlsplit(image).path.rsplit("/", 1)[1].removesuffix(".gif")
    click_token = urlsplit(click).path.rsplit("/", 1)[1]
    assert client.get(f"/track/click/{image_token}", follow_redirects=False).status_code == 404
    assert client.get(f"/track/open/{click_token}.gif").status_code == 404
    assert (results()["opened"], results()["clicked"]) == (0, 0)

    opened = client.get(urlsplit(image).path)
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    assert (results()["opened"], results()["clicked"]) == (1, 0)
    for _ in range(2):  # a second click (or a scanner) counts once
        followed = client.get(urlsplit(click).path, follow_redirects=False)
        assert followed.status_code == 302
        assert followed.headers["location"] == "https://shop.example/menu?from=mail"
    assert (results()["opened"], results()["clicked"]) == (1, 1)
    # The other recipient's click is theirs; a click without the image loaded is an open.
    [other] = [link for link in _links(html_of(kansai)) if "/track/click/" in link]
    assert other != click
    client.get(urlsplit(other).path, follow_redirects=False)
    assert (results()["opened"], results()["clicked"]) == (2, 2)
    # A link Patron did not sign leads nowhere and records nothing.
    before = snapshot(database)
    path = urlsplit(click).path
    for forged in (path[:-2] + ("AA" if not path.endswith("AA") else "BB"),
                   "/track/click/aHR0cHM6Ly9ldmlsLmV4YW1wbGU.x", "/track/open/x.gif"):
        refused = client.get(forged, follow_redirects=False)
        assert refused.status_code == 404, forged
    assert changed_tables(before, snapshot(database)) == []


def test_an_sms_message_has_no_open_or_click_counts(
        client: TestClient, world: World, members: dict[str, dict[str, Any]]) -> None:
    sent = client.post("/v1/messages", headers=auth(world.a.merchant_key), json={
        "audience": {"conditions": {"all": []}}, "channel": "sms", "text": "Hi"})
    assert sent.status_code == 201, sent.text
    assert (sent.json()["opened"], sent.json()["clicked"]) == (None, None)


def test_with_tracking_off_a_targeted_email_has_plain_links_and_no_image(
        client: TestClient, world: World, members: dict[str, dict[str, Any]],
        mailbox: Mailbox, database: Database) -> None:
    from tests.notify.test_email import html_of

    sent = client.post("/v1/messages", headers=auth(world.a.merchant_key), json={
        "audience": {"conditions": {"field": "member.region", "op": "eq", "value": "Kanto"}},
        "channel": "email", "subject": "Plain", "text": "See https://shop.example/menu"})
    assert sent.status_code == 201, sent.text
    worker = Deliverer(database, get_settings().model_copy(
        update={"smtp_url": mailbox.url, "email_tracking": False}))
    try:
        worker.run_once()
    finally:
        worker.close()
    [mail] = [m for m in mailbox.to("kanto@example.jp") if m["Subject"] == "Plain"]
    html = html_of(mail)
    assert [link for link in _links(html) if "/unsubscribe/" not in link] == [
        "https://shop.example/menu"]
    assert "<img" not in html and "/track/" not in text_of(mail)
