"""`POST /v1/campaigns/{id}/simulate`: the stored purchases of the last days replayed
through a campaign, counted, costed, and nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.conftest import enrol, purchase
from tests.vouchers.conftest import make_offer

COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
          "unit_price": 400}
TEA = {"sku": "TE-1", "name": "Tea", "category": "tea", "quantity": 1, "unit_price": 300}
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)  # noon in Tokyo, a Wednesday


def _buy(client: TestClient, world: World, member: dict[str, Any], receipt: str,
         lines: list[dict[str, Any]], at: datetime) -> None:
    clock.freeze(at)
    done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no=receipt, lines=lines,
                                     member={"member_id": member["id"]}))
    assert done.status_code == 201, done.text


def test_a_simulation_counts_members_purchases_limits_and_cost(
        client: TestClient, world: World, database: Database) -> None:
    ann, bob, cy = (enrol(client, world.a) for _ in range(3))
    _buy(client, world, ann, "R-1", [COFFEE], NOW - timedelta(days=3))
    _buy(client, world, ann, "R-2", [COFFEE], NOW - timedelta(days=2))
    _buy(client, world, bob, "R-3", [COFFEE, TEA], NOW - timedelta(days=1))
    _buy(client, world, cy, "R-4", [TEA], NOW - timedelta(hours=5))
    _buy(client, world, cy, "R-5", [COFFEE], NOW - timedelta(days=40))  # out of the window
    anonymous = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                            json=purchase(receipt_no="R-6", lines=[COFFEE]))
    assert anonymous.status_code == 201
    clock.freeze(NOW)
    offer = make_offer(client, world.a.merchant_key, kind="amount_off", value=150)
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Coffee lovers", "trigger": "checkout",
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "issue_voucher", "offer_id": offer["id"]},
                    {"type": "bonus_points", "points": 20}],
        "per_member": {"count": 1, "period_days": 7}})
    assert created.status_code == 201, created.text
    before = snapshot(database)
    simulated = client.post(f"/v1/campaigns/{created.json()['id']}/simulate",
                            headers=auth(world.a.merchant_key), json={"days": 30})
    assert simulated.status_code == 200, simulated.text
    report = simulated.json()
    assert changed_tables(before, snapshot(database)) == []  # nothing written
    assert report["transactions_evaluated"] == 4  # identified, in the window
    assert report["transactions_triggered"] == 3 and report["members_triggered"] == 2
    assert report["stopped_by_limits"] == 1  # Ann's second coffee within the week
    assert report["outcomes"] == 2 and report["transactions_held_out"] == 0
    assert report["cost"] == {"vouchers": 2, "amount_off_minor": 300, "points": 40}
    assert report["truncated"] is False


def test_a_simulation_honours_the_control_group_and_the_window_in_local_time(
        client: TestClient, world: World) -> None:
    members = [enrol(client, world.a) for _ in range(10)]
    for index, member in enumerate(members):
        _buy(client, world, member, f"R-{index}", [COFFEE], NOW - timedelta(hours=index + 1))
    clock.freeze(NOW)
    offer = make_offer(client, world.a.merchant_key, kind="amount_off", value=100)
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Mornings", "trigger": "checkout", "control_share_bp": 5000,
        "conditions": {"field": "env.hour", "op": "lt", "value": 11},
        "actions": [{"type": "issue_voucher", "offer_id": offer["id"]}]})
    report = client.post(f"/v1/campaigns/{created.json()['id']}/simulate",
                         headers=auth(world.a.merchant_key), json={}).json()
    # Noon in Tokyo minus 1..10 hours: the purchases at 02:00-10:00 local are mornings.
    assert report["transactions_evaluated"] == 10 and report["transactions_triggered"] == 9
    assert 0 < report["transactions_held_out"] < 9
    assert report["outcomes"] == 9 - report["transactions_held_out"]


def test_bad_simulation_requests(client: TestClient, world: World) -> None:
    offer = make_offer(client, world.a.merchant_key, kind="amount_off", value=100)
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "X", "trigger": "checkout",
        "actions": [{"type": "issue_voucher", "offer_id": offer["id"]}]})
    path = f"/v1/campaigns/{created.json()['id']}/simulate"
    for body in ({"days": 0}, {"days": 400}, {"days": "7"}, {"weeks": 1}):
        assert client.post(path, headers=auth(world.a.merchant_key),
                           json=body).status_code == 422
    assert client.post(path, headers=auth(world.b.merchant_key), json={}).status_code == 404
