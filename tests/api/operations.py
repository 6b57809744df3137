"""The API's operations, read from the app's own OpenAPI document, and what it takes to call
each one: real path ids, the key that may call it, and a body it accepts."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.sinks import webhook_receiver
from starlette.testclient import TestClient

from patron.app import create_app
from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import utcnow
from patron.notify.worker import Deliverer
from patron.vouchers.codes import display, generate_code
from tests.conftest import Tenant, World, auth
from tests.template import restored

WRITE_METHODS = ("post", "put", "patch")
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
TELEPHONY = ("POST", "/v1/telephony/inbound")
# The SMS provider's webhook (STOP replies): signed like the telephony one, not keyed.
SMS_INBOUND = ("POST", "/v1/sms/inbound")
SIGNED_WEBHOOKS = (TELEPHONY, SMS_INBOUND)


def _openapi_document() -> dict[str, Any]:
    # The document does not depend on the database; this app never opens a connection.
    app = create_app(get_settings(), Database("sqlite:///:memory:"))
    with TestClient(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


OPENAPI = _openapi_document()


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    path: str
    spec: dict[str, Any]

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def path_params(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", []) if p["in"] == "path"]

    @property
    def required_query(self) -> list[str]:
        return [p["name"] for p in self.spec.get("parameters", [])
                if p["in"] == "query" and p.get("required")]

    @property
    def body_media_type(self) -> str | None:
        content = self.spec.get("requestBody", {}).get("content", {})
        return next(iter(content), None)

    @property
    def takes_json(self) -> bool:
        return self.body_media_type == "application/json"

    @property
    def body_schema(self) -> dict[str, Any]:
        schema = self.spec["requestBody"]["content"][self.body_media_type]["schema"]
        return resolve(schema)

    @property
    def success_status(self) -> int:
        return next(int(code) for code in self.spec["responses"] if code.startswith("2"))


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = OPENAPI["components"]["schemas"][name]
    return schema


def all_operations() -> list[Operation]:
    return [Operation(method.upper(), path, spec)
            for path, methods in OPENAPI["paths"].items()
            for method, spec in methods.items()]


def write_operations() -> list[Operation]:
    return [op for op in all_operations() if op.method.lower() in WRITE_METHODS]


# A value for each required query parameter (a lookup that may find nothing).
QUERY_VALUES = {"external_ref": "PREVIOUS-1", "period": "2026-11"}


# --- the objects the requests point at -------------------------------------------------------

@dataclass
class Objects:
    """One tenant's objects, by the path parameter names that point at them."""

    tenant: Tenant
    member_id: str
    member_number: str
    card_id: str
    key_id: str
    wait_id: str | None
    transaction_id: str
    offer_id: str
    code: str
    reservation_id: str
    batch_id: str
    exception_id: str
    rule_id: str
    campaign_id: str
    endpoint_id: str
    delivery_id: str
    message_id: str
    subscription_id: str

    def path_ids(self) -> dict[str, str]:
        ids = {"merchant_id": self.tenant.merchant_id, "store_id": self.tenant.store_id,
               # The reader, not the POS terminal: the POS key must keep working.
               "terminal_id": self.tenant.reader_id, "member_id": self.member_id,
               "card_id": self.card_id, "key_id": self.key_id,
               "transaction_id": self.transaction_id, "offer_id": self.offer_id,
               "code": self.code, "reservation_id": self.reservation_id,
               "exception_id": self.exception_id, "rule_id": self.rule_id,
               "batch_id": self.batch_id, "campaign_id": self.campaign_id,
               "endpoint_id": self.endpoint_id, "delivery_id": self.delivery_id,
               "message_id": self.message_id, "subscription_id": self.subscription_id}
        if self.wait_id is not None:
            ids["wait_id"] = self.wait_id
        return ids

    def url(self, op: Operation) -> str:
        path = op.path.format(**{name: self.path_ids()[name] for name in op.path_params})
        query = "&".join(f"{name}={QUERY_VALUES[name]}" for name in op.required_query)
        return f"{path}?{query}" if query else path


