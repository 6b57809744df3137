"""The offline endpoints through the API: package, allowances with reserved burn limits,
batch replay exactly once with authority, refusals recorded and never applied, and the
exceptions list seen only by its merchant."""

from __future__ import annotations

import base64
import copy
import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.offline import service, signing
from patron.offline.models import OfflineAllowance, OfflineException
from patron.pos.models import PosTransaction
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.offline.conftest import allowance, entry, replay, sale, second_till
from tests.pos.conftest import JPY_PROGRAM, enrol, give_points, put_program


@pytest.fixture
def member(client: TestClient, world: World, database: Database) -> dict[str, Any]:
    """Merchant A's program, and a member with 1,000 points."""
    put_program(client, world.a, JPY_PROGRAM)
    member = enrol(client, world.a, email="offline@example.com")
    give_points(database, world.a.merchant_id, member["id"], 1000)
    return member


def balance(client: TestClient, world: World, member: dict[str, Any]) -> int:
    response = client.get(f"/v1/members/{member['id']}/balances",
                          headers=auth(world.a.merchant_key))
    assert response.status_code == 200, response.text
    [points] = response.json()["points"]
    assert points["merchant_id"] == world.a.merchant_id
    return int(points["balance"])


def count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# --- package and allowances -------------------------------------------------------------

def test_the_package_holds_the_rules_and_the_public_key(client: TestClient, world: World,
                                                        member: dict[str, Any]) -> None:
    response = client.get("/v1/pos/offline/package", headers=auth(world.a.pos_key))
    assert response.status_code == 200, response.text
    package = response.json()
    assert package["program"] == {
        "earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
        "point_value_minor": 1, "min_burn": 100, "category_multipliers_bp": {"coffee": 20000},
        "excluded_categories": ["tobacco"]}
    assert (package["currency"], package["currency_minor_units"], package["timezone"]) == (
        "JPY", 0, "Asia/Tokyo")
    assert package["terminal_id"] == world.a.pos_id
    assert package["merchant_number"] == 12345 and package["max_batch_entries"] == 500
    public = base64.b64decode(package["public_key"])
    assert package["key_id"] == signing.key_id(public)
    assert client.get("/v1/pos/offline/package",
                      headers=auth(world.a.merchant_key)).status_code == 403


def test_an_allowance_is_signed_and_reserves_the_balance_across_tills(
        client: TestClient, world: World, database: Database, member: dict[str, Any]) -> None:
    package = client.get("/v1/pos/offline/package", headers=auth(world.a.pos_key)).json()
    signed = allowance(client, world.a.pos_key, {"barcode": member["member_number"]})
    document = signed["allowance"]
    assert signing.verify(base64.b64decode(package["public_key"]), document,
                          signed["signature"])
    assert (document["burn_limit"], document["member_id"], document["terminal_id"]) == (
        1000, member["id"], world.a.pos_id)
    assert document["member_number"] == member["member_number"]
    issued = utcnow()
    expires = document["expires_at"]
    assert expires > issued.isoformat() < (issued + timedelta(hours=24, seconds=1)).isoformat()
    # A second till gets what the first one does not hold: nothing.
    with database.session_scope() as session:
        op = session.scalar(select(func.count()).select_from(OfflineAllowance))
    assert op == 1
    other_key = second_till(client, world.operator_key, world.a)
    assert allowance(client, other_key, {"member_id": member["id"]})["allowance"][
        "burn_limit"] == 0
    # The first till refreshing its own gets the full balance again (its old one ends).
    again = allowance(client, world.a.pos_key, {"member_id": member["id"]})
    assert again["allowance"]["burn_limit"] == 1000


def test_the_allowance_endpoint_refuses_an_unknown_member(client: TestClient, world: World,
                                                          database: Database,
                                                          member: dict[str, Any]) -> None:
    before = snapshot(database)
    response = client.post("/v1/pos/offline/allowances", headers=auth(world.a.pos_key),
                           json={"member": {"barcode": "12345999999999"}})
    assert response.status_code in (404, 422), response.text
    assert changed_tables(before, snapshot(database)) == []


# --- replay -------------------------------------------------------------------------------------

