"""Campaigns at a real checkout (``patron.campaigns.engine`` in ``POST /v1/pos/...``):
one end-to-end test per group of variables, each changing the checkout's ``offers``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.campaigns.models import CampaignOutcome
from patron.db import Database
from patron.kit.clock import clock
from patron.notify.models import OutboxEvent
from patron.scores.models import MemberStats, ScoreModel
from patron.vouchers import codes
from patron.vouchers.models import Voucher
from tests.conftest import World, auth
from tests.pos.conftest import enrol, purchase
from tests.vouchers.conftest import make_offer

COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
          "unit_price": 400}
TEA = {"sku": "TE-1", "name": "Tea", "category": "tea", "quantity": 1, "unit_price": 400}
# A Wednesday, 09:30 in Tokyo (merchant A's stores).
MORNING = datetime(2026, 12, 2, 0, 30, tzinfo=UTC)


@pytest.fixture
def croissant(client: TestClient, world: World) -> str:
    offer_id: str = make_offer(client, world.a.merchant_key, kind="free_item",
                               item_sku="CR-1", name="Free croissant")["id"]
    return offer_id


def _campaign(client: TestClient, world: World, offer_id: str, conditions: Any,
              **extra: Any) -> dict[str, Any]:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Croissant", "trigger": "checkout", "conditions": conditions,
        "actions": [{"type": "issue_voucher", "offer_id": offer_id}], **extra})
    assert created.status_code == 201, created.text
    campaign: dict[str, Any] = created.json()
    return campaign


def _checkout(client: TestClient, world: World, member: dict[str, Any], receipt: str,
              lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no=receipt, lines=lines or [COFFEE],
                                     member={"member_id": member["id"]}))
    assert done.status_code == 201, done.text
    answer: dict[str, Any] = done.json()
    return answer


def _weather(client: TestClient, world: World, condition: str) -> None:
    put = client.put(f"/v1/stores/{world.a.store_id}/weather",
                     headers=auth(world.a.merchant_key), json={"condition": condition})
    assert put.status_code == 200, put.text


def _stock(client: TestClient, world: World, *, overstock: bool) -> None:
    put = client.put(f"/v1/stores/{world.a.store_id}/inventory",
                     headers=auth(world.a.merchant_key),
                     json={"items": [{"sku": "CR-1", "quantity": 40, "overstock": overstock}]})
    assert put.status_code == 200, put.text


def _cuts(database: Database, world: World) -> None:
    """Merchant A's RFM cuts, as a refit would have stored them."""
    with database.session_scope() as session:
        session.add(ScoreModel(
            merchant_id=uuid.UUID(world.a.merchant_id), fitted_at=MORNING - timedelta(days=1),
            members=100, repeat_members=60,
            rfm_boundaries={"recency_days": [7, 20, 45, 90], "frequency": [1, 2, 4, 8],
                            "spend_minor": [500, 1500, 4000, 9000]},
            bgnbd=None, gamma_gamma=None, note="test"))


def _at_risk(client: TestClient, world: World, database: Database) -> dict[str, Any]:
    """A member who bought often, long ago: recency 1, frequency 5 against the cuts.
    (A purchase makes them recent: each checkout below has a member of its own.)"""
    member = enrol(client, world.a)
    with database.session_scope() as session:
        session.add(MemberStats(
            member_id=uuid.UUID(member["id"]), merchant_id=uuid.UUID(world.a.merchant_id),
            first_purchase_at=MORNING - timedelta(days=400),
            last_purchase_at=MORNING - timedelta(days=120), purchase_count=12,
            spend_minor=12_000, first_spend_minor=1_000))
    return member


