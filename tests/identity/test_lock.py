"""A PIN lock stops the member everywhere: locked at a reader that asks for the PIN, the
member is refused at every terminal — identify, tap, quote, checkout, any way they are
named — with `pin_locked` (423) until the lock runs out or their merchant unlocks it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock
from patron.members.models import Member
from patron.pos.models import PosTransaction
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.conftest import purchase

PIN = "2468"
PHONE = "+81 90-7777-0001"
CARD = "04:CA:FE:00:11:22:33"
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
LOCKED_UNTIL = "2026-06-01T09:15:00+00:00"


def identify(client: TestClient, key: str, **body: Any) -> Any:
    return client.post("/v1/identify", headers=auth(key), json=body)


def assert_locked(response: Any) -> None:
    assert response.status_code == 423, response.text
    body = response.json()
    assert (body["code"], body["locked_until"]) == ("pin_locked", LOCKED_UNTIL)


@pytest.fixture
def locked(client: TestClient, world: World) -> dict[str, Any]:
    """A's member, locked by five wrong PINs at A's reader, which asks for the PIN."""
    clock.freeze(START)
    member = client.post("/v1/members", headers=auth(world.a.merchant_key),
                         json={"phone": PHONE, "card_uid": CARD, "pin": PIN})
    assert member.status_code == 201, member.text
    assert client.patch(f"/v1/terminals/{world.a.reader_id}",
                        headers=auth(world.a.merchant_key),
                        json={"require_pin": True}).status_code == 200
    for _ in range(4):
        wrong = identify(client, world.a.reader_key, card_uid=CARD, pin="0000")
        assert wrong.json()["code"] == "pin_incorrect"
    assert_locked(identify(client, world.a.reader_key, card_uid=CARD, pin="0000"))
    answer: dict[str, Any] = member.json()
    return answer


def another_reader(client: TestClient, world: World) -> str:
    """A reader of A that does not ask for the PIN."""
    made = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                       headers=auth(world.operator_key),
                       json={"code": "gate-2", "kind": "reader"})
    assert made.status_code == 201, made.text
    key: str = made.json()["api_key"]
    return key


def transactions(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(PosTransaction)) or 0)


def test_a_locked_member_is_refused_at_every_terminal(client: TestClient, world: World,
                                                      database: Database,
                                                      locked: dict[str, Any]) -> None:
    gate = another_reader(client, world)
    before = snapshot(database)
    pos = world.a.pos_key  # asks for no PIN: it answered 200, pin_verified false
    for body in ({"barcode": locked["member_number"]}, {"phone": PHONE}, {"card_uid": CARD}):
        assert_locked(identify(client, pos, **body))
        assert_locked(identify(client, pos, pin=PIN, **body))
    assert_locked(client.post("/v1/pos/taps", headers=auth(gate), json={"card_uid": CARD}))
    for named in ({"barcode": locked["member_number"]}, {"member_id": locked["id"]},
                  {"card_uid": CARD}):
        assert_locked(client.post("/v1/pos/quote", headers=auth(pos),
                                  json=purchase(member=named)))
        assert_locked(client.post("/v1/pos/transactions", headers=auth(pos),
                                  json=purchase(receipt_no="L-1", member=named)))
    assert changed_tables(before, snapshot(database)) == []
    assert transactions(database) == 0
    # An anonymous sale at the same till goes through.
    assert client.post("/v1/pos/transactions", headers=auth(pos),
                       json=purchase(receipt_no="L-2")).status_code == 201


def test_the_lock_ends_by_itself(client: TestClient, world: World,
                                 locked: dict[str, Any]) -> None:
    clock.freeze(START + timedelta(minutes=14, seconds=59))
    assert_locked(identify(client, world.a.pos_key, barcode=locked["member_number"]))
    clock.freeze(START + timedelta(minutes=15))
    found = identify(client, world.a.pos_key, barcode=locked["member_number"])
    assert (found.status_code, found.json()["pin_verified"]) == (200, False)
    sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(member={"card_uid": CARD}))
    assert sale.status_code == 201, sale.text


def pin_state(database: Database, member_id: str) -> tuple[int, datetime | None]:
    with database.session_scope() as session:
        member = session.get(Member, uuid.UUID(member_id))
        assert member is not None
        return member.pin_failures, member.pin_locked_until


def test_the_enrolling_merchant_or_the_operator_unlocks(client: TestClient, world: World,
                                                        database: Database,
                                                        locked: dict[str, Any]) -> None:
    unlock = f"/v1/members/{locked['id']}/pin/unlock"
    state = pin_state(database, locked["id"])
    assert state[0] == 5 and state[1] is not None
    # Terminal keys never unlock; another merchant does not see the member.
    refusals = {
        "A's POS key": (world.a.pos_key, 403, "forbidden"),
        "A's reader key": (world.a.reader_key, 403, "forbidden"),
        "B's merchant key": (world.b.merchant_key, 404, "not_found"),
        "B's POS key": (world.b.pos_key, 404, "not_found"),
    }
    for who, (key, status, code) in refusals.items():
        refused = client.post(unlock, headers=auth(key))
        assert (refused.status_code, refused.json()["code"]) == (status, code), who
        assert pin_state(database, locked["id"]) == state, who
    assert client.post(unlock, headers=auth(world.a.merchant_key),
                       json={"x": 1}).json()["code"] == "body_not_allowed"
    assert pin_state(database, locked["id"]) == state

    unlocked = client.post(unlock, headers=auth(world.a.merchant_key))
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["id"] == locked["id"]
    assert pin_state(database, locked["id"]) == (0, None)
    assert identify(client, world.a.pos_key, phone=PHONE).status_code == 200
    # The count starts afresh at the reader that locked it.
    again = identify(client, world.a.reader_key, card_uid=CARD, pin="0000")
    assert (again.json()["code"], again.json()["attempts_left"]) == ("pin_incorrect", 4)
    ok = identify(client, world.a.reader_key, card_uid=CARD, pin=PIN)
    assert (ok.status_code, ok.json()["pin_verified"]) == (200, True)


def test_the_operator_unlocks_too(client: TestClient, world: World, database: Database,
                                  locked: dict[str, Any]) -> None:
    unlocked = client.post(f"/v1/members/{locked['id']}/pin/unlock",
                           headers=auth(world.operator_key))
    assert unlocked.status_code == 200, unlocked.text
    assert pin_state(database, locked["id"]) == (0, None)
    assert identify(client, world.a.pos_key, card_uid=CARD).status_code == 200
