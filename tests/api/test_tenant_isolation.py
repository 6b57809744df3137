"""Tenant isolation: another merchant's keys get 404 for every object of merchant A, and
nothing changes. Plus the other refusals every operation shares: no key, a revoked or
unknown key (401) and a role that may not do the operation (403).

The operations come from the app's own OpenAPI document, so a new endpoint is tested here
as soon as it exists; one whose path names an object this module cannot create fails
``test_every_path_id_is_a_tenant_object_these_tests_create`` until it is added below.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.db import Database
from tests.api.operations import (
    SIGNED_WEBHOOKS,
    Objects,
    Operation,
    all_operations,
    objects_of,
    unknown_path_id,
    valid_body,
)
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
PATH_ID_NAMES = {"merchant_id", "store_id", "terminal_id", "key_id", "member_id", "card_id",
                 "wait_id", "transaction_id", "offer_id", "code", "reservation_id",
                 "exception_id", "rule_id", "batch_id", "campaign_id", "endpoint_id",
                 "delivery_id", "message_id", "subscription_id"}

V1 = [op for op in all_operations() if op.path.startswith("/v1/")]
KEYED = [op for op in V1 if op.key not in SIGNED_WEBHOOKS]  # webhooks are signed, not keyed
WITH_PATH_ID = [op for op in V1 if op.path_params]

# A terminal key may never revoke keys, whoever's: it is refused for its role before the
# key is looked up, the same for A's key as for one that does not exist (see below).
REFUSED_FOR_ROLE_FIRST = {(("POST", "/v1/keys/{key_id}/revoke"), "terminal"),
                          # Returns are a till's work: a merchant key is refused for its role,
                          # whoever's the purchase (the same answer for an unknown id).
                          (("POST", "/v1/pos/transactions/{transaction_id}/returns"),
                           "merchant"),
                          # So are holds and stand-alone redemptions of codes.
                          (("POST", "/v1/vouchers/{code}/reserve"), "merchant"),
                          (("POST", "/v1/vouchers/{code}/redeem"), "merchant"),
                          (("POST", "/v1/vouchers/reservations/{reservation_id}/release"),
                           "merchant"),
                          # The offline exceptions list is the merchant's, never a till's.
                          (("GET", "/v1/offline/exceptions/{exception_id}"), "terminal"),
                          (("POST", "/v1/offline/exceptions/{exception_id}/resolve"),
                           "terminal")}


@pytest.fixture
def a_objects(client: TestClient, database: Database, world: World) -> Objects:
    return objects_of(client, database, world, world.a)


@pytest.fixture
def b_objects(client: TestClient, database: Database, world: World,
              a_objects: Objects) -> Objects:
    """B's objects, made after A's (their layer rests on A's: ``tests.template``)."""
    return objects_of(client, database, world, world.b, beneath=[a_objects])


def foreign_key(world: World, role: str) -> str:
    return {"merchant": world.b.merchant_key, "terminal": world.b.pos_key}[role]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert (body["status"], body["code"]) == (status, code), body
    return body


def call(client: TestClient, op: Operation, url: str, objects: Objects,
         headers: dict[str, str]) -> Any:
    return client.request(op.method, url, json=valid_body(op, objects), headers=headers)


# --- another merchant's keys -----------------------------------------------------------------

FOREIGN_CASES = [pytest.param(op, role, id=f"{op.id} as B's {role} key")
                 for op in WITH_PATH_ID for role in ("merchant", "terminal")]


@pytest.mark.parametrize(("op", "role"), FOREIGN_CASES)
def test_another_merchants_key_gets_404_and_changes_nothing(
        client: TestClient, world: World, database: Database, a_objects: Objects,
        b_objects: Objects, op: Operation, role: str) -> None:
    key = foreign_key(world, role)
    before = snapshot(database)
    response = call(client, op, a_objects.url(op), a_objects, auth(key))
    if (op.key, role) in REFUSED_FOR_ROLE_FIRST:
        problem = assert_problem(response, 403, "forbidden")
    else:
        problem = assert_problem(response, 404, "not_found")
    assert changed_tables(before, snapshot(database)) == []

    # And the answer says nothing that an id which does not exist would not say.
    missing = {name: unknown_path_id(name) for name in op.path_params}
    unknown = call(client, op, op.path.format(**missing), a_objects, auth(key))
    assert (unknown.status_code, unknown.json()) == (response.status_code, problem)


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in WITH_PATH_ID
                                if op.path.startswith("/v1/members/{member_id}/cards/")])
def test_own_member_with_another_merchants_card_gets_404(
        client: TestClient, world: World, database: Database, a_objects: Objects,
        b_objects: Objects, op: Operation) -> None:
    url = op.path.format(member_id=b_objects.member_id, card_id=a_objects.card_id)
    before = snapshot(database)
    response = call(client, op, url, b_objects, auth(world.b.merchant_key))
    assert_problem(response, 404, "not_found")
    assert changed_tables(before, snapshot(database)) == []


