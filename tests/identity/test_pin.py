from datetime import UTC, datetime, timedelta

import pytest

from patron.kit.clock import clock
from tests.conftest import auth
from tests.identity.test_identify import assert_identified, assert_problem, identify


@pytest.fixture
def pin_terminal(client, world):
    response = client.patch(f"/v1/terminals/{world.a.pos_id}",
                            headers=auth(world.a.merchant_key), json={"require_pin": True})
    assert response.status_code == 200 and response.json()["require_pin"] is True
    return world.a.pos_key


@pytest.fixture
def member(client, world):
    response = client.post("/v1/members", headers=auth(world.a.merchant_key),
                           json={"phone": "+81 90 2222 3333", "pin": "2468"})
    assert response.status_code == 201, response.text
    assert response.json()["has_pin"] is True
    return response.json()


def test_terminal_requiring_pin_stops_without_it(client, member, pin_terminal):
    assert_problem(identify(client, pin_terminal, barcode=member["member_number"]), 403,
                   "pin_required")
    ok = identify(client, pin_terminal, barcode=member["member_number"], pin="2468")
    assert_identified(ok, member, "barcode")
    assert ok.json()["pin_verified"] is True


def test_member_without_pin_cannot_pass_a_pin_terminal(client, world, pin_terminal):
    bare = client.post("/v1/members", headers=auth(world.a.merchant_key), json={}).json()
    assert_problem(identify(client, pin_terminal, barcode=bare["member_number"]), 403,
                   "pin_not_set")


def test_five_wrong_pins_lock_for_fifteen_minutes(client, member, pin_terminal):
    start = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
    clock.freeze(start)
    number = member["member_number"]
    for attempt in range(1, 5):
        response = identify(client, pin_terminal, barcode=number, pin="0000")
        assert_problem(response, 403, "pin_incorrect")
        assert response.json()["attempts_left"] == 5 - attempt
    assert_problem(identify(client, pin_terminal, barcode=number, pin="0000"), 423,
                   "pin_locked")
    # Locked: even the right PIN is refused until the lock runs out.
    assert_problem(identify(client, pin_terminal, barcode=number, pin="2468"), 423,
                   "pin_locked")
    clock.freeze(start + timedelta(minutes=14, seconds=59))
    assert_problem(identify(client, pin_terminal, barcode=number, pin="2468"), 423,
                   "pin_locked")
    clock.freeze(start + timedelta(minutes=15, seconds=1))
    assert_identified(identify(client, pin_terminal, barcode=number, pin="2468"), member,
                      "barcode")
    # The count starts afresh after a success.
    assert_problem(identify(client, pin_terminal, barcode=number, pin="1111"), 403,
                   "pin_incorrect")


def test_right_pin_resets_the_failure_count(client, member, pin_terminal):
    number = member["member_number"]
    for _ in range(4):
        identify(client, pin_terminal, barcode=number, pin="0000")
    assert_identified(identify(client, pin_terminal, barcode=number, pin="2468"), member,
                      "barcode")
    response = identify(client, pin_terminal, barcode=number, pin="0000")
    assert response.json()["attempts_left"] == 4


def test_pin_can_be_changed_and_removed(client, world, member, pin_terminal):
    changed = client.put(f"/v1/members/{member['id']}/pin", headers=auth(world.a.merchant_key),
                         json={"pin": "13579"})
    assert changed.status_code == 200
    assert_problem(identify(client, pin_terminal, barcode=member["member_number"], pin="2468"),
                   403, "pin_incorrect")
    assert_identified(identify(client, pin_terminal, barcode=member["member_number"],
                               pin="13579"), member, "barcode")
    removed = client.put(f"/v1/members/{member['id']}/pin", headers=auth(world.a.merchant_key),
                         json={"pin": None})
    assert removed.json()["has_pin"] is False


def test_pin_given_where_not_required_is_still_checked(client, world, member):
    assert_problem(identify(client, world.a.reader_key, barcode=member["member_number"],
                            pin="9999"), 403, "pin_incorrect")
    plain = identify(client, world.a.reader_key, barcode=member["member_number"])
    assert plain.json()["pin_verified"] is False


def test_deactivated_terminal_key_is_refused(client, world):
    off = client.patch(f"/v1/terminals/{world.a.pos_id}", headers=auth(world.a.merchant_key),
                       json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    assert_problem(client.post("/v1/members", headers=auth(world.a.pos_key), json={}), 403,
                   "terminal_inactive")
    client.patch(f"/v1/terminals/{world.a.pos_id}", headers=auth(world.a.merchant_key),
                 json={"active": True})
    assert client.post("/v1/members", headers=auth(world.a.pos_key), json={}).status_code == 201
