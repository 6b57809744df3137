"""Who may do what to a member: every member endpoint against every relation a key can
stand in to the member (docs/tenancy.md, "Who may").

The member enrolled at merchant A (the data controller, with the operator); merchant B has
a membership of the member gained by a sale at its till; merchant C has nothing to do with
the member. Each of them calls with its merchant key, its POS key and its reader key; so
does the operator and a sales representative. A refused call leaves the database exactly as
it was. The endpoints come from the app's OpenAPI document: a new member endpoint fails
``test_every_member_endpoint_has_its_rule_here`` until its rule is written below.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.db import Database
from tests.api.operations import PUSH_SUBSCRIPTION, all_operations
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import Tenant, World, auth, make_tenant

PIN = "1357"
READ, EXPORT, CREDENTIAL, CHANGE, END, UNLOCK = ("read", "export", "credential", "change",
                                               "end", "unlock")

# What each relation gets for each kind of action, without the member's proof. "ok" is the
# endpoint's success status; a number is the refusal's status. Written out here, apart from
# the code's own table, so that a change to either shows.
_COLUMNS = (READ, EXPORT, CREDENTIAL, CHANGE, END, UNLOCK)
_ROWS: dict[str, tuple[str | int, ...]] = {
    #                   read  export credential change end  unlock
    "operator":        ("ok", "ok", "ok", "ok", "ok", "ok"),
    "home_merchant":   ("ok", "ok", "ok", "ok", "ok", "ok"),
    "home_pos":        ("ok", 403, 403, 403, 403, 403),
    "home_reader":     ("ok", 403, 403, 403, 403, 403),
    "member_merchant": ("ok", 403, 403, 403, 403, 403),
    "member_pos":      ("ok", 403, 403, 403, 403, 403),
    "member_reader":   ("ok", 403, 403, 403, 403, 403),
    "stranger":        (404, 404, 404, 404, 404, 404),
    "stranger_pos":    (404, 404, 404, 404, 404, 404),
    "stranger_reader": (404, 404, 404, 404, 404, 404),
    "sales_rep":       (403, 403, 403, 403, 403, 403),
}
EXPECTED = {name: dict(zip(_COLUMNS, row, strict=True)) for name, row in _ROWS.items()}
# With the member present proving it (their PIN), a till may change what identifies them;
# another merchant's staff still may not.
WITH_PROOF = {"home_pos", "home_reader", "member_pos", "member_reader"}

_numbers = itertools.count(1)


@dataclass
class Fixture:
    client: TestClient
    database: Database
    world: World
    c: Tenant
    sales_rep_key: str

    def key(self, principal: str) -> str:
        a, b, c = self.world.a, self.world.b, self.c
        return {"operator": self.world.operator_key, "home_merchant": a.merchant_key,
                "home_pos": a.pos_key, "home_reader": a.reader_key,
                "member_merchant": b.merchant_key, "member_pos": b.pos_key,
                "member_reader": b.reader_key, "stranger": c.merchant_key,
                "stranger_pos": c.pos_key, "stranger_reader": c.reader_key,
                "sales_rep": self.sales_rep_key}[principal]

    def member(self, endpoint: Endpoint | None = None) -> dict[str, Any]:
        """A new member of A with a phone, an e-mail, a card and a PIN, who bought at B (and
        a browser's push subscription, if the endpoint names one)."""
        n = next(_numbers)
        enrolled = self.client.post("/v1/members", headers=auth(self.world.a.merchant_key),
                                    json={"phone": f"+81 90-{1000 + n}-5678",
                                          "email": f"member{n}@example.com",
                                          "card_uid": f"04AA{n:06X}", "pin": PIN})
        assert enrolled.status_code == 201, enrolled.text
        member = enrolled.json()
        sale = self.client.post("/v1/pos/transactions", headers=auth(self.world.b.pos_key),
                                json={"receipt_no": f"B-{n}",
                                      "occurred_at": "2026-12-01T10:00:00+00:00",
                                      "currency": "USD",
                                      "member": {"barcode": member["member_number"]},
                                      "lines": [{"sku": "X", "name": "Nothing",
                                                 "quantity": 1, "unit_price": 0}],
                                      "channel": "store"})
        assert sale.status_code == 201, sale.text
        cards = self.client.get(f"/v1/members/{member['id']}/cards",
                                headers=auth(self.world.a.merchant_key))
        member["card_id"] = cards.json()["items"][0]["id"]
        if "{subscription_id}" in (endpoint.path if endpoint else ""):
            subscription = self.client.post(f"/v1/members/{member['id']}/push-subscriptions",
                                            headers=auth(self.world.a.merchant_key),
                                            json=PUSH_SUBSCRIPTION)
            assert subscription.status_code == 201, subscription.text
            member["subscription_id"] = subscription.json()["id"]
        return member


@pytest.fixture
def fx(client: TestClient, database: Database, world: World) -> Fixture:
    from patron.tenancy.models import Role
    from patron.tenancy.service import issue_key

    c = make_tenant(client, world.operator_key, number=33333, country="KR", currency="KRW",
                    timezone="Asia/Seoul")
    with database.session_scope() as session:
        _, rep_key = issue_key(session, role=Role.sales_rep, label="rep")
    return Fixture(client=client, database=database, world=world, c=c, sales_rep_key=rep_key)


def _uid() -> str:
    return f"04BB{next(_numbers):06X}"


Body = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    action: str
    success: int = 200
    body: Body = lambda member: None


ENDPOINTS = [
    Endpoint("GET", "/v1/members/{member_id}", READ),
    Endpoint("GET", "/v1/members/{member_id}/balances", READ),
    Endpoint("GET", "/v1/members/{member_id}/ledger", READ),
    Endpoint("GET", "/v1/members/{member_id}/vouchers", READ),
    Endpoint("GET", "/v1/members/{member_id}/scores", READ),
    Endpoint("GET", "/v1/members/{member_id}/referral", READ),
    Endpoint("GET", "/v1/members/{member_id}/benefit-progress", READ),
    Endpoint("GET", "/v1/members/{member_id}/consents", READ),
    Endpoint("GET", "/v1/members/{member_id}/cards", READ),
    Endpoint("GET", "/v1/members/{member_id}/quiet-hours", READ),
    Endpoint("GET", "/v1/members/{member_id}/barcode.svg", READ),
    Endpoint("GET", "/v1/members/{member_id}/barcode.png", READ),
    Endpoint("POST", "/v1/members/{member_id}/verification-codes", READ, 201,
             lambda member: {"channel": "sms"}),
    Endpoint("GET", "/v1/members/{member_id}/qr-token", CREDENTIAL),
    Endpoint("GET", "/v1/members/{member_id}/qr.svg", CREDENTIAL),
    Endpoint("GET", "/v1/members/{member_id}/qr.png", CREDENTIAL),
    Endpoint("GET", "/v1/members/{member_id}/export", EXPORT),
    Endpoint("PATCH", "/v1/members/{member_id}", CHANGE, 200,
             lambda member: {"phone": f"+81 80-{2000 + next(_numbers)}-4321"}),
    Endpoint("POST", "/v1/members/{member_id}/consents", CHANGE, 200,
             lambda member: {"sms": True, "email": True, "source": "pos"}),
    Endpoint("PUT", "/v1/members/{member_id}/pin", CHANGE, 200, lambda member: {"pin": "2468"}),
    Endpoint("PUT", "/v1/members/{member_id}/quiet-hours", CHANGE, 200,
             lambda member: {"start": "22:00", "end": "07:30", "timezone": "Asia/Tokyo"}),
    Endpoint("POST", "/v1/members/{member_id}/cards", CHANGE, 201,
             lambda member: {"uid": _uid()}),
    Endpoint("POST", "/v1/members/{member_id}/cards/{card_id}/block", CHANGE, 200,
             lambda member: {"reason": "lost"}),
    Endpoint("POST", "/v1/members/{member_id}/cards/{card_id}/replace", CHANGE, 201,
             lambda member: {"uid": _uid(), "reason": "stolen"}),
    Endpoint("GET", "/v1/members/{member_id}/push-subscriptions", READ),
    Endpoint("POST", "/v1/members/{member_id}/push-subscriptions", CHANGE, 201,
             lambda member: {**PUSH_SUBSCRIPTION,
                             "endpoint": f"https://push.example.net/send/{next(_numbers)}"}),
    Endpoint("POST", "/v1/members/{member_id}/push-subscriptions/{subscription_id}/revoke",
             CHANGE, 200, lambda member: {}),
    Endpoint("POST", "/v1/members/{member_id}/pin/unlock", UNLOCK),
    Endpoint("POST", "/v1/members/{member_id}/withdraw", END),
    Endpoint("POST", "/v1/members/{member_id}/erase", END),
]


def test_every_member_endpoint_has_its_rule_here() -> None:
    in_schema = {(op.method, op.path) for op in all_operations() if "{member_id}" in op.path}
    assert in_schema == {(e.method, e.path) for e in ENDPOINTS}


def _call(fx: Fixture, endpoint: Endpoint, principal: str, member: dict[str, Any],
          proof: dict[str, Any] | None = None) -> Any:
    url = endpoint.path.format(member_id=member["id"], card_id=member["card_id"],
                               subscription_id=member.get("subscription_id"))
    body = endpoint.body(member)
    if proof is not None:
        body = {**(body or {}), "proof": proof}
    return fx.client.request(endpoint.method, url, headers=auth(fx.key(principal)),
                             json=body)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_who_may_use_each_member_endpoint(fx: Fixture, endpoint: Endpoint) -> None:
    for principal, expected in EXPECTED.items():
        member = fx.member(endpoint)
        before = snapshot(fx.database)
        response = _call(fx, endpoint, principal, member)
        want = endpoint.success if expected[endpoint.action] == "ok" \
            else expected[endpoint.action]
        assert response.status_code == want, (principal, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json"
            assert changed_tables(before, snapshot(fx.database)) == [], principal
            # Neither the refusal nor its wording tells a stranger the member exists.
            if want == 404:
                assert response.json()["code"] == "not_found"


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.action == CHANGE],
                         ids=lambda e: f"{e.method} {e.path}")
def test_a_till_changes_the_member_only_with_the_member_proving_it(
        fx: Fixture, endpoint: Endpoint) -> None:
    for principal in ("home_pos", "home_reader", "member_pos", "member_reader",
                      "member_merchant", "stranger_pos"):
        member = fx.member(endpoint)
        before = snapshot(fx.database)
        response = _call(fx, endpoint, principal, member, proof={"pin": PIN})
        if principal in WITH_PROOF:
            assert response.status_code == endpoint.success, (principal, response.text)
        else:
            assert response.status_code in (403, 404), (principal, response.text)
            assert changed_tables(before, snapshot(fx.database)) == [], principal
