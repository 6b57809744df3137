"""The triggers other than a checkout (``campaigns.occasions``), end to end: enrolment, a
visit at a reader, a tier change, a qualified referral, the birthday month and a schedule
— each fires once per occasion, and a campaign that cannot have a purchase cannot read
one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from patron.campaigns.models import CampaignOutcome
from patron.campaigns.occasions import run_calendar
from patron.db import Database
from patron.kit.clock import clock
from patron.notify.models import OutboxEvent
from patron.vouchers.models import Voucher
from tests.conftest import World, auth
from tests.pos.conftest import enrol, purchase
from tests.pos.test_returns import balance
from tests.vouchers.conftest import make_offer

# Tuesday 2026-12-08, 09:15 in Tokyo (merchant A's time zone).
TOKYO_NINE = datetime(2026, 12, 8, 0, 15, tzinfo=UTC)
KETTLE = [{"sku": "KT-1", "name": "Kettle", "category": "home", "quantity": 1,
           "unit_price": 30_000}]


def _campaign(client: TestClient, world: World, trigger: str, conditions: Any = None,
              actions: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    created = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": f"On {trigger}", "trigger": trigger,
        "conditions": conditions if conditions is not None else {"all": []},
        "actions": actions or [{"type": "bonus_points", "points": 200}], **extra})
    assert created.status_code == 201, created.text
    campaign: dict[str, Any] = created.json()
    return campaign


def _outcomes(database: Database, campaign: dict[str, Any]) -> list[CampaignOutcome]:
    with database.session_scope() as session:
        return list(session.scalars(select(CampaignOutcome).where(
            CampaignOutcome.campaign_id == uuid.UUID(campaign["id"]))
            .order_by(CampaignOutcome.created_at)))


def _members(outcomes: list[CampaignOutcome]) -> list[str]:
    return [str(outcome.member_id) for outcome in outcomes]


def test_enrolment_welcomes_the_members_its_condition_names(
        client: TestClient, world: World, database: Database) -> None:
    offer = make_offer(client, world.a.merchant_key, name="Welcome", value=200)
    campaign = _campaign(client, world, "enrolment",
                         {"field": "member.language", "op": "eq", "value": "ja"},
                         [{"type": "issue_voucher", "offer_id": offer["id"]},
                          {"type": "message", "text": "Welcome!"}])
    japanese = enrol(client, world.a, language="ja")
    enrol(client, world.a, language="en")
    [outcome] = _outcomes(database, campaign)
    assert (str(outcome.member_id), outcome.occasion, outcome.transaction_id) == (
        japanese["id"], "enrolment", None)
    with database.session_scope() as session:
        [code] = session.scalars(select(Voucher).where(Voucher.source == "campaign")).all()
        assert str(code.member_id) == japanese["id"]
        [event] = session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "campaign.outcome")).all()
        assert event.payload["trigger"] == "enrolment"
        assert event.payload["message"] == "Welcome!"
        assert event.payload["voucher"]["offer_id"] == offer["id"]


def test_a_visit_fires_once_per_tap(client: TestClient, world: World,
                                    database: Database) -> None:
    campaign = _campaign(client, world, "visit", {"field": "env.store_id", "op": "eq",
                                                  "value": world.a.store_id},
                         store_ids=[world.a.store_id])
    member = enrol(client, world.a, card_uid="04A1B2C3D4E5F7")
    for tap_id in ("t-1", "t-1", "t-2"):  # the first sent twice
        tapped = client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                             json={"card_uid": "04A1B2C3D4E5F7", "tap_id": tap_id})
        assert tapped.status_code == 201, tapped.text
    outcomes = _outcomes(database, campaign)
    assert _members(outcomes) == [member["id"]] * 2
    assert len({outcome.occasion for outcome in outcomes}) == 2
    # 200 bonus per visit; the reader's own 5 points once per interval.
    assert balance(database, world.a.merchant_id, member["id"]) == 2 * 200 + 5


def test_a_tier_change_fires_in_the_new_tier(client: TestClient, world: World,
                                             database: Database) -> None:
    program = client.put(f"/v1/merchants/{world.a.merchant_id}/program",
                         headers=auth(world.a.merchant_key), json={
                             "earn_points": 1, "earn_per_amount": 100,
                             "point_value_minor": 1, "expiry_months": None,
                             "tiers": [{"name": "Blue", "threshold_points": 0},
                                       {"name": "Gold", "threshold_points": 250}]})
    assert program.status_code == 200, program.text
    campaign = _campaign(client, world, "tier_change",
                         {"field": "member.tier", "op": "eq", "value": "Gold"})
    member = enrol(client, world.a)
    small = [{**KETTLE[0], "unit_price": 10_000}]
    for receipt in ("R-1", "R-2", "R-3"):  # 100, 200 (Blue), then 300 points: Gold
        done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                           json=purchase(receipt_no=receipt, lines=small,
                                         member={"member_id": member["id"]}))
        assert done.status_code == 201, done.text
    [outcome] = _outcomes(database, campaign)
    assert outcome.occasion == f"tier:{done.json()['id']}"
    more = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no="R-4", lines=small,
                                     member={"member_id": member["id"]}))
    assert more.status_code == 201 and len(_outcomes(database, campaign)) == 1


def test_a_qualified_referral_fires_for_the_referrer(client: TestClient, world: World,
                                                     database: Database) -> None:
    put = client.put(f"/v1/merchants/{world.a.merchant_id}/referral-program",
                     headers=auth(world.a.merchant_key), json={"referee_points": 100})
    assert put.status_code == 200, put.text
    campaign = _campaign(client, world, "referral_qualified")
    referrer = enrol(client, world.a)
    code = client.get(f"/v1/members/{referrer['id']}/referral",
                      headers=auth(world.a.merchant_key)).json()["code"]
    referee = enrol(client, world.a, referral_code=code)
    assert _outcomes(database, campaign) == []
    done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no="R-1", lines=KETTLE,
                                     member={"member_id": referee["id"]}))
    assert done.status_code == 201, done.text
    [outcome] = _outcomes(database, campaign)
    assert str(outcome.member_id) == referrer["id"]
    assert balance(database, world.a.merchant_id, referrer["id"]) == 200


def test_birthday_campaigns_run_once_a_year_in_the_birth_month(
        client: TestClient, world: World, database: Database) -> None:
    campaign = _campaign(client, world, "birthday")
    december = enrol(client, world.a, birth_month=12)
    enrol(client, world.a, birth_month=5)
    enrol(client, world.a)
    other_merchant = client.post("/v1/members", headers=auth(world.b.merchant_key),
                                 json={"birth_month": 12})
    assert other_merchant.status_code == 201
    clock.freeze(TOKYO_NINE)
    run_calendar(database, TOKYO_NINE.replace(hour=1))  # 10:15 in Tokyo: not the hour
    assert _outcomes(database, campaign) == []
    run_calendar(database, TOKYO_NINE)
    run_calendar(database, TOKYO_NINE.replace(minute=40))  # a later tick, the same hour
    [outcome] = _outcomes(database, campaign)
    assert (str(outcome.member_id), outcome.occasion) == (december["id"], "birthday:2026")
    assert balance(database, world.a.merchant_id, december["id"]) == 200
    next_year = datetime(2027, 12, 1, 0, 5, tzinfo=UTC)
    run_calendar(database, next_year)
    assert [o.occasion for o in _outcomes(database, campaign)] == ["birthday:2026",
                                                                   "birthday:2027"]


def test_a_schedule_runs_on_its_days_at_its_hour(client: TestClient, world: World,
                                                 database: Database) -> None:
    campaign = _campaign(client, world, "schedule",
                         {"field": "member.language", "op": "eq", "value": "ja"},
                         schedule={"weekdays": [2, 4], "hour": 9})  # Tue and Thu, 09:00
    japanese = [enrol(client, world.a, language="ja") for _ in range(3)]
    enrol(client, world.a, language="en")
    wednesday = datetime(2026, 12, 9, 0, 15, tzinfo=UTC)
    run_calendar(database, wednesday)
    assert _outcomes(database, campaign) == []
    run_calendar(database, TOKYO_NINE)
    run_calendar(database, TOKYO_NINE.replace(minute=55))
    assert sorted(_members(_outcomes(database, campaign))) == sorted(
        member["id"] for member in japanese)
    thursday = datetime(2026, 12, 10, 0, 0, tzinfo=UTC)
    run_calendar(database, thursday)
    assert len(_outcomes(database, campaign)) == 6
    assert {o.occasion for o in _outcomes(database, campaign)} == {
        "schedule:2026-12-08", "schedule:2026-12-10"}


def test_a_campaign_without_a_purchase_cannot_read_one(client: TestClient,
                                                       world: World) -> None:
    url = "/v1/campaigns"
    cases = [
        ({"trigger": "enrolment", "conditions": {"all": [
            {"field": "member.language", "op": "eq", "value": "ja"},
            {"not": {"field": "purchase.total_minor", "op": "gt", "value": 100}}]}},
         ["body", "conditions", "all", 1, "not", "field"]),
        ({"trigger": "visit", "actions": [{"type": "message", "text": "hi"},
                                          {"type": "points_multiplier",
                                           "multiplier_bp": 20_000}]},
         ["body", "actions", 1, "type"]),
        ({"trigger": "schedule"}, ["body", "schedule"]),
        ({"trigger": "checkout", "schedule": {"weekdays": [1], "hour": 9}},
         ["body", "schedule"]),
    ]
    for extra, loc in cases:
        body = {"name": "x", "conditions": {"all": []},
                "actions": [{"type": "bonus_points", "points": 1}], **extra}
        refused = client.post(url, headers=auth(world.a.merchant_key), json=body)
        assert refused.status_code == 422, (extra, refused.text)
        assert refused.json()["code"] == "invalid_campaign"
        assert refused.json()["errors"][0]["loc"] == loc, refused.json()
    bad_schedule = client.post(url, headers=auth(world.a.merchant_key), json={
        "name": "x", "trigger": "schedule", "schedule": {"weekdays": [8], "hour": 9},
        "actions": [{"type": "bonus_points", "points": 1}]})
    assert bad_schedule.status_code == 422
    assert client.get(url, headers=auth(world.a.merchant_key)).json()["items"] == []