def test_a_batch_commits_in_order_and_a_resent_batch_is_replayed(
        client: TestClient, world: World, database: Database, member: dict[str, Any]) -> None:
    signed = allowance(client, world.a.pos_key, {"member_id": member["id"]})
    entries = [
        entry(1, sale("OFF-1", member={"member_id": member["id"]}, points_to_burn=200),
              signed=signed, provisional={"points_earned": 10, "points_burned": 200,
                                          "discounts": {"points": 200}}),
        entry(2, sale("OFF-2", member={"barcode": member["member_number"]}),
              provisional={"points_earned": 12, "points_burned": 0,
                           "discounts": {"points": 0}}),
        entry(3, sale("OFF-3")),
    ]
    first = replay(client, world.a.pos_key, entries)
    assert first.status_code == 200, first.text
    results = first.json()["results"]
    assert [r["status"] for r in results] == ["committed"] * 3
    assert [r["seq"] for r in results] == [1, 2, 3]
    assert results[0]["transaction"]["points_burned"] == 200
    assert results[0]["differences"] == []
    assert results[1]["differences"] == [] and results[1]["transaction"]["points_earned"] == 12
    assert results[2]["transaction"]["member_id"] is None
    assert balance(client, world, member) == 1000 - 200 + 10 + 12
    before = snapshot(database)
    again = replay(client, world.a.pos_key, entries)
    assert again.status_code == 200, again.text
    assert [r["status"] for r in again.json()["results"]] == ["replayed"] * 3
    assert [r["transaction"] for r in again.json()["results"]] == [
        r["transaction"] for r in results]
    assert changed_tables(before, snapshot(database)) == []
    # A sale committed online whose answer was lost, then queued: replayed, not doubled.
    online = sale("ON-1", member={"member_id": member["id"]})
    committed = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json=online)
    assert committed.status_code == 201
    late = replay(client, world.a.pos_key, [entry(4, online)])
    assert late.json()["results"][0]["status"] == "replayed"
    assert late.json()["results"][0]["transaction"] == committed.json()
    assert count(database, PosTransaction) == 4


def test_differences_report_provisional_figures_the_server_corrects(
        client: TestClient, world: World, member: dict[str, Any]) -> None:
    response = replay(client, world.a.pos_key, [
        entry(1, sale("D-1", member={"member_id": member["id"]}),
              provisional={"points_earned": 99, "points_burned": 0,
                           "discounts": {"points": 0}})])
    result = response.json()["results"][0]
    assert result["status"] == "committed"
    assert result["differences"] == [{"figure": "points_earned", "provisional": 99,
                                      "server": 12}]


def test_burns_beyond_the_allowance_are_dropped_and_recorded(
        client: TestClient, world: World, database: Database, member: dict[str, Any]) -> None:
    give_points(database, world.a.merchant_id, member["id"], 1)  # 1,001 points
    signed = allowance(client, world.a.pos_key, {"member_id": member["id"]})
    # The allowance says 1,001; a register (buggy or forged) burns 600 twice under it.
    lines = [{"sku": "X", "name": "TV", "quantity": 1, "unit_price": 5000}]
    entries = [entry(seq, sale(f"B-{seq}", member={"member_id": member["id"]},
                               points_to_burn=600, lines=lines), signed=signed,
                     provisional={"points_earned": 44, "points_burned": 600,
                                  "discounts": {"points": 600}})
               for seq in (1, 2)]
    results = replay(client, world.a.pos_key, entries).json()["results"]
    assert [r["status"] for r in results] == ["committed", "committed_with_exception"]
    assert results[1]["transaction"]["points_burned"] == 0
    assert {"figure": "points_burned", "provisional": 600, "server": 0} in results[1][
        "differences"]
    listed = client.get("/v1/offline/exceptions",
                        headers=auth(world.a.merchant_key)).json()["items"]
    assert len(listed) == 1
    exception = listed[0]
    assert (exception["kind"], exception["code"], exception["receipt_no"]) == (
        "allowance_exceeded", "allowance_exceeded", "B-2")
    assert exception["facts"]["points_shortfall"] == 600 - 401
    assert exception["facts"]["discount_given_offline"] == 600
    assert exception["transaction_id"] == results[1]["transaction"]["id"]
    assert exception["member_id"] == member["id"]
    assert balance(client, world, member) == 1001 - 600 + 44 + 50


