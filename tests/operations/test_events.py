"""POST /v1/pos/events and GET /v1/stores/{id}/events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock
from patron.operations.models import RegisterEvent
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen() -> None:
    clock.freeze(NOW)


def at(minutes: float) -> str:
    return (NOW + timedelta(minutes=minutes)).isoformat()


def post(client: TestClient, key: str, events: list[dict[str, Any]]) -> Any:
    return client.post("/v1/pos/events", headers=auth(key), json={"events": events})


def stored(database: Database) -> list[tuple[Any, ...]]:
    with database.session_scope() as session:
        return [tuple(row) for row in session.execute(
            select(RegisterEvent.merchant_id, RegisterEvent.store_id, RegisterEvent.terminal_id,
                   RegisterEvent.type, RegisterEvent.occurred_at, RegisterEvent.received_at,
                   RegisterEvent.seq, RegisterEvent.detail).order_by(RegisterEvent.id))]


def test_a_batch_is_stored_exactly(client: TestClient, world: World, database: Database) -> None:
    response = post(client, world.a.pos_key, [
        {"type": "open", "occurred_at": "2026-11-20T17:55:00+09:00", "seq": 10},
        {"type": "sign_in", "occurred_at": at(-4), "seq": 11},
        {"type": "item_scan", "occurred_at": at(-3)},
        {"type": "error", "occurred_at": at(-2), "seq": 12, "detail": "PRN-OUT-OF-PAPER"},
        {"type": "heartbeat", "occurred_at": at(5)},  # the future limit itself is fine
        {"type": "sign_out", "occurred_at": at(-30 * 24 * 60)},  # and so is 30 days ago
        {"type": "close", "occurred_at": at(-1), "seq": 13},
    ])
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": 7, "duplicates": 0}
    ids = (uuid.UUID(world.a.merchant_id), uuid.UUID(world.a.store_id), uuid.UUID(world.a.pos_id))
    minute = timedelta(minutes=1)
    assert stored(database) == [
        (*ids, 1, NOW - 5 * minute, NOW, 10, None),
        (*ids, 3, NOW - 4 * minute, NOW, 11, None),
        (*ids, 6, NOW - 3 * minute, NOW, None, None),
        (*ids, 7, NOW - 2 * minute, NOW, 12, "PRN-OUT-OF-PAPER"),
        (*ids, 5, NOW + 5 * minute, NOW, None, None),
        (*ids, 4, NOW - timedelta(days=30), NOW, None, None),
        (*ids, 2, NOW - minute, NOW, 13, None),
    ]


def test_a_resent_batch_counts_duplicates_and_stores_nothing_twice(
        client: TestClient, world: World, database: Database) -> None:
    batch = [{"type": "heartbeat", "occurred_at": at(-i), "seq": i} for i in range(1, 4)]
    assert post(client, world.a.pos_key, batch).json() == {"accepted": 3, "duplicates": 0}
    again = post(client, world.a.pos_key, [*batch, {"type": "close", "occurred_at": at(0),
                                                    "seq": 4}])
    assert again.status_code == 202, again.text
    assert again.json() == {"accepted": 1, "duplicates": 3}
    assert post(client, world.a.pos_key, batch).json() == {"accepted": 0, "duplicates": 3}
    assert [row[6] for row in stored(database)] == [1, 2, 3, 4]
    # The same seq twice in one batch: the first is kept.
    twice = post(client, world.a.pos_key, [{"type": "open", "occurred_at": at(0), "seq": 9},
                                           {"type": "close", "occurred_at": at(0), "seq": 9}])
    assert twice.json() == {"accepted": 1, "duplicates": 1}
    assert stored(database)[-1][3:7:3] == (1, 9)
    # seq is per terminal: another register may use the same numbers.
    other = post(client, world.b.pos_key, batch)
    assert other.json() == {"accepted": 3, "duplicates": 0}
    assert len(stored(database)) == 8


def _events(n: int, **change: Any) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = [{"type": "heartbeat", "occurred_at": at(-1), "seq": i}
                                    for i in range(n)]
    events[min(3, n - 1)].update(change)
    return events


BAD = {
    "future": (_events(5, occurred_at=at(5 + 1 / 60)), 422, "occurred_at_in_future",
               "events[3].occurred_at"),
    "too_old": (_events(5, occurred_at=at(-30 * 24 * 60 - 1 / 60)), 422,
                "occurred_at_too_old", "events[3].occurred_at"),
    "unknown_type": (_events(5, type="reboot"), 422, "validation_failed", None),
    "no_offset": (_events(5, occurred_at="2026-11-20T08:59:00"), 422, "validation_failed",
                  None),
    "1001_events": (_events(1001), 422, "validation_failed", None),
    "no_events": ([], 422, "validation_failed", None),
    "unknown_field": (_events(5, member_id="x"), 422, "validation_failed", None),
    "detail_too_long": (_events(5, detail="x" * 201), 422, "validation_failed", None),
    "negative_seq": (_events(5, seq=-1), 422, "validation_failed", None),
    "float_seq": (_events(5, seq=1.5), 422, "validation_failed", None),
}


@pytest.mark.parametrize(("events", "status", "code", "field"),
                         [pytest.param(*case, id=name) for name, case in BAD.items()])
def test_bad_input_refuses_the_whole_batch(client: TestClient, world: World,
                                           database: Database, events: list[dict[str, Any]],
                                           status: int, code: str, field: str | None) -> None:
    post(client, world.a.pos_key, [{"type": "open", "occurred_at": at(-10), "seq": 100}])
    before = snapshot(database)
    response = post(client, world.a.pos_key, events)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    if field is not None:
        assert body["field"] == field
    if code == "validation_failed":
        assert body["errors"], body
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize("role", ["merchant", "operator", "sales_rep"])
def test_only_terminals_send_events(client: TestClient, world: World, database: Database,
                                    role: str) -> None:
    keys = {"merchant": world.a.merchant_key, "operator": world.operator_key,
            "sales_rep": _sales_rep(client, world, world.a.merchant_id)}
    before = snapshot(database)
    response = post(client, keys[role], [{"type": "open", "occurred_at": at(0)}])
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    assert changed_tables(before, snapshot(database)) == []


def _sales_rep(client: TestClient, world: World, merchant_id: str) -> str:
    created = client.post("/v1/keys", headers=auth(world.operator_key),
                          json={"role": "sales_rep", "merchant_id": merchant_id})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


def test_reading_a_stores_events_paginated_and_filtered(client: TestClient,
                                                        world: World) -> None:
    post(client, world.a.pos_key, [{"type": "heartbeat", "occurred_at": at(-10 + i), "seq": i}
                                   for i in range(5)])
    post(client, world.a.reader_key, [{"type": "error", "occurred_at": at(-1),
                                       "detail": "NFC"}])
    post(client, world.b.pos_key, [{"type": "open", "occurred_at": at(-1)}])
    url = f"/v1/stores/{world.a.store_id}/events"

    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        page = client.get(url, headers=auth(world.a.merchant_key), params=params)
        assert page.status_code == 200, page.text
        pages.append(page.json()["events"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 2]
    events = [e for p in pages for e in p]
    assert [(e["type"], e["seq"], e["detail"]) for e in events] == [
        *[("heartbeat", i, None) for i in range(5)], ("error", None, "NFC")]
    assert {e["terminal_id"] for e in events} == {world.a.pos_id, world.a.reader_id}
    assert events[0]["occurred_at"] == "2026-11-20T08:50:00Z"

    window = client.get(url, headers=auth(world.a.merchant_key),
                        params={"since": at(-9), "until": at(-7)})
    assert [e["seq"] for e in window.json()["events"]] == [1, 2]

    for key in (world.operator_key, _sales_rep(client, world, world.a.merchant_id)):
        seen = client.get(url, headers=auth(key))
        assert seen.status_code == 200 and len(seen.json()["events"]) == 6


def test_another_merchant_can_neither_read_nor_write_a_stores_events(
        client: TestClient, world: World, database: Database) -> None:
    post(client, world.a.pos_key, [{"type": "open", "occurred_at": at(-1)}])
    url = f"/v1/stores/{world.a.store_id}/events"
    for key in (world.b.merchant_key, world.b.pos_key,
                _sales_rep(client, world, world.b.merchant_id)):
        response = client.get(url, headers=auth(key))
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    # A terminal writes only to its own store: B's register lands in B's store.
    post(client, world.b.pos_key, [{"type": "close", "occurred_at": at(0)}])
    a_events = client.get(url, headers=auth(world.a.merchant_key)).json()["events"]
    assert [e["type"] for e in a_events] == ["open"]
    with database.session_scope() as session:
        b_rows = session.scalars(select(RegisterEvent.store_id)
                                 .where(RegisterEvent.type == 2)).all()
    assert b_rows == [uuid.UUID(world.b.store_id)]
    # A's own register may send but not read.
    own = client.get(url, headers=auth(world.a.pos_key))
    assert (own.status_code, own.json()["code"]) == (403, "forbidden")