def make_objects(client: TestClient, database: Database, world: World, tenant: Tenant, *,
                 phone: str, card_uid: str, caller_id_wait: bool) -> Objects:
    """A member with a card, a spare merchant key and (if asked) a caller-ID wait, ...,
    a webhook endpoint and a delivery of the member's enrolment to it."""
    with webhook_receiver() as receiver:
        # One event type: one delivery to point at, not one per event of the set-up
        # (every test restores these rows).
        endpoint = client.post("/v1/webhook-endpoints", headers=auth(tenant.merchant_key),
                               json={"url": receiver.url, "events": ["member.enrolled"]})
        assert endpoint.status_code == 201, endpoint.text
        objects = _make_objects(client, world, tenant, phone=phone, card_uid=card_uid,
                                caller_id_wait=caller_id_wait,
                                endpoint_id=endpoint.json()["id"])
        # Its deliveries made and sent, so that one can be replayed.
        deliverer = Deliverer(database, get_settings())
        try:
            deliverer.run_once()
        finally:
            deliverer.close()
        assert receiver.received
    delivery = client.get(f"/v1/webhook-endpoints/{objects.endpoint_id}/deliveries",
                          headers=auth(tenant.merchant_key))
    assert delivery.status_code == 200, delivery.text
    assert delivery.json()["deliveries"][-1]["status"] == "delivered", delivery.text
    objects.delivery_id = delivery.json()["deliveries"][-1]["id"]
    return objects


def _make_objects(client: TestClient, world: World, tenant: Tenant, *, phone: str,
                  card_uid: str, caller_id_wait: bool, endpoint_id: str) -> Objects:
    member = client.post("/v1/members", headers=auth(tenant.merchant_key),
                         json={"phone": phone, "card_uid": card_uid})
    assert member.status_code == 201, member.text
    member_id = member.json()["id"]
    cards = client.get(f"/v1/members/{member_id}/cards", headers=auth(tenant.merchant_key))
    assert cards.status_code == 200 and len(cards.json()["items"]) == 1, cards.text
    key = client.post("/v1/keys", headers=auth(world.operator_key),
                      json={"role": "merchant", "merchant_id": tenant.merchant_id,
                            "label": "spare"})
    assert key.status_code == 201, key.text
    wait_id = None
    if caller_id_wait:
        wait = client.post("/v1/identify/caller-id", headers=auth(tenant.pos_key))
        assert wait.status_code == 201, wait.text
        wait_id = wait.json()["id"]
    transaction = client.post("/v1/pos/transactions", headers=auth(tenant.pos_key),
                              json=_purchase(tenant, "OBJ-1", member.json()["member_number"]))
    assert transaction.status_code == 201, transaction.text
    offer = client.post("/v1/offers", headers=auth(tenant.merchant_key),
                        json={"name": "100 off", "kind": "amount_off", "value": 100})
    assert offer.status_code == 201, offer.text
    codes = client.post(f"/v1/offers/{offer.json()['id']}/codes",
                        headers=auth(tenant.merchant_key),
                        json={"count": 1, "max_redemptions": 100})
    assert codes.status_code == 201, codes.text
    [code] = codes.json()["codes"]
    hold = client.post(f"/v1/vouchers/{code}/reserve", headers=auth(tenant.pos_key), json={})
    assert hold.status_code == 201, hold.text
    # A batch job (not run: the tests' server starts no batch threads).
    code_batch = client.post(f"/v1/offers/{offer.json()['id']}/codes",
                             headers=auth(tenant.merchant_key), json={"count": 1001})
    assert code_batch.status_code == 202, code_batch.text
    # An offline exception: a queue entry burning points without an allowance (refused).
    forged = _purchase(tenant, "OFF-1", member.json()["member_number"])
    batch = client.post("/v1/pos/offline/batches", headers=auth(tenant.pos_key), json={
        "entries": [{"seq": 1, "queued_at": utcnow().isoformat(),
                     "transaction": {**forged, "points_to_burn": 100}}]})
    assert batch.status_code == 200, batch.text
    [exception_id] = batch.json()["results"][0]["exceptions"]
    rule = client.post("/v1/benefit-rules", headers=auth(tenant.merchant_key), json={
        "name": "Big spender", "measure": "points", "mode": "once", "threshold": 1000,
        "offer_id": offer.json()["id"]})
    assert rule.status_code == 201, rule.text
    campaign = client.post("/v1/campaigns", headers=auth(tenant.merchant_key), json={
        "name": "Coffee bonus", "trigger": "checkout",
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "bonus_points", "points": 10}]})
    assert campaign.status_code == 201, campaign.text
    message = client.post("/v1/messages", headers=auth(tenant.merchant_key), json={
        "audience": {"conditions": {"all": []}}, "channel": "sms", "text": "Hello"})
    assert message.status_code == 201, message.text
    subscription = client.post(f"/v1/members/{member_id}/push-subscriptions",
                               headers=auth(tenant.merchant_key), json=PUSH_SUBSCRIPTION)
    assert subscription.status_code == 201, subscription.text
    return Objects(tenant=tenant, member_id=member_id,
                   member_number=member.json()["member_number"],
                   card_id=cards.json()["items"][0]["id"], key_id=key.json()["id"], wait_id=wait_id,
                   transaction_id=transaction.json()["id"], offer_id=offer.json()["id"],
                   code=code, reservation_id=hold.json()["id"],
                   batch_id=code_batch.json()["batch_id"], exception_id=exception_id,
                   rule_id=rule.json()["id"], campaign_id=campaign.json()["id"],
                   endpoint_id=endpoint_id, delivery_id="", message_id=message.json()["id"],
                   subscription_id=subscription.json()["id"])