def test_a_burn_the_balance_no_longer_holds_is_dropped_as_a_shortfall(
        client: TestClient, world: World, member: dict[str, Any]) -> None:
    signed = allowance(client, world.a.pos_key, {"member_id": member["id"]})
    other_key = second_till(client, world.operator_key, world.a)
    # Spent online elsewhere meanwhile: 900 of the 1,000.
    spent = client.post("/v1/pos/transactions", headers=auth(other_key), json=sale(
        "ELSE-1", member={"member_id": member["id"]}, points_to_burn=900,
        lines=[{"sku": "X", "name": "TV", "quantity": 1, "unit_price": 5000}]))
    assert spent.status_code == 201, spent.text
    result = replay(client, world.a.pos_key, [entry(1, sale(
        "S-1", member={"member_id": member["id"]}, points_to_burn=300), signed=signed,
        provisional={"points_earned": 9, "points_burned": 300,
                     "discounts": {"points": 300}})]).json()["results"][0]
    assert result["status"] == "committed_with_exception"
    assert result["transaction"]["points_burned"] == 0
    exception = client.get(f"/v1/offline/exceptions/{result['exceptions'][0]}",
                           headers=auth(world.a.merchant_key)).json()
    assert (exception["kind"], exception["code"]) == ("points_shortfall", "insufficient_points")
    assert exception["facts"]["balance_at_replay"] == 100 + 41
    assert exception["facts"]["points_shortfall"] == 300 - 141


# --- refusals: own code, recorded, never applied ---------------------------------------------

def _tampered(signed: dict[str, Any]) -> dict[str, Any]:
    forged = copy.deepcopy(signed)
    forged["allowance"]["burn_limit"] = 100_000
    return forged


REFUSALS = ["tampered", "forged_signature", "no_allowance_burn", "other_terminal",
            "other_member", "expired", "before_issue", "miles", "foreign_key",
            "never_issued"]


@pytest.mark.parametrize("case", REFUSALS)
def test_each_refusal_has_its_own_code_is_recorded_and_changes_nothing_else(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        case: str) -> None:
    signed = allowance(client, world.a.pos_key, {"member_id": member["id"]})
    other_member = enrol(client, world.a, email="other@example.com")
    who = {"member_id": member["id"]}
    body = sale("F-1", member=who, points_to_burn=200)
    used: dict[str, Any] | None = signed
    expected = {"tampered": "allowance_signature_invalid",
                "forged_signature": "allowance_signature_invalid",
                "no_allowance_burn": "offline_burn_without_allowance",
                "other_terminal": "allowance_wrong_terminal",
                "other_member": "allowance_member_mismatch",
                "expired": "allowance_expired", "before_issue": "allowance_not_yet_valid",
                "miles": "offline_miles_burn",
                "foreign_key": "allowance_signature_invalid",
                "never_issued": "allowance_unknown"}[case]
    if case == "tampered":
        used = _tampered(signed)
    elif case == "forged_signature":
        used = {**signed, "signature": base64.b64encode(b"\x00" * 64).decode()}
    elif case == "no_allowance_burn":
        used = None
    elif case == "other_terminal":
        used = allowance(client, second_till(client, world.operator_key, world.a), who)
    elif case == "other_member":
        body = sale("F-1", member={"member_id": other_member["id"]}, points_to_burn=200)
    elif case == "expired":
        body = sale("F-1", member=who, points_to_burn=200,
                    occurred_at=utcnow() + timedelta(hours=25))
        clock.freeze(utcnow() + timedelta(hours=25, minutes=1))
    elif case == "before_issue":
        body = sale("F-1", member=who, points_to_burn=200,
                    occurred_at=utcnow() - timedelta(hours=1))
    elif case == "miles":
        body = sale("F-1", member=who, miles_to_burn=10)
    elif case == "foreign_key":
        # A document this server never signed, signed with another key.
        key = signing.derive_private_key("someone else's secret")
        document = {**signed["allowance"], "burn_limit": 5000}
        used = {"allowance": document, "signature": signing.sign(key, document)}
    elif case == "never_issued":
        # Signed with the server's own key but never issued (a restored database).
        document = {**signed["allowance"], "id": str(uuid.uuid4())}
        used = {"allowance": document,
                "signature": signing.sign(service.signing_key().private_key, document)}
    before = snapshot(database)
    response = replay(client, world.a.pos_key, [entry(1, body, signed=used)])
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert (result["status"], result["problem"]["code"]) == ("refused", expected)
    assert result["transaction"] is None and len(result["exceptions"]) == 1
    assert changed_tables(before, snapshot(database)) == ["offline_exceptions"]
    exception = client.get(f"/v1/offline/exceptions/{result['exceptions'][0]}",
                           headers=auth(world.a.merchant_key)).json()
    assert (exception["kind"], exception["code"], exception["receipt_no"]) == (
        "refused_entry", expected, "F-1")
    assert exception["facts"]["transaction"]["receipt_no"] == "F-1"
    # Sent again: the same answer, recorded once.
    middle = snapshot(database)
    again = replay(client, world.a.pos_key, [entry(1, body, signed=used)]).json()["results"][0]
    assert again["exceptions"] == result["exceptions"]
    assert changed_tables(middle, snapshot(database)) == []
    # A forgery (not a register's mistake) is also a security event, once.
    events = client.get("/v1/security-events", headers=auth(world.a.merchant_key)).json()
    forgeries = [event for event in events["events"] if event["kind"] == "offline_forgery"]
    forged = expected in {"allowance_signature_invalid", "allowance_unknown",
                          "allowance_wrong_terminal", "allowance_member_mismatch"}
    assert [event["refusal"] for event in forgeries] == ([expected] if forged else [])


