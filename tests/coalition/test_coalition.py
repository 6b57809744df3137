"""Coalition miles: the operator's rates, miles on purchases (computed or reported by the
merchant), redemption at any merchant, returns, and the monthly settlement."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.coalition import rules
from patron.db import Database
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.errors import IdempotencyKeyReused, ReturnExceedsOriginal
from patron.pos.models import PosTransaction
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import Tenant, World, auth, make_tenant
from tests.pos.conftest import enrol

RATES = {"rates": [
    {"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000},
    {"currency": "USD", "spend_per_mile": 100, "mile_value_milli": 670},
    {"currency": "EUR", "spend_per_mile": 100, "mile_value_milli": 620}]}


def put_rates(client: TestClient, world: World, body: dict[str, Any] = RATES) -> Any:
    return client.put("/v1/coalition/rates", headers=auth(world.operator_key), json=body)


def sale(tenant: Tenant, currency: str, receipt_no: str, member_number: str | None,
         amounts: list[int], when: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receipt_no": receipt_no, "occurred_at": when, "currency": currency,
        "lines": [{"sku": f"S-{index}", "name": f"Item {index}", "quantity": 1,
                   "unit_price": amount} for index, amount in enumerate(amounts)], **extra}
    if member_number is not None:
        body["member"] = {"barcode": member_number}
    return body


def commit(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/pos/transactions", headers=auth(tenant.pos_key), json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.fixture
def euro(client: TestClient, world: World) -> Tenant:
    return make_tenant(client, world.operator_key, number=33333, country="FR",
                       currency="EUR", timezone="Europe/Paris")


def miles(database: Database, member_id: str) -> int:
    with database.session_scope() as session:
        return ledger.miles_balance(session, member_id=uuid.UUID(member_id))


def test_three_merchants_scenario_matches_the_hand_computed_table(
        client: TestClient, world: World, database: Database, euro: Tenant) -> None:
    assert put_rates(client, world).status_code == 200
    member = enrol(client, world.a, email="traveller@example.com")
    number = member["member_number"]
    when = (utcnow() - timedelta(minutes=1)).isoformat()

    at_a = commit(client, world.a, sale(world.a, "JPY", "A-1", number, [12_345], when))
    at_b = commit(client, world.b, sale(world.b, "USD", "B-1", number, [5_000, 3_000], when))
    at_c = commit(client, euro, sale(euro, "EUR", "C-1", number, [5_000], when,
                                     miles_to_burn=150))
    # A: 12,345 yen -> 123 miles. B: $80.00 -> 80 miles (lines 50 / 30).
    # C: 150 miles at 0.62 cent = 93 cents off; 49.07 paid -> 49 miles.
    assert (at_a["miles_earned"], at_a["miles_balance_after"]) == (123, 123)
    assert at_b["miles_earned"] == 80
    assert [line["miles_earned"] for line in at_b["lines"]] == [50, 30]
    assert (at_c["miles_burned"], at_c["miles_discount"], at_c["total"]) == (150, 93, 4907)
    assert (at_c["miles_earned"], at_c["miles_balance_after"]) == (49, 123 + 80 - 150 + 49)

    back = client.post(f"/v1/pos/transactions/{at_b['id']}/returns",
                       headers=auth(world.b.pos_key),
                       json={"return_no": "B-1-R", "occurred_at": when,
                             "lines": [{"line_no": 2, "quantity": 1}]})
    assert back.status_code == 201, back.text
    assert (back.json()["miles_clawed_back"], back.json()["miles_uncollected"]) == (30, 0)
    assert miles(database, member["id"]) == 72

    period = when[:7]
    response = client.get(f"/v1/coalition/settlements?period={period}",
                          headers=auth(world.operator_key))
    assert response.status_code == 200, response.text
    table = {line["currency"]: (line["miles_issued"], line["miles_redeemed"],
                                line["net_miles"], line["issued_value"],
                                line["redeemed_value"], line["net_value"])
             for line in response.json()["merchants"]}
    assert table == {
        # issued, redeemed, net miles; issued, redeemed, net value in minor units
        "JPY": (123, 0, -123, 123, 0, -123),
        "USD": (50, 0, -50, 34, 0, -34),          # 50 x 0.67 = 33.5 -> 34 cents
        "EUR": (49, 150, 101, 30, 93, 63),        # 49 x 0.62 = 30.38 -> 30 cents
    }
    coalition = response.json()["coalition"]
    assert coalition == {"miles_issued": 222, "miles_redeemed": 150, "net_miles": 72}
    nets = [line["net_miles"] for line in response.json()["merchants"]]
    assert sum(nets) + coalition["net_miles"] == 0
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []

    # A merchant sees its own line only; the month before is empty.
    own = client.get(f"/v1/coalition/settlements?period={period}",
                     headers=auth(euro.merchant_key)).json()
    assert [line["currency"] for line in own["merchants"]] == ["EUR"]
    assert own["coalition"] is None
    start = rules.period_bounds(period)[0] - timedelta(days=1)
    earlier = client.get(f"/v1/coalition/settlements?period={start:%Y-%m}",
                         headers=auth(world.operator_key)).json()
    assert all(line["net_miles"] == 0 for line in earlier["merchants"])


def test_miles_already_spent_are_not_taken_back(client: TestClient, world: World,
                                                database: Database, euro: Tenant) -> None:
    put_rates(client, world)
    member = enrol(client, world.a, email="fast@example.com")
    number = member["member_number"]
    when = utcnow().isoformat()
    bought = commit(client, world.a, sale(world.a, "JPY", "A-1", number, [10_000], when))
    commit(client, euro, sale(euro, "EUR", "C-1", number, [10_000], when, miles_to_burn=100))
    assert miles(database, member["id"]) == 100 - 100 + 99
    back = client.post(f"/v1/pos/transactions/{bought['id']}/returns",
                       headers=auth(world.a.pos_key),
                       json={"return_no": "R", "occurred_at": when})
    assert back.status_code == 201, back.text
    assert (back.json()["miles_clawed_back"], back.json()["miles_uncollected"]) == (99, 1)
    assert back.json()["miles_balance_after"] == 0
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []


def test_merchant_reported_miles_are_added(client: TestClient, world: World,
                                           database: Database) -> None:
    put_rates(client, world)
    member = enrol(client, world.a, email="reported@example.com")
    answer = commit(client, world.a, sale(world.a, "JPY", "A-1", member["member_number"],
                                          [1_000, 500], utcnow().isoformat(), miles=42))
    assert answer["miles_earned"] == 42
    assert [line["miles_earned"] for line in answer["lines"]] == [28, 14]
    assert miles(database, member["id"]) == 42


def test_no_rate_no_miles(client: TestClient, world: World, database: Database) -> None:
    member = enrol(client, world.a, email="norate@example.com")
    answer = commit(client, world.a, sale(world.a, "JPY", "A-1", member["member_number"],
                                          [10_000], utcnow().isoformat()))
    assert (answer["miles_earned"], answer["miles_balance_after"]) == (0, 0)


@pytest.mark.parametrize(("change", "status", "code"), [
    ({"miles_to_burn": -1}, 422, "invalid_miles"),
    ({"miles_to_burn": 10**13}, 422, "invalid_miles"),
    ({"miles": -5}, 422, "invalid_miles"),
    ({"miles_to_burn": 1.5}, 422, "validation_failed"),
    ({"miles_to_burn": 20_000}, 422, "miles_exceed_basket"),
    ({"miles_to_burn": 500}, 409, "insufficient_points"),
    ({"member": None, "miles_to_burn": 10}, 422, "burn_needs_member"),
])
def test_bad_miles_change_nothing(client: TestClient, world: World, database: Database,
                                  change: dict[str, Any], status: int, code: str) -> None:
    put_rates(client, world)
    member = enrol(client, world.a, email="bad@example.com")
    commit(client, world.a, sale(world.a, "JPY", "A-0", member["member_number"], [20_000],
                                 utcnow().isoformat()))
    body = sale(world.a, "JPY", "A-1", member["member_number"], [10_000],
                utcnow().isoformat())
    body.update(change)
    if body.get("member") is None:
        body.pop("member")
    for path in ("/v1/pos/quote", "/v1/pos/transactions"):
        before = snapshot(database)
        response = client.post(path, headers=auth(world.a.pos_key), json=body)
        assert response.status_code == status, response.text
        assert response.json()["code"] == code
        assert changed_tables(before, snapshot(database)) == []


def test_miles_not_offered_without_a_rate(client: TestClient, world: World,
                                          database: Database) -> None:
    put_rates(client, world, {"rates": [RATES["rates"][0]]})  # JPY only
    member = enrol(client, world.b, email="usd@example.com")
    before = snapshot(database)
    response = client.post("/v1/pos/transactions", headers=auth(world.b.pos_key),
                           json=sale(world.b, "USD", "B-1", member["member_number"], [1_000],
                                     utcnow().isoformat(), miles_to_burn=1))
    assert response.status_code == 422 and response.json()["code"] == "miles_not_offered"
    assert changed_tables(before, snapshot(database)) == []


def test_rates_are_replaced_by_the_operator_only(client: TestClient, world: World,
                                                 database: Database) -> None:
    assert put_rates(client, world).status_code == 200
    read = client.get("/v1/coalition/rates", headers=auth(world.a.pos_key))
    assert [rate["currency"] for rate in read.json()["rates"]] == ["EUR", "JPY", "USD"]
    refused = client.put("/v1/coalition/rates", headers=auth(world.a.merchant_key), json=RATES)
    assert refused.status_code == 403
    before = snapshot(database)
    for body, code in [
        ({"rates": [RATES["rates"][0], RATES["rates"][0]]}, "duplicate_rate"),
        ({"rates": [{**RATES["rates"][0], "currency": "XYZ"}]}, "unknown_currency"),
        ({"rates": [{**RATES["rates"][0], "spend_per_mile": 0}]}, "invalid_rate"),
        ({"rates": [{**RATES["rates"][0], "mile_value_milli": -1}]}, "invalid_rate"),
        ({"rates": [{**RATES["rates"][0], "fx": 1}]}, "validation_failed"),
    ]:
        response = put_rates(client, world, body)
        assert response.status_code == 422 and response.json()["code"] == code, response.text
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize(("period", "code"), [
    ("2026-13", "invalid_period"), ("2026-1", "invalid_period"), ("26-11", "invalid_period"),
    ("2026-11-01", "invalid_period"), ("abcd-ef", "invalid_period"),
    ("0000-01", "invalid_period"), ("", "invalid_period"),
    ("2026-11-01T00:00:00Z", "validation_failed"),  # longer than any month can be
])
def test_bad_periods_are_refused(client: TestClient, world: World, period: str,
                                 code: str) -> None:
    response = client.get(f"/v1/coalition/settlements?period={period}",
                          headers=auth(world.operator_key))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code


def test_only_operator_and_merchants_see_settlements(client: TestClient,
                                                     world: World) -> None:
    response = client.get("/v1/coalition/settlements?period=2026-11",
                          headers=auth(world.a.pos_key))
    assert response.status_code == 403


def test_settlement_values_round_half_away_from_zero() -> None:
    rate = rules.Rate(currency="USD", spend_per_mile=100, mile_value_milli=670)
    assert [rules.settlement_value(m, rate) for m in (0, 1, 50, -50, 3)] == [0, 1, 34, -34, 2]
    assert rules.redemption_discount(3, rate) == 2
    assert rules.miles_for_spend(199, rate) == 1


def test_miles_claw_back_never_asks_more_than_the_purchase_gave(
        client: TestClient, world: World, database: Database) -> None:
    put_rates(client, world)
    member = enrol(client, world.a, email="edge@example.com")
    when = utcnow().isoformat()
    first = commit(client, world.a, sale(world.a, "JPY", "A-1", member["member_number"],
                                         [10_000], when))
    commit(client, world.a, sale(world.a, "JPY", "A-2", member["member_number"], [20_000],
                                 when))
    with database.session_scope() as session:
        purchase = session.get(PosTransaction, uuid.UUID(first["id"]))
        assert purchase is not None and purchase.miles_earn_entry_id is not None
        earn_id = purchase.miles_earn_entry_id
    # The member holds 300 miles; the first purchase gave 100. Take 60 of them back: then
    # 41 more is refused although the balance could pay it.
    with database.session_scope() as session:
        entry, uncollected = ledger.claw_back_miles(
            session, earn_entry_id=earn_id, miles=60, idempotency_key="t:1", source="test")
        assert entry is not None and uncollected == 0
    with pytest.raises(ReturnExceedsOriginal), database.session_scope() as session:
        ledger.claw_back_miles(session, earn_entry_id=earn_id, miles=41,
                               idempotency_key="t:2", source="test")
    # A key already used by another entry (the purchase's own earn) is refused.
    with pytest.raises(IdempotencyKeyReused), database.session_scope() as session:
        ledger.claw_back_miles(session, earn_entry_id=earn_id, miles=10,
                               idempotency_key=f"pos:{first['id']}:miles", source="test")
    assert miles(database, member["id"]) == 240
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []
