"""The checkout's cheap reads (``patron.campaigns.live``): the per-process cache of the
active campaigns never hides a pause, a resume or a new campaign — whichever engine or
process wrote it — and the member's values are the ones ``scores_of`` gives."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from patron.campaigns import live
from patron.campaigns.models import Campaign, CampaignStatus, Trigger
from patron.db import Database
from patron.members import consent
from patron.members.models import Channel, Member, Purpose
from patron.scores.models import (
    MemberCategoryCount,
    MemberScore,
    MemberStats,
    MemberStoreVisit,
    ScoreModel,
)
from patron.scores.service import scores_of
from tests.conftest import TEST_DATABASE_URL, World, auth
from tests.pos.conftest import enrol, purchase

COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
          "unit_price": 400}
NOW = datetime(2026, 12, 2, 0, 30, tzinfo=UTC)


def _campaign(client: TestClient, world: World, name: str) -> str:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": name, "trigger": "checkout",
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "message", "text": name}]})
    assert created.status_code == 201, created.text
    campaign_id: str = created.json()["id"]
    return campaign_id


def _fired(client: TestClient, world: World, member: dict[str, Any]) -> list[str]:
    done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no=f"R-{uuid.uuid4().hex[:10]}", lines=[COFFEE],
                                     member={"member_id": member["id"]}))
    assert done.status_code == 201, done.text
    return sorted(offer["name"] for offer in done.json()["offers"])


def _status(client: TestClient, world: World, campaign_id: str, action: str) -> None:
    changed = client.post(f"/v1/campaigns/{campaign_id}/{action}",
                          headers=auth(world.a.merchant_key))
    assert changed.status_code == 200, changed.text


def _active_names(database: Database, world: World) -> list[str]:
    with database.session_scope() as session:
        found = live.active(session, merchant_id=uuid.UUID(world.a.merchant_id),
                            store_id=uuid.UUID(world.a.store_id), trigger=Trigger.checkout,
                            now=datetime.now(UTC))
    return [campaign.name for campaign in found.campaigns]


def test_a_pause_or_a_new_campaign_is_seen_by_the_very_next_checkout(
        client: TestClient, world: World) -> None:
    member = enrol(client, world.a)
    first = _campaign(client, world, "First")
    assert _fired(client, world, member) == ["First"]  # the cache is warm now
    _status(client, world, first, "pause")
    assert _fired(client, world, member) == []
    _campaign(client, world, "Second")
    assert _fired(client, world, member) == ["Second"]
    _status(client, world, first, "resume")
    assert _fired(client, world, member) == ["First", "Second"]


def test_changes_through_another_engine_are_seen_with_the_cache_warm(
        client: TestClient, world: World, database: Database) -> None:
    """Another Database (its own engine and connections, as another worker process has)
    writes; the checkout served by the app's engine sees it at once, and the other way
    round."""
    member = enrol(client, world.a)
    first = _campaign(client, world, "First")
    other = Database(TEST_DATABASE_URL)
    try:
        assert _active_names(other, world) == ["First"]
        assert _fired(client, world, member) == ["First"]
        with other.session_scope() as session:  # paused elsewhere
            paused = session.get(Campaign, uuid.UUID(first))
            assert paused is not None
            paused.status = CampaignStatus.paused.value
        assert _fired(client, world, member) == []
        _campaign(client, world, "Second")  # created through the app's engine
        assert _active_names(other, world) == ["Second"]
        _status(client, world, first, "resume")
        assert _active_names(other, world) == ["First", "Second"]
        # A process that never saw them reads the definitions afresh, in the same order.
        live.forget()
        assert _active_names(other, world) == ["First", "Second"]
        assert _fired(client, world, member) == ["First", "Second"]
    finally:
        other.dispose()


def test_window_and_stores_still_apply_from_the_cache(
        client: TestClient, world: World, database: Database) -> None:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Later", "trigger": "checkout", "actions": [{"type": "message", "text": "x"}],
        "valid_from": (datetime.now(UTC) + timedelta(days=1)).isoformat()})
    assert created.status_code == 201, created.text
    with database.session_scope() as session:
        found = live.active(session, merchant_id=uuid.UUID(world.a.merchant_id),
                            store_id=uuid.UUID(world.a.store_id), trigger=Trigger.checkout,
                            now=datetime.now(UTC))
        assert found.campaigns == []
        later = live.active(session, merchant_id=uuid.UUID(world.a.merchant_id),
                            store_id=uuid.UUID(world.a.store_id), trigger=Trigger.checkout,
                            now=datetime.now(UTC) + timedelta(days=2))
        assert [campaign.name for campaign in later.campaigns] == ["Later"]
        assert later.outcomes_count == {uuid.UUID(created.json()["id"]): 0}


def _from_scores_of(database: Database, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                    store_id: uuid.UUID) -> dict[str, Any]:
    """The member's values built the way the engine built them before ``live``."""
    with database.session_scope() as session:
        member = session.get(Member, member_id)
        assert member is not None
        scores = scores_of(session, member_id=member_id, merchant_id=merchant_id,
                           currency="JPY", tier="Gold", now=NOW)
        # Marketing consent for the merchant, member by member (the delivery's question).
        consents = {channel.value for channel in Channel if consent.allows(
            session, member_id=member_id, merchant_id=merchant_id, channel=channel,
            purpose=Purpose.marketing).allowed}
        return {
            "member.age_band": live.age_band(member.birth_year, NOW),
            "member.birth_month": member.birth_month, "member.gender": member.gender,
            "member.region": member.region,
            "member.language": member.language, "member.tier": "Gold",
            "member.segment": scores.rfm.segment.value if scores.rfm else None,
            "member.recency_score": scores.rfm.recency if scores.rfm else None,
            "member.frequency_score": scores.rfm.frequency if scores.rfm else None,
            "member.monetary_score": scores.rfm.monetary if scores.rfm else None,
            "member.p_alive": scores.lifetime.p_alive if scores.lifetime else None,
            "member.clv_90d_minor": scores.lifetime.clv_90d_minor if scores.lifetime else None,
            "member.purchases": scores.purchases, "member.spend_minor": scores.spend_minor,
            "member.affinity": {item.category: item.share for item in scores.affinities},
            "member.store_visits": next((visit.visits for visit in scores.visits
                                         if visit.store_id == store_id), 0),
            "member.consents": frozenset(consents),
            "member.days_since_enrolment": max((NOW - member.created_at).days, 0)}


def test_member_values_are_those_of_scores_of(
        client: TestClient, world: World, database: Database) -> None:
    merchant_id = uuid.UUID(world.a.merchant_id)
    store_id = uuid.UUID(world.a.store_id)
    new = uuid.UUID(enrol(client, world.a)["id"])
    regular = uuid.UUID(enrol(client, world.a, birth_year=1980, birth_month=7)["id"])
    with database.session_scope() as session:
        session.add(MemberStats(
            member_id=regular, merchant_id=merchant_id,
            first_purchase_at=NOW - timedelta(days=400),
            last_purchase_at=NOW - timedelta(days=30), purchase_count=12,
            spend_minor=12_000, first_spend_minor=1_000))
        session.add_all([
            MemberCategoryCount(member_id=regular, merchant_id=merchant_id,
                                category="coffee", purchase_count=9, quantity=14),
            MemberCategoryCount(member_id=regular, merchant_id=merchant_id,
                                category="bakery", purchase_count=2, quantity=2)])
        session.add(MemberStoreVisit(member_id=regular, merchant_id=merchant_id,
                                     store_id=store_id, visit_count=7,
                                     last_visit_at=NOW - timedelta(days=30)))
        # The coalition's e-mail and SMS grants; the merchant's own SMS withdrawal wins.
        for scope, channel, granted in ((None, "email", True), (None, "sms", True),
                                        (merchant_id, "sms", False)):
            consent.record(session, member_id=regular, merchant_id=scope, channel=channel,
                           purpose="marketing", granted=granted, source="test")

    def compare() -> list[dict[str, Any]]:
        seen = []
        for member_id in (new, regular):
            with database.session_scope() as session:
                values = live.member_fields(session, member_id=member_id,
                                            merchant_id=merchant_id, store_id=store_id,
                                            tier="Gold", now=NOW)
            assert values == _from_scores_of(database, member_id=member_id,
                                             merchant_id=merchant_id, store_id=store_id)
            seen.append(values)
        return seen

    before = compare()  # stats, no model yet: no segment
    assert before[1]["member.purchases"] == 12 and before[1]["member.segment"] is None
    assert before[1]["member.affinity"] == {"coffee": 0.75, "bakery": 0.1667}
    assert before[1]["member.store_visits"] == 7
    assert before[1]["member.consents"] == frozenset({"email"})
    assert before[0]["member.purchases"] == 0 and before[0]["member.affinity"] == {}
    with database.session_scope() as session:
        session.add(ScoreModel(
            merchant_id=merchant_id, fitted_at=NOW - timedelta(days=1), members=100,
            repeat_members=60,
            rfm_boundaries={"recency_days": [7, 20, 45, 90], "frequency": [1, 2, 4, 8],
                            "spend_minor": [500, 1500, 4000, 9000]},
            bgnbd=None, gamma_gamma=None, note="test"))
        session.add(MemberScore(member_id=regular, merchant_id=merchant_id,
                                computed_at=NOW, p_alive=0.62, expected_purchases_90d=1.5,
                                clv_90d_minor=4_200))
    after = compare()
    assert after[1]["member.segment"] is not None
    assert after[1]["member.p_alive"] == 0.62 and after[1]["member.clv_90d_minor"] == 4_200
    assert after[0]["member.segment"] is None and after[0]["member.p_alive"] is None
