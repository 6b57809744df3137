"""Offers and issuing codes: terms checked at creation, who sees what, wallets."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.db import Database
from patron.vouchers import codes
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.conftest import enrol
from tests.vouchers.conftest import make_codes, make_offer, redeem

BAD_TERMS = [
    ({"kind": "amount_off", "value": 0}, "value"),
    ({"kind": "percent_off", "value": 101}, "value"),
    ({"kind": "points_multiplier", "value": 10000}, "value"),
    ({"kind": "bonus_points", "value": 0}, "value"),
    ({"kind": "free_item", "value": 0}, "item_sku"),
    ({"kind": "ticket", "value": 5}, "value"),
    ({"kind": "amount_off", "value": 100, "item_sku": "X"}, "item_sku"),
    ({"kind": "amount_off", "value": 100, "max_discount": 50}, "max_discount"),
    ({"kind": "amount_off", "value": 100, "valid_from": "2027-01-02T00:00:00+09:00",
      "valid_until": "2027-01-01T00:00:00+09:00"}, "valid_until"),
    ({"kind": "amount_off", "value": 100, "weekdays": [1, 8]}, "weekdays[1]"),
    ({"kind": "amount_off", "value": 100, "from_time": "07:00"}, "until_time"),
    ({"kind": "amount_off", "value": 100, "from_time": "07:00", "until_time": "07:00"},
     "until_time"),
    ({"kind": "amount_off", "value": 100, "currency": "USD"}, "currency"),
    ({"kind": "amount_off", "value": 100, "currency": "XYZ"}, "currency"),
    ({"kind": "amount_off", "value": 100, "budget": 0}, "budget"),
    ({"kind": "amount_off", "value": 100, "valid_days": 0}, "valid_days"),
    ({"kind": "ticket", "per_member_limit": 1}, "kind"),
]


@pytest.mark.parametrize(("terms", "field"), BAD_TERMS,
                         ids=[f"{field}-{i}" for i, (_, field) in enumerate(BAD_TERMS)])
def test_bad_terms_are_refused_naming_the_field(client: TestClient, world: World,
                                                database: Database, terms: dict[str, Any],
                                                field: str) -> None:
    before = snapshot(database)
    response = client.post("/v1/offers", headers=auth(world.a.merchant_key),
                           json={"name": "Bad", **terms})
    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == ("invalid_offer", field)
    assert changed_tables(before, snapshot(database)) == []


def test_an_offer_is_created_with_its_terms_normalised(client: TestClient,
                                                       world: World) -> None:
    offer = make_offer(client, world.a.merchant_key, kind="percent_off", value=15,
                       max_discount=500, categories=[" Coffee ", "coffee", "BAKERY"],
                       weekdays=[5, 1, 5], from_time="22:00", until_time="02:00",
                       store_ids=[world.a.store_id], channels=["store"])
    assert offer["currency"] == "JPY" and offer["merchant_id"] == world.a.merchant_id
    assert offer["categories"] == ["bakery", "coffee"]
    assert offer["weekdays"] == [1, 5]
    assert (offer["from_time"], offer["until_time"]) == ("22:00", "02:00")
    assert offer["store_ids"] == [world.a.store_id]
    got = client.get(f"/v1/offers/{offer['id']}", headers=auth(world.a.merchant_key))
    assert got.status_code == 200 and got.json() == offer


def test_offers_are_the_merchants_own(client: TestClient, world: World) -> None:
    mine = make_offer(client, world.a.merchant_key)
    coalition = make_offer(client, world.operator_key, kind="percent_off", value=5)
    assert coalition["merchant_id"] is None and coalition["currency"] is None
    listed = client.get("/v1/offers", headers=auth(world.a.merchant_key)).json()["items"]
    assert [offer["id"] for offer in listed] == [mine["id"]]
    assert client.get("/v1/offers", headers=auth(world.b.merchant_key)).json()["items"] == []
    every = client.get("/v1/offers", headers=auth(world.operator_key)).json()["items"]
    assert {offer["id"] for offer in every} == {mine["id"], coalition["id"]}
    other = client.get(f"/v1/offers/{mine['id']}", headers=auth(world.b.merchant_key))
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
    # A coalition amount needs its currency.
    refused = client.post("/v1/offers", headers=auth(world.operator_key),
                          json={"name": "x", "kind": "amount_off", "value": 100})
    assert (refused.status_code, refused.json()["field"]) == (422, "currency")


def test_codes_are_unguessable_check_charactered_and_unique(client: TestClient,
                                                            world: World) -> None:
    offer = make_offer(client, world.a.merchant_key)
    issued = make_codes(client, world.a.merchant_key, offer["id"], count=1000)
    assert len(set(issued)) == 1000
    for text in issued[:50]:
        code = codes.parse_code(text)
        assert codes.display(code) == text
        read = client.get(f"/v1/vouchers/{text}", headers=auth(world.a.merchant_key)).json()
        assert read["barcode"] == codes.barcode_number(12345, code)
        assert read["status"] == "active" and read["max_redemptions"] == 1


BAD_CODE_REQUESTS = [({"count": 0}, "count"), ({"count": 1001, "member_id": "MEMBER"}, "count"),
                     ({"count": 1, "max_redemptions": 0}, "max_redemptions"),
                     ({"count": 1, "member_id": "MEMBER", "max_redemptions": 2},
                      "max_redemptions")]


@pytest.mark.parametrize(("body", "field"), BAD_CODE_REQUESTS,
                         ids=[f for _, f in BAD_CODE_REQUESTS])
def test_bad_code_requests_are_refused(client: TestClient, world: World, database: Database,
                                       member_a: dict[str, Any], body: dict[str, Any],
                                       field: str) -> None:
    offer = make_offer(client, world.a.merchant_key)
    if body.get("member_id") == "MEMBER":
        body = {**body, "member_id": member_a["id"]}
    before = snapshot(database)
    response = client.post(f"/v1/offers/{offer['id']}/codes",
                           headers=auth(world.a.merchant_key), json=body)
    assert response.status_code == 422, response.text
    assert (response.json()["code"], response.json()["field"]) == ("invalid_code_request",
                                                                   field)
    assert changed_tables(before, snapshot(database)) == []


def test_personal_codes_land_in_the_members_wallet(client: TestClient, world: World,
                                                   member_a: dict[str, Any]) -> None:
    offer = make_offer(client, world.a.merchant_key, valid_days=30)
    personal = make_codes(client, world.a.merchant_key, offer["id"], count=2,
                          member_id=member_a["id"])
    make_codes(client, world.a.merchant_key, offer["id"])  # a bearer code: not in the wallet
    wallet = client.get(f"/v1/members/{member_a['id']}/vouchers",
                        headers=auth(world.a.merchant_key))
    assert wallet.status_code == 200, wallet.text
    assert sorted(item["code"] for item in wallet.json()["items"]) == sorted(personal)
    for item in wallet.json()["items"]:
        assert item["member_id"] == member_a["id"] and item["status"] == "active"
        assert item["valid_until"] is not None
    other = client.get(f"/v1/members/{member_a['id']}/vouchers",
                       headers=auth(world.b.merchant_key))
    assert other.status_code == 404


def test_a_merchant_cannot_fill_the_wallet_of_a_member_it_cannot_see(
        client: TestClient, world: World, database: Database) -> None:
    """Another merchant's member and an id that is no member answer alike: nothing is
    issued, and the answer does not tell whether the id exists."""
    member_b = enrol(client, world.b)
    offer = make_offer(client, world.a.merchant_key)
    before = snapshot(database)
    answers = [client.post(f"/v1/offers/{offer['id']}/codes",
                           headers=auth(world.a.merchant_key),
                           json={"count": 1, "member_id": member_id})
               for member_id in (member_b["id"], str(uuid.uuid4()))]
    assert [answer.status_code for answer in answers] == [404, 404]
    assert answers[0].json() == answers[1].json() == {
        "type": "https://patron.dev/problems/not_found", "title": "Not found", "status": 404,
        "detail": "no such member", "code": "not_found"}
    assert changed_tables(before, snapshot(database)) == []
    # The member's own merchant, and the operator, may.
    offer_b = make_offer(client, world.b.merchant_key)
    for key in (world.b.merchant_key, world.operator_key):
        assert client.post(f"/v1/offers/{offer_b['id']}/codes", headers=auth(key), json={
            "count": 1, "member_id": member_b["id"]}).status_code == 201


def test_a_revoked_offer_issues_nothing_and_its_codes_fail(client: TestClient,
                                                           world: World) -> None:
    offer = make_offer(client, world.a.merchant_key)
    [code] = make_codes(client, world.a.merchant_key, offer["id"])
    revoked = client.post(f"/v1/offers/{offer['id']}/revoke",
                          headers=auth(world.a.merchant_key))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    more = client.post(f"/v1/offers/{offer['id']}/codes", headers=auth(world.a.merchant_key),
                       json={"count": 1})
    assert (more.status_code, more.json()["code"]) == (422, "invalid_code_request")
    check = client.post("/v1/vouchers/validate", headers=auth(world.a.pos_key),
                        json={"code": code})
    assert (check.json()["valid"], check.json()["reason"]) == (False, "voucher_revoked")


def test_the_offer_list_counts_each_offers_redemptions(client: TestClient,
                                                       world: World) -> None:
    """One grouped count for the whole list, each offer its own figure; a hold released
    is no redemption."""
    key = world.a.merchant_key
    first, second, unused = (make_offer(client, key, value=100) for _ in range(3))
    for code in make_codes(client, key, first["id"], count=3):
        assert redeem(client, world.a, code).status_code == 200
    used, held = make_codes(client, key, second["id"], count=2)
    assert redeem(client, world.a, used).status_code == 200
    hold = client.post(f"/v1/vouchers/{held}/reserve", headers=auth(world.a.pos_key),
                       json={"ttl_seconds": 60})
    assert hold.status_code == 201, hold.text
    release = client.post(f"/v1/vouchers/reservations/{hold.json()['id']}/release",
                          headers=auth(world.a.pos_key))
    assert release.status_code == 200, release.text
    listed = client.get("/v1/offers", headers=auth(key)).json()["items"]
    counts = {offer["id"]: offer["redemptions_count"] for offer in listed}
    assert counts == {first["id"]: 3, second["id"]: 1, unused["id"]: 0}
    for offer_id, count in counts.items():
        one = client.get(f"/v1/offers/{offer_id}", headers=auth(key)).json()
        assert one["redemptions_count"] == count