def test_a_refused_entry_does_not_stop_the_rest_of_the_batch(
        client: TestClient, world: World, database: Database, member: dict[str, Any]) -> None:
    results = replay(client, world.a.pos_key, [
        entry(1, sale("M-1")),
        entry(2, sale("M-2", member={"member_id": member["id"]}, points_to_burn=200)),
        entry(3, sale("M-3")),
    ]).json()["results"]
    assert [r["status"] for r in results] == ["committed", "refused", "committed"]
    assert count(database, PosTransaction) == 2


@pytest.mark.parametrize(("entries", "code"), [
    ([], "batch_too_large"),
    ([entry(i, sale(f"T-{i}")) for i in range(1, 502)], "batch_too_large"),
    ([entry(2, sale("T-1")), entry(1, sale("T-2"))], "batch_out_of_order"),
    ([entry(1, sale("T-1")), entry(2, sale("T-1"))], "duplicate_receipt_in_batch"),
])
def test_a_malformed_batch_is_refused_whole(client: TestClient, world: World,
                                            database: Database, entries: list[Any],
                                            code: str) -> None:
    before = snapshot(database)
    response = client.post("/v1/pos/offline/batches", headers=auth(world.a.pos_key),
                           json={"entries": entries},
                           ) if len(entries) < 600 else None
    assert response is not None
    assert (response.status_code, response.json()["code"]) == (422, code), response.text
    assert changed_tables(before, snapshot(database)) == []


# --- the exceptions list ---------------------------------------------------------------------

def test_exceptions_are_seen_and_resolved_by_their_merchant_only(
        client: TestClient, world: World, database: Database, member: dict[str, Any]) -> None:
    refused = replay(client, world.a.pos_key, [entry(1, sale(
        "X-1", member={"member_id": member["id"]}, points_to_burn=200))]).json()["results"][0]
    exception_id = refused["exceptions"][0]
    assert client.get("/v1/offline/exceptions",
                      headers=auth(world.b.merchant_key)).json()["items"] == []
    assert client.get(f"/v1/offline/exceptions/{exception_id}",
                      headers=auth(world.b.merchant_key)).status_code == 404
    assert [e["id"] for e in client.get("/v1/offline/exceptions",
                                        headers=auth(world.operator_key)).json()["items"]] == [
        exception_id]
    assert client.get("/v1/offline/exceptions", headers=auth(world.a.pos_key)
                      ).status_code == 403
    before = snapshot(database)
    for key, note, status, code in [
            (world.b.merchant_key, "mine?", 404, "not_found"),
            (world.a.merchant_key, "", 422, "invalid_note")]:
        response = client.post(f"/v1/offline/exceptions/{exception_id}/resolve",
                               headers=auth(key), json={"note": note})
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert changed_tables(before, snapshot(database)) == []
    resolved = client.post(f"/v1/offline/exceptions/{exception_id}/resolve",
                           headers=auth(world.a.merchant_key),
                           json={"note": "customer paid the 200 yen"})
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["resolution_note"]) == (
        "resolved", "customer paid the 200 yen")
    twice = client.post(f"/v1/offline/exceptions/{exception_id}/resolve",
                        headers=auth(world.a.merchant_key), json={"note": "again"})
    assert (twice.status_code, twice.json()["code"]) == (409, "exception_already_resolved")
    assert client.get("/v1/offline/exceptions?status=open",
                      headers=auth(world.a.merchant_key)).json()["items"] == []
    assert len(client.get("/v1/offline/exceptions?status=resolved",
                          headers=auth(world.a.merchant_key)).json()["items"]) == 1
    assert count(database, OfflineException) == 1
