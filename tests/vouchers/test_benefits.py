"""Threshold benefits and stamp cards through the API: rules, the benefits a purchase
issues (exactly once per crossing, also on a replay), what a return undoes, refusals that
change nothing."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import utcnow
from patron.notify.models import OutboxEvent
from patron.vouchers.benefits.models import BenefitProgress, IssuedBenefit
from patron.vouchers.benefits.rules import MAX_BENEFITS_PER_PURCHASE
from patron.vouchers.models import Voucher
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import Tenant, World, auth
from tests.pos.conftest import enrol
from tests.vouchers.conftest import make_offer

# The default program: 1 point per 100 yen, earned on what is paid.


def make_rule(client: TestClient, key: str, **fields: Any) -> dict[str, Any]:
    body = {"name": "Rule", "measure": "points", "mode": "once", "threshold": 1000, **fields}
    response = client.post("/v1/benefit-rules", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    rule: dict[str, Any] = response.json()
    return rule


def line(price: int, quantity: int = 1, sku: str = "GOODS", category: str = "general"
         ) -> dict[str, Any]:
    return {"sku": sku, "name": sku, "category": category, "quantity": quantity,
            "unit_price": price}


COFFEE = line(350, sku="CF-1", category="Coffee")
BREAD = line(400, sku="BR-1", category="bakery")


def buy(client: TestClient, tenant: Tenant, member: dict[str, Any] | None, receipt_no: str,
        lines: list[dict[str, Any]], currency: str = "JPY", **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/pos/transactions", headers=auth(tenant.pos_key), json=body(
        member, receipt_no, lines, currency=currency, **extra))
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def body(member: dict[str, Any] | None, receipt_no: str, lines: list[dict[str, Any]],
         currency: str = "JPY", **extra: Any) -> dict[str, Any]:
    sale: dict[str, Any] = {"receipt_no": receipt_no, "occurred_at": utcnow().isoformat(),
                            "currency": currency, "lines": lines, **extra}
    if member is not None:
        sale["member"] = {"barcode": member["member_number"]}
    return sale


def give_back(client: TestClient, tenant: Tenant, sale: dict[str, Any], return_no: str = "RT-1",
              lines: list[dict[str, int]] | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {"return_no": return_no, "occurred_at": utcnow().isoformat()}
    if lines is not None:
        payload["lines"] = lines
    response = client.post(f"/v1/pos/transactions/{sale['id']}/returns",
                           headers=auth(tenant.pos_key), json=payload)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def count(database: Database, rule: dict[str, Any], member: dict[str, Any]) -> int | None:
    with database.session_scope() as session:
        return session.scalar(select(BenefitProgress.count).where(
            BenefitProgress.rule_id == uuid.UUID(rule["id"]),
            BenefitProgress.member_id == uuid.UUID(member["id"])))


def events(database: Database, type: str) -> list[dict[str, Any]]:
    with database.session_scope() as session:
        return [event.payload for event in session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == type)
            .order_by(OutboxEvent.created_at))]


def voucher_state(client: TestClient, tenant: Tenant, code: str) -> str:
    response = client.get(f"/v1/vouchers/{code}", headers=auth(tenant.merchant_key))
    assert response.status_code == 200, response.text
    state: str = response.json()["status"]
    return state


@pytest.fixture
def member(client: TestClient, world: World) -> dict[str, Any]:
    return enrol(client, world.a)


@pytest.fixture
def thank_you(client: TestClient, world: World) -> dict[str, Any]:
    return make_offer(client, world.a.merchant_key, name="500 yen thank-you",
                      kind="amount_off", value=500)


# --- points thresholds ------------------------------------------------------------------------

def test_crossing_a_threshold_issues_exactly_one_voucher_into_the_wallet(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    first = buy(client, world.a, member, "P-1", [line(60_000)])
    assert (first["points_earned"], first["benefits"]) == (600, [])
    second = buy(client, world.a, member, "P-2", [line(50_000)])
    assert second["points_earned"] == 500
    [benefit] = second["benefits"]
    assert benefit["offer_id"] == thank_you["id"] and benefit["rule_id"] == rule["id"]
    assert (benefit["name"], benefit["crossing"]) == ("500 yen thank-you", 1)
    # "once": later purchases issue nothing more.
    assert buy(client, world.a, member, "P-3", [line(200_000)])["benefits"] == []
    assert count(database, rule, member) == 3100

    wallet = client.get(f"/v1/members/{member['id']}/vouchers",
                        headers=auth(world.a.merchant_key)).json()["items"]
    assert [(v["code"], v["member_id"], v["status"], v["max_redemptions"])
            for v in wallet] == [(benefit["code"], member["id"], "active", 1)]
    with database.session_scope() as session:
        assert session.scalars(select(Voucher.source)).all() == ["benefit"]
        assert session.scalar(select(func.count()).select_from(IssuedBenefit)) == 1
    [event] = events(database, "benefit.issued")
    assert {key: event[key] for key in ("code", "rule_id", "offer_id", "crossing", "measure",
                                        "member_id", "transaction_id", "merchant_id")} == {
        "code": benefit["code"], "rule_id": rule["id"], "offer_id": thank_you["id"],
        "crossing": 1, "measure": "points", "member_id": member["id"],
        "transaction_id": second["id"], "merchant_id": world.a.merchant_id}
    read = client.get(f"/v1/benefit-rules/{rule['id']}", headers=auth(world.a.merchant_key))
    assert read.json()["issued"] == 1
    # The stored answer carries the benefit too.
    again = client.get(f"/v1/pos/transactions/{second['id']}", headers=auth(world.a.pos_key))
    assert again.json()["benefits"] == [benefit]

    # The member spends it like any personal voucher.
    used = buy(client, world.a, member, "P-4", [line(3_000)],
               vouchers=[{"code": benefit["code"]}])
    assert used["voucher_discount"] == 500
    assert voucher_state(client, world.a, benefit["code"]) == "used"


def test_two_crossings_in_one_purchase_issue_two_vouchers(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], mode="every",
                     threshold=100)
    sale = buy(client, world.a, member, "P-1", [line(25_000)])
    assert [b["crossing"] for b in sale["benefits"]] == [1, 2]
    assert len({b["code"] for b in sale["benefits"]}) == 2
    assert buy(client, world.a, member, "P-2", [line(4_000)])["benefits"] == []
    later = buy(client, world.a, member, "P-3", [line(6_000)])
    assert [b["crossing"] for b in later["benefits"]] == [3]
    assert count(database, rule, member) == 350
    assert len(events(database, "benefit.issued")) == 3


def test_a_replayed_receipt_never_issues_again(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], mode="every",
                     threshold=100)
    sale = body(member, "P-1", [line(25_000)])
    first = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json=sale)
    before = snapshot(database)
    for _ in range(3):
        replay = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json=sale)
        assert (replay.status_code, replay.content) == (201, first.content)
    assert changed_tables(before, snapshot(database)) == []
    assert len(first.json()["benefits"]) == 2
    assert count(database, rule, member) == 250


def test_one_purchase_issues_at_most_the_cap_per_rule(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], mode="every",
                     threshold=1)
    sale = buy(client, world.a, member, "P-1", [line(15_000)])
    assert [b["crossing"] for b in sale["benefits"]] == list(
        range(1, MAX_BENEFITS_PER_PURCHASE + 1))
    assert count(database, rule, member) == 150
    # The count went past the rest; the next point is the next crossing.
    assert [b["crossing"] for b in buy(client, world.a, member, "P-2",
                                       [line(100)])["benefits"]] == [151]


# --- stamp cards ------------------------------------------------------------------------------

def test_the_tenth_coffee_purchase_completes_the_stamp_card(
        client: TestClient, world: World, database: Database, member: dict[str, Any]) -> None:
    free_coffee = make_offer(client, world.a.merchant_key, name="A coffee on us",
                             kind="free_item", value=0, item_category="coffee")
    rule = make_rule(client, world.a.merchant_key, offer_id=free_coffee["id"],
                     measure="purchases", mode="every", threshold=10, category=" COFFEE ")
    assert rule["category"] == "coffee"
    for number in range(1, 10):
        assert buy(client, world.a, member, f"C-{number}", [COFFEE, BREAD])["benefits"] == []
    # Bread alone is no stamp; two coffees in one purchase are one stamp.
    assert buy(client, world.a, member, "B-1", [BREAD])["benefits"] == []
    assert count(database, rule, member) == 9
    tenth = buy(client, world.a, member, "C-10", [{**COFFEE, "quantity": 2}])
    [benefit] = tenth["benefits"]
    assert (benefit["name"], benefit["crossing"]) == ("A coffee on us", 1)
    # Anonymous purchases count for nobody.
    buy(client, world.a, None, "ANON-1", [COFFEE])
    assert count(database, rule, member) == 10
    free = buy(client, world.a, member, "C-11", [COFFEE, BREAD],
               vouchers=[{"code": benefit["code"]}])
    assert free["voucher_discount"] == 350


def test_an_items_card_counts_units_of_one_sku(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], measure="items",
                     mode="every", threshold=10, sku="CF-1")
    sale = buy(client, world.a, member, "P-1", [{**COFFEE, "quantity": 25}, BREAD])
    assert [b["crossing"] for b in sale["benefits"]] == [1, 2]
    assert count(database, rule, member) == 25


# --- returns ----------------------------------------------------------------------------------

def test_a_return_below_the_threshold_revokes_the_unused_benefit_and_frees_its_crossing(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    buy(client, world.a, member, "P-1", [line(60_000)])
    crossing = buy(client, world.a, member, "P-2", [line(50_000)])
    [benefit] = crossing["benefits"]
    answer = give_back(client, world.a, crossing)
    assert answer["benefits_revoked"] == [benefit["code"]]
    assert voucher_state(client, world.a, benefit["code"]) == "revoked"
    assert count(database, rule, member) == 600
    [revoked] = events(database, "benefit.revoked")
    assert (revoked["code"], revoked["return_id"]) == (benefit["code"], answer["id"])
    # Crossing the threshold again earns the benefit again, with a new code.
    again = buy(client, world.a, member, "P-3", [line(40_000)])
    [new] = again["benefits"]
    assert new["crossing"] == 1 and new["code"] != benefit["code"]
    read = client.get(f"/v1/benefit-rules/{rule['id']}", headers=auth(world.a.merchant_key))
    assert read.json()["issued"] == 1


def test_returning_an_earlier_purchase_undoes_the_crossing_too(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    """The rule is about the member's count, not about which purchase crossed."""
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    first = buy(client, world.a, member, "P-1", [line(60_000)])
    [benefit] = buy(client, world.a, member, "P-2", [line(50_000)])["benefits"]
    assert give_back(client, world.a, first)["benefits_revoked"] == [benefit["code"]]
    assert count(database, rule, member) == 500


