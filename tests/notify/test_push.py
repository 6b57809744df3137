"""Web push: the encryption against RFC 8291's own example, browsers registered through
the API, and messages pushed by the worker's ``Deliverer`` to a local push service (the
test's receiver) that decrypts each payload with ``http_ece`` (an independent
implementation) and checks the VAPID signature."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import http_ece
import pytest
from bench.sinks import Received, Receiver, webhook_receiver
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from fastapi.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.notify.webpush import VapidKey, b64url, encrypt, from_b64url
from patron.notify.worker import Deliverer
from tests.conftest import World, auth
from tests.notify.helpers import enrol, member_deliveries
from tests.notify.test_email import checkout, voucher_campaign

VAPID = VapidKey.generate()


def test_the_encryption_is_rfc_8291s_example_byte_for_byte() -> None:
    # RFC 8291, Appendix A: the same keys and salt give the published message.
    sender = ec.derive_private_key(
        int.from_bytes(from_b64url("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"), "big"),
        ec.SECP256R1())
    body = encrypt(
        b"When I grow up, I want to be a watermelon",
        p256dh=from_b64url("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7V"
                           "d8pZGH6SRpkNtoIAiw4"),
        auth=from_b64url("BTBZMqHH6r4Tts7J_aSIgg"), salt=from_b64url("DGv6ra1nlYgDCS1FRnbzlw"),
        sender_key=sender)
    assert b64url(body) == (
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmY"
        "WAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexS"
        "gSxsj_Qulcy4a-fN")


@dataclass
class Browser:
    """A browser's side of a subscription: its key pair and auth secret."""

    key: ec.EllipticCurvePrivateKey
    auth: bytes
    endpoint: str

    @classmethod
    def new(cls, service: Receiver) -> Browser:
        return cls(ec.generate_private_key(ec.SECP256R1()), uuid.uuid4().bytes,
                   f"{service.url}/push/{uuid.uuid4().hex}")

    def subscription(self) -> dict[str, Any]:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return {"endpoint": self.endpoint, "expirationTime": None,
                "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)}}

    def read(self, pushed: Received) -> dict[str, Any]:
        """What the service worker would get: the body decrypted, as http_ece does."""
        assert pushed.headers["content-encoding"] == "aes128gcm"
        plain = http_ece.decrypt(pushed.body, private_key=self.key, auth_secret=self.auth,
                                 version="aes128gcm")
        message: dict[str, Any] = json.loads(plain)
        return message


def vapid_claims(pushed: Received, public_key: str) -> dict[str, Any]:
    """The VAPID JWT's claims, once its ES256 signature is checked with the key the
    header names (which must be the deployment's)."""
    scheme, _, rest = pushed.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    assert fields["k"] == public_key
    header, claims, signature = fields["t"].split(".")
    raw = from_b64url(signature)
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), from_b64url(fields["k"]))
    key.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"),
                                    int.from_bytes(raw[32:], "big")),
               f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    assert json.loads(from_b64url(header)) == {"typ": "JWT", "alg": "ES256"}
    decoded: dict[str, Any] = json.loads(from_b64url(claims))
    return decoded


@pytest.fixture
def service() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        running.otherwise = (201, {})
        yield running


@pytest.fixture
def vapid(monkeypatch: pytest.MonkeyPatch) -> Iterator[VapidKey]:
    monkeypatch.setenv("PATRON_VAPID_PRIVATE_KEY", VAPID.private_text)
    monkeypatch.setenv("PATRON_VAPID_SUBJECT", "mailto:ops@patron.example")
    get_settings.cache_clear()
    yield VAPID
    monkeypatch.delenv("PATRON_VAPID_PRIVATE_KEY")
    get_settings.cache_clear()


@pytest.fixture
def deliverer(database: Database, vapid: VapidKey) -> Iterator[Deliverer]:
    worker = Deliverer(database, get_settings())
    try:
        yield worker
    finally:
        worker.close()