# A browser's push subscription (RFC 8291's example key and auth secret).
PUSH_SUBSCRIPTION: dict[str, Any] = {
    "endpoint": "https://push.example.net/send/objects", "expirationTime": None,
    "keys": {"p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZ"
                       "GH6SRpkNtoIAiw4", "auth": "BTBZMqHH6r4Tts7J_aSIgg"}}


# Each tenant's member's phone and card, and whether the objects include a caller-ID wait.
A_OBJECTS: dict[str, Any] = {"phone": "+81 90-1234-5678", "card_uid": "04A2246AB35C80",
                             "caller_id_wait": True}
B_OBJECTS: dict[str, Any] = {"phone": "+1 212-555-0100", "card_uid": "04B3357BC46D91",
                             "caller_id_wait": False}


def objects_of(client: TestClient, database: Database, world: World, tenant: Tenant, *,
               beneath: Sequence[Objects] = ()) -> Objects:
    """``make_objects`` for the tenant (A's or B's phone and card), built once per process
    on ``world`` and the objects ``beneath`` it, and restored from its rows afterwards
    (``tests.template``)."""
    kind = A_OBJECTS if tenant is world.a else B_OBJECTS
    name = " ".join(["objects", *(o.tenant.merchant_id for o in beneath), tenant.merchant_id])
    return restored(database, name, lambda: make_objects(client, database, world, tenant, **kind))


def unknown_path_id(name: str) -> str:
    """An id of the right form that names nothing (for a code: a well-formed code)."""
    if name == "code":
        return display(generate_code())
    return str(uuid.uuid4())


def _purchase(tenant: Tenant, receipt_no: str, member_number: str) -> dict[str, Any]:
    """A purchase by the tenant's member at its POS, in the tenant's currency."""
    currency = "JPY" if tenant.number == 12345 else "USD"
    return {"receipt_no": receipt_no, "occurred_at": utcnow().isoformat(),
            "currency": currency, "member": {"barcode": member_number},
            "lines": [{"sku": "CF-1", "gtin": "4006381333931", "name": "Coffee",
                       "category": "coffee", "quantity": 2, "unit_price": 350}],
            "points_to_burn": 0, "channel": "store",
            "payment": {"method": "card", "amount": 700}}


# --- who calls, and with what -------------------------------------------------------------------

# The role whose key performs each write; everything else is done with the merchant's key.
CALLER_ROLE: dict[tuple[str, str], str] = {
    ("POST", "/v1/merchants"): "operator",
    ("POST", "/v1/identify"): "terminal",
    ("POST", "/v1/identify/caller-id"): "terminal",
    ("POST", "/v1/pos/quote"): "terminal",
    ("POST", "/v1/pos/transactions"): "terminal",
    ("POST", "/v1/pos/events"): "terminal",
    ("POST", "/v1/pos/taps"): "reader",
    ("POST", "/v1/pos/transactions/{transaction_id}/returns"): "terminal",
    ("PUT", "/v1/coalition/rates"): "operator",
    ("POST", "/v1/vouchers/validate"): "terminal",
    ("POST", "/v1/vouchers/{code}/reserve"): "terminal",
    ("POST", "/v1/vouchers/{code}/redeem"): "terminal",
    ("POST", "/v1/vouchers/reservations/{reservation_id}/release"): "terminal",
    ("POST", "/v1/pos/offline/allowances"): "terminal",
    ("POST", "/v1/pos/offline/batches"): "terminal",
}


