"""Personal single-use codes offline: carried in the allowance, honoured once at replay;
a second use (another register, offline too) or a code revoked meanwhile is dropped from
the committed sale and lands in the exceptions list with the facts."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.db import Database
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.offline.conftest import allowance, entry, replay, sale, second_till
from tests.pos.conftest import JPY_PROGRAM, enrol, give_points, put_program

LINES = [{"sku": "BR-1", "name": "Bread", "category": "bakery", "quantity": 2,
          "unit_price": 1000}]


@pytest.fixture
def code_holder(client: TestClient, world: World, database: Database) -> dict[str, Any]:
    put_program(client, world.a, JPY_PROGRAM)
    member = enrol(client, world.a, email="coupon@example.com")
    give_points(database, world.a.merchant_id, member["id"], 1000)
    offer = client.post("/v1/offers", headers=auth(world.a.merchant_key),
                        json={"name": "300 yen off", "kind": "amount_off", "value": 300})
    assert offer.status_code == 201, offer.text
    codes = client.post(f"/v1/offers/{offer.json()['id']}/codes",
                        headers=auth(world.a.merchant_key),
                        json={"count": 1, "member_id": member["id"]})
    assert codes.status_code == 201, codes.text
    return {**member, "code": codes.json()["codes"][0]}


def provisional(code: str, earned: int) -> dict[str, Any]:
    return {"points_earned": earned, "points_burned": 0,
            "discounts": {"points": 0, "vouchers": {code: 300}}}


def test_the_allowance_carries_the_members_personal_codes(
        client: TestClient, world: World, code_holder: dict[str, Any]) -> None:
    signed = allowance(client, world.a.pos_key, {"member_id": code_holder["id"]})
    assert signed["allowance"]["codes"] == [{
        "code": code_holder["code"], "kind": "amount_off", "value": 300, "max_discount": None,
        "min_spend": 0, "item_sku": None, "item_category": None, "categories": [],
        "valid_until": None}]


def test_a_code_used_offline_at_two_registers_is_honoured_once(
        client: TestClient, world: World, code_holder: dict[str, Any]) -> None:
    who = {"member_id": code_holder["id"]}
    code = code_holder["code"]
    other_key = second_till(client, world.operator_key, world.a)
    first_allowance = allowance(client, world.a.pos_key, who)
    second_allowance = allowance(client, other_key, who)
    first = replay(client, world.a.pos_key, [entry(
        1, sale("V-1", member=who, lines=LINES, vouchers=[{"code": code}]),
        signed=first_allowance, provisional=provisional(code, 17))]).json()["results"][0]
    assert first["status"] == "committed", first
    assert first["transaction"]["voucher_discount"] == 300
    assert first["differences"] == []
    second = replay(client, other_key, [entry(
        1, sale("V-9", member=who, lines=LINES, vouchers=[{"code": code.lower()}]),
        signed=second_allowance, provisional=provisional(code, 17))]).json()["results"][0]
    assert second["status"] == "committed_with_exception", second
    assert second["transaction"]["voucher_discount"] == 0
    assert second["transaction"]["points_earned"] == 20
    assert {"figure": "voucher_discount", "provisional": 300, "server": 0} in second[
        "differences"]
    listed = client.get("/v1/offline/exceptions",
                        headers=auth(world.a.merchant_key)).json()["items"]
    assert len(listed) == 1
    exception = listed[0]
    assert (exception["kind"], exception["code"], exception["receipt_no"]) == (
        "voucher_refused", "voucher_already_redeemed", "V-9")
    facts = exception["facts"]
    assert facts["discount_given_offline"] == 300
    assert facts["voucher_code"] == exception["voucher_code"]
    # When and where the first redemption happened.
    assert facts["first_redemption"] == {
        "terminal_id": world.a.pos_id, "receipt_no": "V-1",
        "transaction_id": first["transaction"]["id"],
        "occurred_at": first["transaction"]["occurred_at"].replace("Z", "+00:00"),
        "used_at": facts["refusal"]["first_used_at"]}


def test_a_code_revoked_meanwhile_is_dropped_and_recorded(
        client: TestClient, world: World, code_holder: dict[str, Any]) -> None:
    who = {"member_id": code_holder["id"]}
    signed = allowance(client, world.a.pos_key, who)
    revoked = client.post(f"/v1/vouchers/{code_holder['code']}/revoke",
                          headers=auth(world.a.merchant_key), json={"reason": "fraud"})
    assert revoked.status_code == 200, revoked.text
    result = replay(client, world.a.pos_key, [entry(
        1, sale("R-1", member=who, lines=LINES, vouchers=[{"code": code_holder["code"]}]),
        signed=signed, provisional=provisional(code_holder["code"], 17))]).json()["results"][0]
    assert result["status"] == "committed_with_exception"
    exception = client.get(f"/v1/offline/exceptions/{result['exceptions'][0]}",
                           headers=auth(world.a.merchant_key)).json()
    assert (exception["kind"], exception["code"]) == ("voucher_refused", "voucher_revoked")


@pytest.mark.parametrize("case", ["without_allowance", "not_in_allowance"])
def test_a_voucher_offline_outside_an_allowance_is_refused(
        client: TestClient, world: World, database: Database, code_holder: dict[str, Any],
        case: str) -> None:
    who = {"member_id": code_holder["id"]}
    other = enrol(client, world.a, email="other@example.com")
    signed = allowance(client, world.a.pos_key, {"member_id": other["id"]})
    if case == "without_allowance":
        used, member, expected = None, who, "offline_voucher_without_allowance"
    else:
        used, member, expected = signed, {"member_id": other["id"]}, "voucher_not_in_allowance"
    before = snapshot(database)
    result = replay(client, world.a.pos_key, [entry(
        1, sale("N-1", member=member, lines=LINES,
                vouchers=[{"code": code_holder["code"]}]), signed=used)]).json()["results"][0]
    assert (result["status"], result["problem"]["code"]) == ("refused", expected)
    assert changed_tables(before, snapshot(database)) == ["offline_exceptions"]