def _keys_for_a_reader(o: Objects) -> dict[str, Any]:
    return {"role": "terminal", "terminal_id": o.tenant.reader_id}


def _merchant_key_for_a(o: Objects) -> dict[str, Any]:
    return {"role": "merchant", "merchant_id": o.tenant.merchant_id}


def _terminal_key_naming_a(o: Objects) -> dict[str, Any]:
    return {"role": "terminal", "merchant_id": o.tenant.merchant_id,
            "terminal_id": o.tenant.reader_id}


def _member_at_a(o: Objects) -> dict[str, Any]:
    return {"merchant_id": o.tenant.merchant_id, "phone": "+81 90-9999-0000"}


@pytest.mark.parametrize(("path", "role", "body"), [
    pytest.param("/v1/keys", "merchant", _keys_for_a_reader, id="key for A's terminal"),
    pytest.param("/v1/keys", "merchant", _merchant_key_for_a, id="merchant key for A"),
    pytest.param("/v1/keys", "merchant", _terminal_key_naming_a, id="key naming A, its terminal"),
    pytest.param("/v1/members", "merchant", _member_at_a, id="enrol at A as B's merchant"),
    pytest.param("/v1/members", "terminal", _member_at_a, id="enrol at A as B's terminal"),
])
def test_naming_another_merchants_object_in_the_body_gets_404(
        client: TestClient, world: World, database: Database, a_objects: Objects,
        path: str, role: str, body: Any) -> None:
    before = snapshot(database)
    response = client.post(path, json=body(a_objects), headers=auth(foreign_key(world, role)))
    assert_problem(response, 404, "not_found")
    assert changed_tables(before, snapshot(database)) == []


def test_lists_show_only_the_callers_own_tenant(client: TestClient, world: World,
                                                a_objects: Objects, b_objects: Objects) -> None:
    merchants = client.get("/v1/merchants", headers=auth(world.b.merchant_key))
    assert [m["id"] for m in merchants.json()["items"]] == [world.b.merchant_id]
    keys = client.get("/v1/keys", headers=auth(world.b.merchant_key))
    assert keys.status_code == 200
    assert {k["merchant_id"] for k in keys.json()["items"]} == {world.b.merchant_id}
    assert b_objects.key_id in {k["id"] for k in keys.json()["items"]}
    assert a_objects.key_id not in {k["id"] for k in keys.json()["items"]}


def test_every_path_id_is_a_tenant_object_these_tests_create() -> None:
    names = {name for op in WITH_PATH_ID for name in op.path_params}
    assert names <= PATH_ID_NAMES, f"add objects for {names - PATH_ID_NAMES} to make_objects"
    # Each operation with a path id is a case above, for both of B's keys.
    assert {(op.key, role) for op in WITH_PATH_ID for role in ("merchant", "terminal")} == {
        (param.values[0].key, param.values[1]) for param in FOREIGN_CASES}
    assert {op for op, _ in REFUSED_FOR_ROLE_FIRST} <= {op.key for op in WITH_PATH_ID}
    # Nothing outside /v1 but the health check (the docs pages are not in the schema).
    assert {op.path for op in all_operations() if not op.path.startswith("/v1/")} == {"/health"}


# --- no key, a revoked or unknown key ----------------------------------------------------------

@pytest.fixture
def revoked_key(client: TestClient, world: World) -> str:
    """A merchant key of A, revoked: until a moment ago it could do everything A's key can."""
    created = client.post("/v1/keys", headers=auth(world.operator_key),
                          json={"role": "merchant", "merchant_id": world.a.merchant_id})
    assert created.status_code == 201, created.text
    revoked = client.post(f"/v1/keys/{created.json()['id']}/revoke",
                          headers=auth(world.operator_key))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"], revoked.text
    key: str = created.json()["key"]
    return key


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in KEYED])
def test_without_a_valid_key_every_operation_gets_401_and_changes_nothing(
        client: TestClient, database: Database, a_objects: Objects, revoked_key: str,
        op: Operation) -> None:
    before = snapshot(database)
    for credentials in ({}, auth(revoked_key), auth("ptn_" + "a" * 32),
                        {"Authorization": f"Basic {revoked_key}"}, {"Authorization": "Bearer"}):
        response = call(client, op, a_objects.url(op), a_objects, credentials)
        assert_problem(response, 401, "unauthenticated")
    assert changed_tables(before, snapshot(database)) == []


# --- a role that may not do the operation ------------------------------------------------------

@pytest.fixture
def sales_rep_key(client: TestClient, world: World) -> str:
    created = client.post("/v1/keys", headers=auth(world.operator_key),
                          json={"role": "sales_rep", "merchant_id": world.a.merchant_id})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


MEMBER_OPS = [op for op in KEYED
              if op.path.startswith(("/v1/members", "/v1/identify"))]