def test_the_rainy_morning_croissant_for_an_at_risk_coffee_buyer(
        client: TestClient, world: World, database: Database, croissant: str) -> None:
    """The issue's example: a coffee buyer in the at-risk segment, on a rainy weekday
    morning, in a store with overstocked croissants, gets a croissant voucher — and does
    not on a sunny day or when croissants are scarce."""
    clock.freeze(MORNING)
    _campaign(client, world, croissant, {"all": [
        {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        {"field": "member.segment", "op": "eq", "value": "at_risk"},
        {"field": "env.weather", "op": "in", "value": ["rain", "drizzle"]},
        {"field": "env.weekday", "op": "between", "value": [1, 5]},
        {"field": "env.hour", "op": "lt", "value": 11},
        {"field": "inventory.overstock", "key": "CR-1", "op": "eq", "value": True}]})
    _cuts(database, world)
    _stock(client, world, overstock=True)

    _weather(client, world, "sunny")
    assert _checkout(client, world, _at_risk(client, world, database), "R-1")["offers"] == []
    _weather(client, world, "rain")
    _stock(client, world, overstock=False)
    assert _checkout(client, world, _at_risk(client, world, database), "R-2")["offers"] == []
    _stock(client, world, overstock=True)
    assert _checkout(client, world, _at_risk(client, world, database), "R-3",
                     lines=[TEA])["offers"] == []
    loyal = enrol(client, world.a)  # a first purchase: not at risk
    assert _checkout(client, world, loyal, "R-4")["offers"] == []
    member = _at_risk(client, world, database)
    answer = _checkout(client, world, member, "R-5")
    [offer] = answer["offers"]
    voucher = offer["voucher"]
    assert offer["name"] == "Croissant" and voucher["offer"] == "Free croissant"
    assert voucher["barcode"] == codes.barcode_number(world.a.number,
                                                      codes.parse_code(voucher["code"]))
    with database.session_scope() as session:  # in the member's wallet, and on the phone
        stored = session.scalars(select(Voucher).where(
            Voucher.code == codes.parse_code(voucher["code"]))).one()
        assert str(stored.member_id) == member["id"] and stored.max_redemptions == 1
        events = session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "campaign.outcome")).all()
        assert [event.payload["voucher"]["code"] for event in events] == [voucher["code"]]
        assert session.scalar(select(CampaignOutcome.voucher_id)) == stored.id


def test_the_purchase_decides(client: TestClient, world: World, croissant: str) -> None:
    _campaign(client, world, croissant, {"field": "purchase.category_quantity",
                                         "key": "coffee", "op": "ge", "value": 2})
    member = enrol(client, world.a)
    assert _checkout(client, world, member, "R-1")["offers"] == []
    two = [{**COFFEE, "quantity": 2}]
    assert len(_checkout(client, world, member, "R-2", lines=two)["offers"]) == 1


def test_the_member_decides(client: TestClient, world: World, croissant: str) -> None:
    _campaign(client, world, croissant, {"all": [
        {"field": "member.consents", "op": "contains", "value": "email"},
        {"field": "member.purchases", "op": "ge", "value": 1}]})
    member = enrol(client, world.a)
    patched = client.post(f"/v1/members/{member['id']}/consents",
                          headers=auth(world.a.merchant_key), json={"email": True})
    assert patched.status_code == 200, patched.text
    # As they came in: no purchase before this one.
    assert _checkout(client, world, member, "R-1")["offers"] == []
    assert len(_checkout(client, world, member, "R-2")["offers"]) == 1
    stranger = enrol(client, world.a)
    _checkout(client, world, stranger, "R-3")
    assert _checkout(client, world, stranger, "R-4")["offers"] == []  # no consent


def test_the_environment_decides(client: TestClient, world: World, croissant: str) -> None:
    _campaign(client, world, croissant, {"all": [
        {"field": "env.hour", "op": "lt", "value": 11},
        {"field": "env.holiday", "op": "eq", "value": False}]})
    member = enrol(client, world.a)
    clock.freeze(MORNING)  # 09:30 in Tokyo
    assert len(_checkout(client, world, member, "R-1")["offers"]) == 1
    clock.freeze(MORNING + timedelta(hours=5))  # 14:30
    assert _checkout(client, world, member, "R-2")["offers"] == []
    clock.freeze(datetime(2027, 1, 1, 0, 30, tzinfo=UTC))  # 09:30 on New Year's Day
    assert _checkout(client, world, member, "R-3")["offers"] == []


def test_the_inventory_decides(client: TestClient, world: World, croissant: str) -> None:
    _campaign(client, world, croissant, {"field": "inventory.stock", "key": "CR-1",
                                         "op": "gt", "value": 10})
    member = enrol(client, world.a)
    assert _checkout(client, world, member, "R-1")["offers"] == []  # no figures: unknown
    _stock(client, world, overstock=False)
    assert len(_checkout(client, world, member, "R-2")["offers"]) == 1


def test_limits_priority_exclusivity_points_and_messages(
        client: TestClient, world: World, database: Database, croissant: str) -> None:
    bonus = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Bonus", "trigger": "checkout", "priority": 5,
        "actions": [{"type": "bonus_points", "points": 50},
                    {"type": "message", "text": "Thanks!"}],
        "per_member": {"count": 1, "period_days": 7}})
    assert bonus.status_code == 201, bonus.text
    _campaign(client, world, croissant, {"all": []}, priority=1, max_outcomes=1)
    member = enrol(client, world.a)
    first = _checkout(client, world, member, "R-1")
    assert [offer["name"] for offer in first["offers"]] == ["Bonus", "Croissant"]
    assert first["offers"][0]["points"] == 50 and first["offers"][0]["message"] == "Thanks!"
    second = _checkout(client, world, member, "R-2")
    assert second["offers"] == []  # the bonus once a week; the croissant's budget spent
    assert second["balance_after"] - first["balance_after"] == second["points_earned"]
    exclusive = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Only me", "trigger": "checkout", "priority": 9, "exclusive": True,
        "actions": [{"type": "bonus_points", "points": 1}]})
    assert exclusive.status_code == 201
    other = enrol(client, world.a)
    assert [o["name"] for o in _checkout(client, world, other, "R-3")["offers"]] == [
        "Only me"]