def test_a_used_benefit_stays_and_its_crossing_is_not_counted_twice(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], mode="every")
    crossing = buy(client, world.a, member, "P-1", [line(110_000)])
    [benefit] = crossing["benefits"]
    used = buy(client, world.a, member, "P-2", [line(30_000)],
               vouchers=[{"code": benefit["code"]}])
    assert used["points_earned"] == 295
    assert count(database, rule, member) == 1395

    answer = give_back(client, world.a, crossing)
    assert answer["points_clawed_back"] == 1100 and answer["benefits_revoked"] == []
    assert voucher_state(client, world.a, benefit["code"]) == "used"
    assert count(database, rule, member) == 295
    # Reaching 1,000 again is the crossing already rewarded: nothing new.
    assert buy(client, world.a, member, "P-3", [line(80_000)])["benefits"] == []
    # The next multiple is a new crossing.
    [second] = buy(client, world.a, member, "P-4", [line(100_000)])["benefits"]
    assert second["crossing"] == 2
    assert count(database, rule, member) == 2095
    assert events(database, "benefit.revoked") == []


def test_a_return_that_leaves_the_count_above_the_threshold_revokes_nothing(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    sale = buy(client, world.a, member, "P-1", [line(30_000, quantity=5)])
    [benefit] = sale["benefits"]
    one = give_back(client, world.a, sale, "RT-1", lines=[{"line_no": 1, "quantity": 1}])
    assert (one["points_clawed_back"], one["benefits_revoked"]) == (300, [])
    assert voucher_state(client, world.a, benefit["code"]) == "active"
    assert count(database, rule, member) == 1200
    two = give_back(client, world.a, sale, "RT-2", lines=[{"line_no": 1, "quantity": 2}])
    assert two["benefits_revoked"] == [benefit["code"]]
    assert count(database, rule, member) == 600
    # The rest comes back: the count goes to zero, nothing left to revoke.
    rest = give_back(client, world.a, sale, "RT-3")
    assert rest["benefits_revoked"] == [] and count(database, rule, member) == 0


def test_a_purchase_from_before_the_rule_takes_nothing_back(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    before_rule = buy(client, world.a, member, "P-0", [line(50_000)])
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    buy(client, world.a, member, "P-1", [line(60_000)])
    give_back(client, world.a, before_rule)
    assert count(database, rule, member) == 600
    [benefit] = buy(client, world.a, member, "P-2", [line(40_000)])["benefits"]
    assert benefit["crossing"] == 1


def test_a_stamp_goes_back_with_the_last_matching_unit(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"],
                     measure="purchases", mode="every", threshold=2, category="coffee")
    first = buy(client, world.a, member, "C-1", [{**COFFEE, "quantity": 2}, BREAD])
    [benefit] = buy(client, world.a, member, "C-2", [COFFEE])["benefits"]
    bread = give_back(client, world.a, first, "RT-1", lines=[{"line_no": 2, "quantity": 1}])
    one = give_back(client, world.a, first, "RT-2", lines=[{"line_no": 1, "quantity": 1}])
    assert bread["benefits_revoked"] == one["benefits_revoked"] == []
    assert count(database, rule, member) == 2
    last = give_back(client, world.a, first, "RT-3", lines=[{"line_no": 1, "quantity": 1}])
    assert last["benefits_revoked"] == [benefit["code"]]
    assert count(database, rule, member) == 1


# --- coalition miles --------------------------------------------------------------------------

def test_a_miles_rule_counts_at_every_merchant(client: TestClient, world: World,
                                               database: Database,
                                               member: dict[str, Any]) -> None:
    rates = client.put("/v1/coalition/rates", headers=auth(world.operator_key), json={"rates": [
        {"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000},
        {"currency": "USD", "spend_per_mile": 100, "mile_value_milli": 670}]})
    assert rates.status_code == 200, rates.text
    bonus = make_offer(client, world.operator_key, name="Coalition bonus", kind="bonus_points",
                       value=100)
    rule = make_rule(client, world.operator_key, offer_id=bonus["id"], measure="miles",
                     threshold=50)
    assert rule["merchant_id"] is None
    here = buy(client, world.a, member, "M-1", [line(3_000)])
    assert (here["miles_earned"], here["benefits"]) == (30, [])
    there = buy(client, world.b, member, "M-2", [line(2_000)], currency="USD")
    assert there["miles_earned"] == 20
    [benefit] = there["benefits"]
    assert benefit["offer_id"] == bonus["id"]
    assert count(database, rule, member) == 50
    # A coalition code: in the wallet at every merchant.
    for tenant in (world.a, world.b):
        wallet = client.get(f"/v1/members/{member['id']}/vouchers",
                            headers=auth(tenant.merchant_key)).json()["items"]
        assert [v["code"] for v in wallet] == [benefit["code"]]
    [event] = events(database, "benefit.issued")
    assert event["merchant_id"] == world.b.merchant_id
    # Returning the purchase at A takes its miles back below the threshold.
    assert give_back(client, world.a, here)["benefits_revoked"] == [benefit["code"]]
    assert count(database, rule, member) == 20


# --- rules: reading, stopping, refusals -------------------------------------------------------

def test_rules_are_listed_read_and_deactivated(client: TestClient, world: World,
                                               database: Database, member: dict[str, Any],
                                               thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], name="Big spender",
                     mode="every", threshold=100)
    assert {key: rule[key] for key in ("merchant_id", "name", "measure", "mode", "threshold",
                                       "offer_id", "sku", "category", "active", "issued",
                                       "deactivated_at")} == {
        "merchant_id": world.a.merchant_id, "name": "Big spender", "measure": "points",
        "mode": "every", "threshold": 100, "offer_id": thank_you["id"], "sku": None,
        "category": None, "active": True, "issued": 0, "deactivated_at": None}
    other = make_offer(client, world.b.merchant_key, name="B's", kind="amount_off", value=1)
    theirs = make_rule(client, world.b.merchant_key, offer_id=other["id"])
    mine = client.get("/v1/benefit-rules", headers=auth(world.a.merchant_key)).json()["items"]
    assert [r["id"] for r in mine] == [rule["id"]]
    everyone = client.get("/v1/benefit-rules", headers=auth(world.operator_key)).json()["items"]
    assert {r["id"] for r in everyone} == {rule["id"], theirs["id"]}
    foreign = client.get(f"/v1/benefit-rules/{theirs['id']}", headers=auth(world.a.merchant_key))
    assert (foreign.status_code, foreign.json()["code"]) == (404, "not_found")

    buy(client, world.a, member, "P-1", [line(25_000)])
    stopped = client.post(f"/v1/benefit-rules/{rule['id']}/deactivate",
                          headers=auth(world.a.merchant_key))
    assert stopped.status_code == 200, stopped.text
    assert (stopped.json()["active"], stopped.json()["issued"]) == (False, 2)
    before = snapshot(database)
    again = client.post(f"/v1/benefit-rules/{rule['id']}/deactivate",
                        headers=auth(world.a.merchant_key))
    assert again.json() == stopped.json()
    assert changed_tables(before, snapshot(database)) == []
    # A stopped rule counts nothing; the benefits it issued stay usable.
    assert buy(client, world.a, member, "P-2", [line(25_000)])["benefits"] == []
    assert count(database, rule, member) == 250
    wallet = client.get(f"/v1/members/{member['id']}/vouchers",
                        headers=auth(world.a.merchant_key)).json()["items"]
    assert [v["status"] for v in wallet] == ["active", "active"]


def test_a_revoked_offer_stops_its_rules(client: TestClient, world: World, database: Database,
                                         member: dict[str, Any],
                                         thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"], mode="every",
                     threshold=100)
    revoked = client.post(f"/v1/offers/{thank_you['id']}/revoke",
                          headers=auth(world.a.merchant_key))
    assert revoked.status_code == 200, revoked.text
    assert buy(client, world.a, member, "P-1", [line(25_000)])["benefits"] == []
    assert count(database, rule, member) is None


def test_only_merchant_and_operator_keys_manage_rules(client: TestClient, world: World,
                                                      database: Database,
                                                      thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    before = snapshot(database)
    key = auth(world.a.pos_key)
    for method, url, payload in [
            ("POST", "/v1/benefit-rules", {"name": "R", "measure": "points", "mode": "once",
                                           "threshold": 10, "offer_id": thank_you["id"]}),
            ("GET", "/v1/benefit-rules", None), ("GET", f"/v1/benefit-rules/{rule['id']}", None),
            ("POST", f"/v1/benefit-rules/{rule['id']}/deactivate", None)]:
        response = client.request(method, url, headers=key, json=payload)
        assert (response.status_code, response.json()["code"]) == (403, "forbidden"), url
    assert changed_tables(before, snapshot(database)) == []


def _refusals(world: World, offers: dict[str, str]) -> list[tuple[str, dict[str, Any], int,
                                                                  str, str | None]]:
    """(whose key, body, status, code, field): each bad definition on its own."""
    good = {"name": "R", "measure": "points", "mode": "once", "threshold": 10,
            "offer_id": offers["a"]}
    return [
        ("merchant", {**good, "threshold": 0}, 422, "invalid_benefit_threshold", "threshold"),
        ("merchant", {**good, "threshold": 10**12 + 1}, 422, "invalid_benefit_threshold",
         "threshold"),
        ("merchant", {**good, "sku": "CF-1"}, 422, "invalid_benefit_filter", "sku"),
        ("merchant", {**good, "category": "coffee"}, 422, "invalid_benefit_filter", "category"),
        ("merchant", {**good, "measure": "items", "sku": "CF-1", "category": "coffee"}, 422,
         "invalid_benefit_filter", "category"),
        ("merchant", {**good, "offer_id": str(uuid.uuid4())}, 404, "not_found",
         "offer_id"),
        ("merchant", {**good, "offer_id": offers["b"]}, 404, "not_found", "offer_id"),
        ("merchant", {**good, "offer_id": offers["coalition"]}, 404, "not_found",
         "offer_id"),
        ("merchant", {**good, "offer_id": offers["revoked"]}, 422, "invalid_benefit_offer",
         "offer_id"),
        ("merchant", {**good, "merchant_id": world.b.merchant_id}, 404, "not_found",
         "merchant_id"),
        ("merchant", {**good, "measure": "miles", "offer_id": offers["coalition"]}, 403,
         "forbidden", "measure"),
        ("operator", good, 422, "invalid_benefit_owner", "merchant_id"),
        ("operator", {**good, "merchant_id": str(uuid.uuid4())}, 404, "not_found",
         "merchant_id"),
        ("operator", {**good, "measure": "miles", "offer_id": offers["coalition"],
                      "merchant_id": world.a.merchant_id}, 422, "invalid_benefit_owner",
         "merchant_id"),
        ("operator", {**good, "merchant_id": world.a.merchant_id,
                      "offer_id": offers["coalition"]}, 422, "invalid_benefit_offer",
         "offer_id"),
        ("operator", {**good, "merchant_id": world.a.merchant_id, "offer_id": offers["b"]}, 422,
         "invalid_benefit_offer", "offer_id"),
        ("operator", {**good, "measure": "miles", "offer_id": offers["a"]}, 422,
         "invalid_benefit_offer", "offer_id"),
        ("operator", {**good, "measure": "miles", "offer_id": offers["coalition"],
                      "threshold": -5}, 422, "invalid_benefit_threshold", "threshold"),
    ]


def test_bad_definitions_are_refused_with_their_own_code_and_change_nothing(
        client: TestClient, world: World, database: Database) -> None:
    offers = {"a": make_offer(client, world.a.merchant_key)["id"],
              "b": make_offer(client, world.b.merchant_key)["id"],
              "coalition": make_offer(client, world.operator_key, kind="bonus_points",
                                      value=10)["id"],
              "revoked": make_offer(client, world.a.merchant_key)["id"]}
    client.post(f"/v1/offers/{offers['revoked']}/revoke", headers=auth(world.a.merchant_key))
    keys = {"merchant": world.a.merchant_key, "operator": world.operator_key}
    before = snapshot(database)
    for whose, payload, status, code, field in _refusals(world, offers):
        response = client.post("/v1/benefit-rules", headers=auth(keys[whose]), json=payload)
        problem = response.json()
        assert (response.status_code, problem["code"], problem.get("field")) == (
            status, code, field), (whose, payload, problem)
    assert changed_tables(before, snapshot(database)) == []
    # The controls: the good definitions are accepted.
    make_rule(client, world.a.merchant_key, offer_id=offers["a"], threshold=10)
    make_rule(client, world.operator_key, offer_id=offers["a"], merchant_id=world.a.merchant_id)
    make_rule(client, world.operator_key, offer_id=offers["coalition"], measure="miles")


def test_a_return_after_the_rule_stopped_still_undoes_its_crossing(
        client: TestClient, world: World, database: Database, member: dict[str, Any],
        thank_you: dict[str, Any]) -> None:
    rule = make_rule(client, world.a.merchant_key, offer_id=thank_you["id"])
    sale = buy(client, world.a, member, "P-1", [line(120_000)])
    [benefit] = sale["benefits"]
    stopped = client.post(f"/v1/benefit-rules/{rule['id']}/deactivate",
                          headers=auth(world.a.merchant_key))
    assert stopped.status_code == 200, stopped.text
    assert give_back(client, world.a, sale)["benefits_revoked"] == [benefit["code"]]
    assert count(database, rule, member) == 0
