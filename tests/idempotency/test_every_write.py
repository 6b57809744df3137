"""Every write in the app's own OpenAPI document honours Idempotency-Key.

Each is sent a valid request (``tests.api.operations.VALID_BODIES``: a write without an
entry there fails here) twice with one key: the second gets the first answer and changes
nothing; the key with another body is 409 and changes nothing either.
"""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.db import Database
from patron.idempotency.middleware import EXEMPT, HEADER
from tests.api.operations import (
    VALID_BODIES,
    Objects,
    Operation,
    caller_key,
    objects_of,
    write_operations,
)
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth

WRITES = [op for op in write_operations() if op.key not in EXEMPT]


@pytest.fixture
def objects(client: TestClient, database: Database, world: World) -> Objects:
    return objects_of(client, database, world, world.a)


def _body(op: Operation, objects: Objects) -> dict[str, Any] | None:
    if op.body_media_type is None:
        return None
    assert op.key in VALID_BODIES, f"add a valid body for {op.id} to VALID_BODIES"
    return VALID_BODIES[op.key](objects)


def _send(client: TestClient, op: Operation, objects: Objects, key: str,
          body: dict[str, Any] | None) -> Any:
    headers = {**auth(key), HEADER: "the-one-key"}
    if body is None:
        return client.request(op.method, objects.url(op), headers=headers)
    return client.request(op.method, objects.url(op), headers=headers, json=body)


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in WRITES])
def test_a_retry_gets_the_first_answer_and_changes_nothing(
        client: TestClient, world: World, database: Database, objects: Objects,
        op: Operation) -> None:
    key = caller_key(op, world, world.a)
    body = _body(op, objects)
    first = _send(client, op, objects, key, body)
    assert first.status_code == op.success_status, first.text
    assert "idempotent-replayed" not in first.headers
    after_first = snapshot(database)

    again = _send(client, op, objects, key, body)
    assert (again.status_code, again.content) == (first.status_code, first.content)
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert changed_tables(after_first, snapshot(database)) == []

    other = _send(client, op, objects, key, {**(body or {}), "another": "body"})
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert changed_tables(after_first, snapshot(database)) == []


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in write_operations()])
def test_the_schema_names_the_header_on_every_write(op: Operation) -> None:
    names = {p["name"] for p in op.spec.get("parameters", []) if p["in"] == "header"}
    if op.key in EXEMPT:
        assert op.key != ("POST", "/v1/vouchers/{code}/redeem") or HEADER in names
        return
    assert HEADER in names
    assert "409" in op.spec["responses"]


def test_the_exempt_routes_exist() -> None:
    assert set(EXEMPT) <= {op.key for op in write_operations()}