# (operation, the role of A's key that may not do it); every member operation is here
# for the sales rep, who sees merchants' figures but never a member.
WRONG_ROLE = [
    (("POST", "/v1/merchants"), "merchant"),
    (("POST", "/v1/merchants"), "terminal"),
    (("POST", "/v1/merchants"), "sales_rep"),
    (("POST", "/v1/merchants/{merchant_id}/stores"), "terminal"),
    (("POST", "/v1/merchants/{merchant_id}/stores"), "sales_rep"),
    (("POST", "/v1/stores/{store_id}/terminals"), "terminal"),
    (("POST", "/v1/stores/{store_id}/terminals"), "sales_rep"),
    (("PATCH", "/v1/terminals/{terminal_id}"), "terminal"),
    (("PATCH", "/v1/terminals/{terminal_id}"), "sales_rep"),
    (("POST", "/v1/keys"), "terminal"),
    (("POST", "/v1/keys"), "sales_rep"),
    (("GET", "/v1/keys"), "terminal"),
    (("GET", "/v1/keys"), "sales_rep"),
    (("POST", "/v1/keys/{key_id}/revoke"), "terminal"),
    (("POST", "/v1/keys/{key_id}/revoke"), "sales_rep"),
    (("POST", "/v1/identify/caller-id"), "operator"),
    (("POST", "/v1/identify/caller-id"), "merchant"),
    (("POST", "/v1/pos/events"), "merchant"),
    (("POST", "/v1/pos/events"), "sales_rep"),
    (("POST", "/v1/pos/taps"), "merchant"),
    (("POST", "/v1/pos/taps"), "sales_rep"),
    (("POST", "/v1/pos/quote"), "merchant"),
    (("POST", "/v1/pos/quote"), "sales_rep"),
    (("POST", "/v1/pos/transactions"), "merchant"),
    (("POST", "/v1/pos/transactions"), "operator"),
    (("POST", "/v1/pos/transactions"), "sales_rep"),
    (("GET", "/v1/pos/transactions/{transaction_id}"), "sales_rep"),
    (("GET", "/v1/stores/{store_id}/events"), "terminal"),
    (("GET", "/v1/security-events"), "terminal"),
    (("GET", "/v1/security-events"), "sales_rep"),
    (("GET", "/v1/pos/offline/package"), "merchant"),
    (("POST", "/v1/pos/offline/allowances"), "merchant"),
    (("POST", "/v1/pos/offline/allowances"), "sales_rep"),
    (("POST", "/v1/pos/offline/batches"), "merchant"),
    (("POST", "/v1/pos/offline/batches"), "operator"),
    (("GET", "/v1/offline/exceptions"), "terminal"),
    (("GET", "/v1/offline/exceptions"), "sales_rep"),
    (("POST", "/v1/offline/exceptions/{exception_id}/resolve"), "terminal"),
    (("POST", "/v1/offline/exceptions/{exception_id}/resolve"), "sales_rep"),
    (("PUT", "/v1/merchants/{merchant_id}/referral-program"), "terminal"),
    (("PUT", "/v1/merchants/{merchant_id}/referral-program"), "sales_rep"),
    # A campaign's results are the merchant's (and the operator's), not a till's or a
    # sales rep's.
    (("GET", "/v1/campaigns/{campaign_id}/results"), "terminal"),
    (("GET", "/v1/campaigns/{campaign_id}/results"), "sales_rep"),
] + [(op.key, "sales_rep") for op in MEMBER_OPS]


@pytest.mark.parametrize(("op_key", "role"), [
    pytest.param(op_key, role, id=f"{op_key[0]} {op_key[1]} as A's {role} key")
    for op_key, role in WRONG_ROLE])
def test_a_role_that_may_not_do_it_gets_403_and_changes_nothing(
        client: TestClient, world: World, database: Database, a_objects: Objects,
        sales_rep_key: str, op_key: tuple[str, str], role: str) -> None:
    op = next(op for op in KEYED if op.key == op_key)
    key = {"operator": world.operator_key, "merchant": world.a.merchant_key,
           "terminal": world.a.pos_key, "sales_rep": sales_rep_key}[role]
    # A terminal key sees only its own terminal: aim at that one, so only the role is wrong.
    url = (op.path.format(terminal_id=world.a.pos_id) if "{terminal_id}" in op.path
           and role == "terminal" else a_objects.url(op))
    before = snapshot(database)
    response = client.request(op.method, url, json=valid_body(op, a_objects), headers=auth(key))
    assert_problem(response, 403, "forbidden")
    assert changed_tables(before, snapshot(database)) == []


def test_a_merchant_key_may_not_create_keys_above_its_station(
        client: TestClient, world: World, database: Database) -> None:
    before = snapshot(database)
    for role in ("operator", "sales_rep"):
        response = client.post("/v1/keys", headers=auth(world.a.merchant_key),
                               json={"role": role})
        assert_problem(response, 403, "forbidden")
    assert changed_tables(before, snapshot(database)) == []