def caller_key(op: Operation, world: World, tenant: Tenant) -> str:
    role = CALLER_ROLE.get(op.key, "merchant")
    if role == "reader":
        return tenant.reader_key
    return {"operator": world.operator_key, "merchant": tenant.merchant_key,
            "terminal": tenant.pos_key}[role]


Body = Callable[[Objects], dict[str, Any]]

# A body each JSON write accepts (tests/api/test_bad_input.py proves it), so that a variant
# of it differs from an accepted request in exactly one way.
VALID_BODIES: dict[tuple[str, str], Body] = {
    ("POST", "/v1/merchants"): lambda o: {
        "number": 77777, "name": "Seventh merchant", "currency": "EUR",
        "timezone": "Europe/Paris", "country": "FR"},
    ("POST", "/v1/merchants/{merchant_id}/stores"): lambda o: {
        "code": "second", "name": "Second store", "address": "1-2-3 Ginza"},
    ("PATCH", "/v1/stores/{store_id}"): lambda o: {"receipt": {
        "facility_info": "Open 10:00-22:00", "questionnaire_url": "https://example.jp/q"}},
    ("POST", "/v1/stores/{store_id}/terminals"): lambda o: {"code": "pos-2", "kind": "pos"},
    ("PATCH", "/v1/terminals/{terminal_id}"): lambda o: {"points_per_tap": 7},
    ("POST", "/v1/keys"): lambda o: {"role": "terminal", "terminal_id": o.tenant.reader_id,
                                     "label": "reader spare"},
    ("POST", "/v1/members"): lambda o: {"phone": "+81 90-2222-3333",
                                        "email": "new.member@example.com",
                                        "card_uid": "04C4468CD57EA2"},
    ("PATCH", "/v1/members/{member_id}"): lambda o: {"region": "Kanto", "birth_year": 1990},
    ("POST", "/v1/members/{member_id}/consents"): lambda o: {"sms": True, "source": "pos"},
    ("PUT", "/v1/members/{member_id}/pin"): lambda o: {"pin": "2468"},
    ("POST", "/v1/members/{member_id}/verification-codes"): lambda o: {"channel": "sms"},
    ("POST", "/v1/identify"): lambda o: {"barcode": o.member_number},
    ("POST", "/v1/members/{member_id}/cards"): lambda o: {"uid": "04D5579DE68FB3"},
    ("POST", "/v1/members/{member_id}/cards/{card_id}/block"): lambda o: {"reason": "lost"},
    ("POST", "/v1/members/{member_id}/cards/{card_id}/replace"): lambda o: {
        "uid": "04E668AEF790C4", "reason": "stolen"},
    ("PUT", "/v1/merchants/{merchant_id}/program"): lambda o: {
        "earn_points": 1, "earn_per_amount": 100, "point_value_minor": 1, "expiry_months": 12,
        "tiers": [{"name": "Base", "threshold_points": 0, "earn_multiplier_bp": 10000},
                  {"name": "Gold", "threshold_points": 1000, "earn_multiplier_bp": 15000}]},
    ("PUT", "/v1/merchants/{merchant_id}/referral-program"): lambda o: {
        "referrer_points": 500, "referee_offer_id": o.offer_id, "min_purchase_minor": 1000,
        "monthly_cap": 5},
    ("POST", "/v1/pos/events"): lambda o: {"events": [
        {"type": "open", "occurred_at": utcnow().isoformat(), "seq": 1},
        {"type": "error", "occurred_at": utcnow().isoformat(), "detail": "E42"}]},
    ("POST", "/v1/pos/quote"): lambda o: _purchase(o.tenant, "Q-1", o.member_number),
    ("POST", "/v1/pos/transactions"): lambda o: _purchase(o.tenant, "R-1", o.member_number),
    # The card make_objects registered for tenant A (the suites' objects are A's).
    ("POST", "/v1/pos/taps"): lambda o: {"card_uid": "04A2246AB35C80", "tap_id": "t-1"},
    ("POST", "/v1/pos/transactions/{transaction_id}/returns"): lambda o: {
        "return_no": "RT-1", "occurred_at": utcnow().isoformat(),
        "lines": [{"line_no": 1, "quantity": 1}]},
    ("PUT", "/v1/coalition/rates"): lambda o: {"rates": [
        {"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000},
        {"currency": "USD", "spend_per_mile": 100, "mile_value_milli": 670}]},
    ("POST", "/v1/offers"): lambda o: {"name": "Ten percent off", "kind": "percent_off",
                                       "value": 10, "max_discount": 500, "min_spend": 1000},
    ("POST", "/v1/offers/{offer_id}/codes"): lambda o: {"count": 2, "max_redemptions": 3},
    ("POST", "/v1/vouchers/validate"): lambda o: {"code": o.code},
    ("POST", "/v1/vouchers/{code}/reserve"): lambda o: {"ttl_seconds": 60},
    ("POST", "/v1/vouchers/{code}/redeem"): lambda o: {"receipt_no": "D-1"},
    ("POST", "/v1/vouchers/{code}/revoke"): lambda o: {"reason": "printed by mistake"},
    ("POST", "/v1/pos/offline/allowances"): lambda o: {"member": {"barcode": o.member_number}},
    ("POST", "/v1/pos/offline/batches"): lambda o: {"entries": [{
        "seq": 1, "queued_at": utcnow().isoformat(), "allowance": None,
        "transaction": _purchase(o.tenant, "OFF-2", o.member_number),
        "provisional": {"points_earned": 14, "points_burned": 0,
                        "discounts": {"points": 0, "vouchers": {}, "miles": 0}}}]},
    ("POST", "/v1/offline/exceptions/{exception_id}/resolve"): lambda o: {
        "note": "the customer paid the difference"},
    ("POST", "/v1/benefit-rules"): lambda o: {
        "name": "10th coffee free", "measure": "purchases", "mode": "every", "threshold": 10,
        "offer_id": o.offer_id, "category": "coffee"},
    ("POST", "/v1/campaigns"): lambda o: {
        "name": "Rainy mornings", "trigger": "checkout",
        "conditions": {"all": [
            {"field": "env.weather", "op": "in", "value": ["rain", "drizzle"]},
            {"field": "env.hour", "op": "lt", "value": 11}]},
        "actions": [{"type": "issue_voucher", "offer_id": o.offer_id}],
        "per_member": {"count": 1, "period_days": 7}, "max_outcomes": 100,
        "control_share_bp": 1000},
    ("POST", "/v1/campaigns/{campaign_id}/simulate"): lambda o: {"days": 7},
    ("PUT", "/v1/stores/{store_id}/weather"): lambda o: {"condition": "rain",
                                                          "temperature_c": 9.5},
    ("PUT", "/v1/stores/{store_id}/inventory"): lambda o: {"items": [
        {"sku": "CR-1", "quantity": 40, "overstock": True}]},
    ("POST", "/v1/webhook-endpoints"): lambda o: {
        "url": "https://hooks.example.com/patron", "events": ["transaction.committed"],
        "description": "ERP"},
    ("PATCH", "/v1/webhook-endpoints/{endpoint_id}"): lambda o: {
        "events": ["member.enrolled", "tier.changed"], "description": "CRM"},
    ("PUT", "/v1/merchants/{merchant_id}/message-settings"): lambda o: {
        "sender_name": "Books", "reply_to": "desk@example.jp",
        "quiet_hours": {"start": "22:00", "end": "08:00"}, "weekly_cap": 3},
    ("PUT", "/v1/members/{member_id}/quiet-hours"): lambda o: {
        "start": "23:00", "end": "07:00", "timezone": "Asia/Tokyo"},
    ("PUT", "/v1/merchants/{merchant_id}/message-templates"): lambda o: {
        "event_type": "tier.changed", "channel": "sms", "language": "ja",
        "body": "{{ merchant }}: ランクが{{ tier }}になりました"},
    ("POST", "/v1/messages/preview"): lambda o: {
        "audience": {"conditions": {"field": "member.purchases", "op": "ge", "value": 1}},
        "channel": "email"},
    ("POST", "/v1/members/{member_id}/push-subscriptions"): lambda o: {
        **PUSH_SUBSCRIPTION, "endpoint": "https://push.example.net/send/another"},
    ("POST", "/v1/members/{member_id}/push-subscriptions/{subscription_id}/revoke"):
        lambda o: {},
    ("POST", "/v1/messages"): lambda o: {
        "audience": {"conditions": {"field": "member.purchases", "op": "ge", "value": 1}},
        "channel": "sms", "text": "Double points this weekend", "offer_id": o.offer_id},
}


def valid_body(op: Operation, objects: Objects) -> dict[str, Any] | None:
    """The accepted JSON body of a write, or None for one that takes no body."""
    if not op.takes_json:
        return None
    return VALID_BODIES[op.key](objects)


JSON_WRITES_BY_KEY: dict[tuple[str, str], Operation] = {
    op.key: op for op in write_operations() if op.takes_json}