def test_a_held_out_member_is_recorded_and_gets_nothing(
        client: TestClient, world: World, database: Database, croissant: str) -> None:
    _campaign(client, world, croissant, {"all": []}, control_share_bp=5000)
    results = {}
    for index in range(24):  # all 24 on one side by chance: once in 8 million runs
        member = enrol(client, world.a)
        results[member["id"]] = _checkout(client, world, member, f"R-{index}")["offers"]
    with database.session_scope() as session:
        held = {str(row.member_id): row.held_out
                for row in session.scalars(select(CampaignOutcome))}
    assert set(held) == set(results)
    assert any(held.values()) and not all(held.values())
    for member_id, offers in results.items():
        assert (offers == []) == held[member_id]


def test_anonymous_purchases_and_the_quote(client: TestClient, world: World,
                                           database: Database, croissant: str) -> None:
    _campaign(client, world, croissant, {"field": "purchase.categories", "op": "contains",
                                         "value": "coffee"})
    anonymous = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                            json=purchase(receipt_no="R-0", lines=[COFFEE]))
    assert anonymous.status_code == 201 and anonymous.json()["offers"] == []
    member = enrol(client, world.a)
    body = purchase(receipt_no="R-1", lines=[TEA], member={"member_id": member["id"]})
    quoted = client.post("/v1/pos/quote?explain=true", headers=auth(world.a.pos_key),
                         json=body)
    assert quoted.status_code == 200, quoted.text
    assert quoted.json()["offers"] == []
    [check] = quoted.json()["campaign_checks"]
    assert check["result"] == "condition_failed"
    assert check["condition"]["actual"] == ["tea"]
    coffee = client.post("/v1/pos/quote", headers=auth(world.a.pos_key),
                         json={**body, "lines": [COFFEE]})
    assert [o["name"] for o in coffee.json()["offers"]] == ["Croissant"]
    assert coffee.json()["campaign_checks"] == []  # only when asked
    with database.session_scope() as session:  # a quote writes nothing
        assert session.scalars(select(CampaignOutcome)).all() == []


def test_the_commit_explains_when_asked_and_a_replay_does_not(
        client: TestClient, world: World, database: Database, croissant: str) -> None:
    campaign = _campaign(client, world, croissant, {"field": "purchase.categories",
                                                    "op": "contains", "value": "coffee"})
    tea = _campaign(client, world, croissant, {"field": "purchase.categories",
                                               "op": "contains", "value": "tea"}, name="Tea")
    member = enrol(client, world.a)
    body = purchase(receipt_no="R-1", lines=[COFFEE], member={"member_id": member["id"]})
    url = "/v1/pos/transactions?explain=true"
    committed = client.post(url, headers=auth(world.a.pos_key), json=body)
    assert committed.status_code == 201, committed.text
    answer = committed.json()
    assert [offer["campaign_id"] for offer in answer["offers"]] == [campaign["id"]]
    checks = {check["campaign_id"]: check for check in answer["campaign_checks"]}
    assert checks[campaign["id"]]["result"] == "fired"
    assert checks[campaign["id"]]["condition"]["actual"] == ["coffee"]
    assert checks[tea["id"]]["result"] == "condition_failed"
    # The receipt keeps the answer without the explanation: a replay and a read give it.
    replayed = client.post(url, headers=auth(world.a.pos_key), json=body)
    assert replayed.status_code == 201 and "campaign_checks" not in replayed.json()
    assert replayed.json() == {k: v for k, v in answer.items() if k != "campaign_checks"}
    read = client.get(f"/v1/pos/transactions/{answer['id']}", headers=auth(world.a.pos_key))
    assert read.json() == replayed.json()
    # A purchase nobody is identified for runs no campaign: nothing to explain.
    anonymous = client.post(url, headers=auth(world.a.pos_key),
                            json=purchase(receipt_no="R-2", lines=[COFFEE]))
    assert anonymous.json()["campaign_checks"] == []
    plain = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                        json=purchase(receipt_no="R-3", lines=[COFFEE],
                                      member={"member_id": enrol(client, world.a)["id"]}))
    assert "campaign_checks" not in plain.json()
