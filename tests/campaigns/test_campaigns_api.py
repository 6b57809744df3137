"""Writing campaigns: `POST /v1/campaigns` checks a definition whole, and a bad one is a
422 pointing at the error with nothing stored."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.campaigns.models import Campaign
from patron.db import Database
from tests.conftest import World, auth
from tests.vouchers.conftest import make_offer

CROISSANT = {"all": [
    {"field": "purchase.categories", "op": "contains", "value": "coffee"},
    {"field": "member.segment", "op": "eq", "value": "at_risk"},
    {"field": "env.weather", "op": "in", "value": ["rain", "drizzle"]},
    {"field": "inventory.overstock", "key": "CR-1", "op": "eq", "value": True},
]}


def _body(offer_id: str, **changes: Any) -> dict[str, Any]:
    return {"name": "Rainy croissant", "trigger": "checkout", "conditions": CROISSANT,
            "actions": [{"type": "issue_voucher", "offer_id": offer_id}],
            "per_member": {"count": 1, "period_days": 7}, "max_outcomes": 50,
            "priority": 10, "control_share_bp": 1000, **changes}


@pytest.fixture
def offer(client: TestClient, world: World) -> str:
    offer_id: str = make_offer(client, world.a.merchant_key, kind="free_item",
                               item_sku="CR-1")["id"]
    return offer_id


def _stored(database: Database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Campaign)) or 0


def test_a_campaign_is_written_read_listed_paused_and_resumed(
        client: TestClient, world: World, offer: str) -> None:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key),
                          json=_body(offer, store_ids=[world.a.store_id]))
    assert created.status_code == 201, created.text
    campaign = created.json()
    assert campaign["merchant_id"] == world.a.merchant_id
    assert campaign["conditions"] == CROISSANT and campaign["status"] == "active"
    assert campaign["per_member"] == {"count": 1, "period_days": 7}
    assert campaign["outcomes_count"] == 0 and campaign["store_ids"] == [world.a.store_id]
    path = f"/v1/campaigns/{campaign['id']}"
    assert client.get(path, headers=auth(world.a.merchant_key)).json() == campaign
    assert [c["id"] for c in client.get("/v1/campaigns",
                                        headers=auth(world.a.merchant_key)).json()["items"]] == [
        campaign["id"]]
    assert client.get("/v1/campaigns", headers=auth(world.b.merchant_key)).json()["items"] == []
    assert client.get(path, headers=auth(world.b.merchant_key)).status_code == 404
    paused = client.post(f"{path}/pause", headers=auth(world.a.merchant_key))
    assert paused.json()["status"] == "paused"
    resumed = client.post(f"{path}/resume", headers=auth(world.a.merchant_key))
    assert resumed.json()["status"] == "active"


def test_the_operator_writes_coalition_campaigns(client: TestClient, world: World) -> None:
    coalition_offer = make_offer(client, world.operator_key, kind="bonus_points",
                                 value=100)["id"]
    created = client.post("/v1/campaigns", headers=auth(world.operator_key),
                          json=_body(coalition_offer, conditions={"all": []}))
    assert created.status_code == 201, created.text
    assert created.json()["merchant_id"] is None
    # A coalition campaign cannot issue a merchant's offer.
    mine = make_offer(client, world.a.merchant_key, kind="amount_off", value=100)["id"]
    refused = client.post("/v1/campaigns", headers=auth(world.operator_key),
                          json=_body(mine, conditions={"all": []}))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "actions", 0, "offer_id"]


@pytest.mark.parametrize(("change", "status", "code", "loc"), [
    # an unknown field
    ({"conditions": {"all": [{"field": "member.segmnt", "op": "eq", "value": "x"}]}},
     422, "invalid_condition", ["body", "conditions", "all", 0, "field"]),
    # a type mismatch
    ({"conditions": {"all": [{"field": "purchase.total_minor", "op": "ge",
                              "value": "1000"}]}},
     422, "invalid_condition", ["body", "conditions", "all", 0, "value"]),
    # a syntax error
    ({"conditions": {"all": [{"field": "env.hour", "op": "ge", "value": 7}],
                     "any": []}},
     422, "invalid_condition", ["body", "conditions"]),
    ({"conditions": "env.hour > 7"}, 422, "validation_failed", ["body", "conditions"]),
    # an unknown offer
    ({"actions": [{"type": "issue_voucher", "offer_id": str(uuid.UUID(int=7))}]},
     422, "invalid_campaign", ["body", "actions", 0, "offer_id"]),
    # schema errors: an unknown key, an unknown action, a bad trigger, a bad share
    ({"color": "red"}, 422, "validation_failed", ["body", "color"]),
    ({"actions": [{"type": "fireworks"}]}, 422, "validation_failed",
     ["body", "actions", 0]),
    ({"trigger": "whenever"}, 422, "validation_failed", ["body", "trigger"]),
    ({"control_share_bp": 9000}, 422, "validation_failed", ["body", "control_share_bp"]),
    ({"actions": []}, 422, "validation_failed", ["body", "actions"]),
    ({"valid_from": "2027-01-02T00:00:00Z", "valid_until": "2027-01-01T00:00:00Z"},
     422, "invalid_campaign", ["body", "valid_until"]),
])
def test_an_invalid_definition_is_refused_where_it_is_wrong_and_nothing_is_stored(
        client: TestClient, world: World, database: Database, offer: str,
        change: dict[str, Any], status: int, code: str, loc: list[Any]) -> None:
    refused = client.post("/v1/campaigns", headers=auth(world.a.merchant_key),
                          json=_body(offer, **change))
    assert refused.status_code == status, refused.text
    problem = refused.json()
    assert problem["code"] == code
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem["errors"][0]["loc"][:len(loc)] == loc
    assert _stored(database) == 0


def test_another_merchants_offer_or_store_is_refused(client: TestClient, world: World,
                                                     database: Database) -> None:
    theirs = make_offer(client, world.b.merchant_key, kind="amount_off", value=100)["id"]
    refused = client.post("/v1/campaigns", headers=auth(world.a.merchant_key),
                          json=_body(theirs))
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["type"] == "unknown_offer"
    mine = make_offer(client, world.a.merchant_key, kind="amount_off", value=100)["id"]
    store = client.post("/v1/campaigns", headers=auth(world.a.merchant_key),
                        json=_body(mine, store_ids=[world.b.store_id]))
    assert store.status_code == 422
    assert store.json()["errors"][0]["loc"] == ["body", "store_ids", 0]
    other = client.post("/v1/campaigns", headers=auth(world.a.merchant_key),
                        json=_body(mine, merchant_id=world.b.merchant_id))
    assert other.status_code == 422
    assert _stored(database) == 0


def test_who_may_write_campaigns(client: TestClient, world: World, offer: str) -> None:
    assert client.post("/v1/campaigns", headers=auth(world.a.pos_key),
                       json=_body(offer)).status_code == 403
    assert client.post("/v1/campaigns", json=_body(offer)).status_code == 401