def register(client: TestClient, key: str, member_id: str, body: dict[str, Any],
             status: int = 201) -> dict[str, Any]:
    response = client.post(f"/v1/members/{member_id}/push-subscriptions", headers=auth(key),
                           json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def push_deliveries(client: TestClient, key: str, member_id: str) -> list[dict[str, Any]]:
    return member_deliveries(client, key, member_id, "push")


def subscriptions_of(client: TestClient, key: str, member_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/members/{member_id}/push-subscriptions", headers=auth(key))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_checkouts_voucher_reaches_the_browser_encrypted_signed_and_in_its_language(
        client: TestClient, world: World, service: Receiver, deliverer: Deliverer,
        vapid: VapidKey) -> None:
    key = client.get("/v1/push/vapid-key", headers=auth(world.a.pos_key))
    assert key.status_code == 200 and key.json() == {"public_key": vapid.public_text}
    voucher_campaign(client, world)
    member = enrol(client, world.a.merchant_key, language="ja", consents={"push": True})
    browser = Browser.new(service)
    registered = register(client, world.a.merchant_key, member["id"], browser.subscription())
    assert registered["push_service"] == "127.0.0.1" and registered["gone_at"] is None
    answer = checkout(client, world, member, "R-1")
    [offer] = [item for item in answer["offers"] if item.get("voucher")]
    code = offer["voucher"]["code"]

    deliverer.run_once()

    pushed = [item for item in service.received if item.path.startswith("/hooks/push/")]
    messages = [browser.read(item) for item in pushed]
    [voucher] = [message for message in messages if message.get("code") == code]
    assert "クーポン" in voucher["body"] and code in voucher["body"]
    assert voucher["url"].endswith(f"/wallet/vouchers/{code}")
    assert voucher["event"] == "campaign.outcome"
    deliveries = push_deliveries(client, world.a.merchant_key, member["id"])
    assert {d["status"] for d in deliveries} == {"delivered"}
    assert voucher["tag"] in {d["id"] for d in deliveries}
    for item in pushed:
        claims = vapid_claims(item, vapid.public_text)
        assert claims["aud"] == service.url.rsplit("/hooks", 1)[0]
        assert claims["sub"] == "mailto:ops@patron.example"
        assert time.time() < claims["exp"] <= time.time() + 24 * 3600
        assert item.headers["ttl"] == str(get_settings().push_ttl_seconds)
        assert item.headers["urgency"] == "normal"
    [seen] = subscriptions_of(client, world.a.merchant_key, member["id"])
    assert seen["last_delivered_at"] is not None


def test_a_tampered_payload_or_a_foreign_key_does_not_open_or_verify(
        client: TestClient, world: World, service: Receiver, deliverer: Deliverer,
        vapid: VapidKey) -> None:
    member = enrol(client, world.a.merchant_key, consents={"push": True})
    browser = Browser.new(service)
    register(client, world.a.merchant_key, member["id"], browser.subscription())
    deliverer.run_once()
    [pushed] = service.received
    assert browser.read(pushed)["event"] == "member.enrolled"
    tampered = Received(pushed.path, pushed.headers, pushed.body[:-1] + bytes(
        [pushed.body[-1] ^ 1]))
    with pytest.raises(http_ece.ECEException, match="InvalidTag"):
        browser.read(tampered)
    stranger = Browser(ec.generate_private_key(ec.SECP256R1()), browser.auth, browser.endpoint)
    with pytest.raises(http_ece.ECEException, match="InvalidTag"):
        stranger.read(pushed)
    other = VapidKey.generate()
    with pytest.raises(AssertionError):
        vapid_claims(pushed, other.public_text)
    forged = Received(pushed.path, {**pushed.headers, "authorization": pushed.headers[
        "authorization"].replace(vapid.public_text, other.public_text)}, pushed.body)
    with pytest.raises(InvalidSignature):
        vapid_claims(forged, other.public_text)


def test_one_message_goes_to_each_browser_as_one_delivery(
        client: TestClient, world: World, service: Receiver, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, consents={"push": True})
    phone, laptop = Browser.new(service), Browser.new(service)
    for browser in (phone, laptop):
        register(client, world.a.merchant_key, member["id"], browser.subscription())
    deliverer.run_once()
    by_path = {item.path: item for item in service.received}
    assert len(by_path) == 2
    read = [browser.read(by_path[urlsplit(browser.endpoint).path])
            for browser in (phone, laptop)]
    [delivery] = push_deliveries(client, world.a.merchant_key, member["id"])
    assert {message["tag"] for message in read} == {delivery["id"]}
    assert delivery["status"] == "delivered"


def test_a_gone_subscription_is_kept_as_gone_and_no_longer_pushed_to(
        client: TestClient, world: World, service: Receiver, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, consents={"push": True})
    browser = Browser.new(service)
    register(client, world.a.merchant_key, member["id"], browser.subscription())
    service.answer(410)
    deliverer.run_once()
    [delivery] = push_deliveries(client, world.a.merchant_key, member["id"])
    assert (delivery["status"], delivery["reason"]) == (
        "failed", "every push subscription is gone")
    [subscription] = subscriptions_of(client, world.a.merchant_key, member["id"])
    assert subscription["gone_at"] is not None
    # The next message finds no browser: no push delivery is made for it.
    checkout(client, world, member, "R-2")
    deliverer.run_once()
    assert len(push_deliveries(client, world.a.merchant_key, member["id"])) == 1
    assert len(service.received) == 1
    # Subscribing again (the browser made a new one at the same address) revives it.
    again = register(client, world.a.merchant_key, member["id"], browser.subscription(),
                     status=200)
    assert again["gone_at"] is None and again["id"] == subscription["id"]


def test_a_push_service_that_is_busy_is_tried_again_and_a_refusal_is_final(
        client: TestClient, world: World, service: Receiver, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, consents={"push": True})
    register(client, world.a.merchant_key, member["id"], Browser.new(service).subscription())
    service.answer(429, headers={"retry-after": "30"})
    service.answer(413)
    deliverer.run_once()
    [delivery] = push_deliveries(client, world.a.merchant_key, member["id"])
    assert (delivery["status"], delivery["attempts"][0]["status_code"]) == ("pending", 429)
    assert delivery["next_attempt_at"] >= (utcnow() + timedelta(seconds=29)).isoformat()
    clock.freeze(utcnow() + timedelta(seconds=31))
    deliverer.run_once()
    [delivery] = push_deliveries(client, world.a.merchant_key, member["id"])
    assert delivery["status"] == "failed"
    assert [a["status_code"] for a in delivery["attempts"]] == [429, 413]


def test_without_push_consent_at_that_merchant_nothing_is_pushed(
        client: TestClient, world: World, service: Receiver, deliverer: Deliverer) -> None:
    member = enrol(client, world.a.merchant_key, consents={"email": True})
    register(client, world.a.merchant_key, member["id"], Browser.new(service).subscription())
    deliverer.run_once()
    assert service.received == []
    assert {(d["status"], d["reason"]) for d in push_deliveries(
        client, world.a.merchant_key, member["id"])} == {("suppressed", "no_marketing_consent")}


def rows(database: Database, table: str) -> int:
    from sqlalchemy import text

    with database.session_scope() as session:
        return int(session.scalar(text(f"SELECT count(*) FROM {table}")) or 0)


@pytest.mark.parametrize(("change", "field"), [
    ({"keys": {"p256dh": b64url(b"\x04" + bytes(64)), "auth": b64url(bytes(16))}},
     "keys.p256dh"),
    ({"keys": {"p256dh": b64url(b"\x05" + bytes(64)), "auth": b64url(bytes(16))}},
     "keys.p256dh"),
    ("short-auth", "keys.auth"),
    ({"expirationTime": 1_000}, "expirationTime"),
])
def test_a_subscription_that_cannot_be_used_is_refused_and_nothing_is_stored(
        client: TestClient, world: World, database: Database, service: Receiver,
        change: Any, field: str) -> None:
    member = enrol(client, world.a.merchant_key)
    body = Browser.new(service).subscription()
    if change == "short-auth":
        body["keys"]["auth"] = b64url(bytes(8))
    else:
        body.update(change)
    before = rows(database, "push_subscriptions")
    response = client.post(f"/v1/members/{member['id']}/push-subscriptions",
                           headers=auth(world.a.merchant_key), json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "invalid_push_subscription"
    assert problem["field"] == field
    assert rows(database, "push_subscriptions") == before


def test_a_private_push_endpoint_is_refused_unless_private_targets_are_allowed(
        client: TestClient, world: World, service: Receiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    member = enrol(client, world.a.merchant_key)
    monkeypatch.setenv("PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")
    get_settings.cache_clear()
    try:
        for endpoint in ("http://push.example/x", "https://127.0.0.1/x",
                         "https://10.0.0.8/push/x", "https://localhost/x"):
            body = {**Browser.new(service).subscription(), "endpoint": endpoint}
            response = client.post(f"/v1/members/{member['id']}/push-subscriptions",
                                   headers=auth(world.a.merchant_key), json=body)
            assert response.status_code == 422, (endpoint, response.text)
            assert response.json()["field"] == "endpoint"
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_a_member_keeps_at_most_ten_live_subscriptions(
        client: TestClient, world: World, service: Receiver) -> None:
    member = enrol(client, world.a.merchant_key)
    made = [register(client, world.a.merchant_key, member["id"],
                     Browser.new(service).subscription()) for _ in range(11)]
    seen = {item["id"]: item for item in subscriptions_of(client, world.a.merchant_key,
                                                          member["id"])}
    assert [item["id"] for item in made if seen[item["id"]]["gone_at"] is not None] == [
        made[0]["id"]]


def test_who_may_register_read_and_revoke_subscriptions(
        client: TestClient, world: World, service: Receiver) -> None:
    member = enrol(client, world.a.merchant_key, pin="4321")
    body = Browser.new(service).subscription()
    url = f"/v1/members/{member['id']}/push-subscriptions"
    # Another merchant without a membership may not know the member exists.
    for key in (world.b.merchant_key, world.b.pos_key):
        assert client.post(url, headers=auth(key), json=body).status_code == 404
        assert client.get(url, headers=auth(key)).status_code == 404
    # A till of the enrolling merchant needs the member's proof.
    refused = client.post(url, headers=auth(world.a.pos_key), json=body)
    assert refused.status_code == 403, refused.text
    made = register(client, world.a.pos_key, member["id"], {**body, "proof": {"pin": "4321"}})
    assert [item["id"] for item in subscriptions_of(client, world.a.pos_key,
                                                    member["id"])] == [made["id"]]
    revoke = f"{url}/{made['id']}/revoke"
    assert client.post(revoke, headers=auth(world.a.pos_key), json={}).status_code == 403
    assert client.post(revoke, headers=auth(world.b.merchant_key), json={}).status_code == 404
    missing = client.post(f"{url}/{uuid.uuid4()}/revoke", headers=auth(world.a.merchant_key),
                          json={})
    assert missing.status_code == 404
    done = client.post(revoke, headers=auth(world.a.merchant_key), json={})
    assert done.status_code == 200 and done.json()["gone_at"] is not None
    operator = client.post(revoke, headers=auth(world.operator_key), json={})
    assert operator.status_code == 200


def test_the_vapid_key_is_404_when_this_deployment_sends_no_push(
        client: TestClient, world: World) -> None:
    response = client.get("/v1/push/vapid-key", headers=auth(world.a.merchant_key))
    assert response.status_code == 404
    assert response.json()["code"] == "push_not_configured"
    assert client.get("/v1/push/vapid-key").status_code == 401


def test_erasing_the_member_forgets_their_browsers(
        client: TestClient, world: World, service: Receiver, database: Database) -> None:
    member = enrol(client, world.a.merchant_key, consents={"push": True})
    register(client, world.a.merchant_key, member["id"], Browser.new(service).subscription())
    erased = client.post(f"/v1/members/{member['id']}/erase", headers=auth(world.a.merchant_key))
    assert erased.status_code == 200, erased.text
    assert subscriptions_of(client, world.a.merchant_key, member["id"]) == []
    from sqlalchemy import select

    from patron.notify.models import PushSubscription
    with database.session_scope() as session:
        assert session.scalars(select(PushSubscription).where(
            PushSubscription.member_id == uuid.UUID(member["id"]))).all() == []
