"""`GET /v1/campaigns/{id}/results`: counts and cost after real checkouts, the uplift's
statistics against an independent computation, the cases without an estimate, and the
refusals. Nothing is written by a read."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from scipy import stats
from starlette.testclient import TestClient

from patron.campaigns.control import held_out
from patron.db import Database
from patron.kit.clock import clock
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import Tenant, World, auth
from tests.pos.conftest import enrol, purchase
from tests.vouchers.conftest import make_offer

COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
          "unit_price": 400}
NOW = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
COFFEE_LOVERS = {"field": "purchase.categories", "op": "contains", "value": "coffee"}


def _tea(price: int) -> dict[str, Any]:
    return {"sku": "TE-1", "name": "Tea", "category": "tea", "quantity": 1,
            "unit_price": price}


class Till:
    """Purchases through `POST /v1/pos/transactions`, each at its own time."""

    def __init__(self, client: TestClient, tenant: Tenant, currency: str = "JPY") -> None:
        self.client, self.tenant, self.currency = client, tenant, currency
        self.receipts = 0

    def buy(self, member: dict[str, Any], lines: list[dict[str, Any]], at: datetime,
            vouchers: tuple[str, ...] = ()) -> dict[str, Any]:
        clock.freeze(at)
        self.receipts += 1
        done = self.client.post(
            "/v1/pos/transactions", headers=auth(self.tenant.pos_key),
            json=purchase(receipt_no=f"R-{self.receipts}", lines=lines,
                          currency=self.currency, member={"member_id": member["id"]},
                          vouchers=[{"code": code} for code in vouchers]))
        assert done.status_code == 201, done.text
        answer: dict[str, Any] = done.json()
        return answer


def _campaign(client: TestClient, key: str, actions: list[dict[str, Any]],
              **extra: Any) -> dict[str, Any]:
    created = client.post("/v1/campaigns", headers=auth(key), json={
        "name": "Coffee lovers", "trigger": "checkout", "conditions": COFFEE_LOVERS,
        "actions": actions, **extra})
    assert created.status_code == 201, created.text
    campaign: dict[str, Any] = created.json()
    return campaign


def _members(client: TestClient, tenant: Tenant, campaign: dict[str, Any], *,
             treated: int, control: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Members enrolled until the campaign's control group has ``control`` of them and the
    rest ``treated`` (the group is the hash of the ids, known before any purchase)."""
    groups: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    while len(groups[0]) < treated or len(groups[1]) < control:
        member = enrol(client, tenant)
        out = held_out(campaign_id=uuid.UUID(campaign["id"]),
                       member_id=uuid.UUID(member["id"]),
                       share_bp=campaign["control_share_bp"])
        group = groups[1] if out else groups[0]
        if len(group) < (control if out else treated):
            group.append(member)
    return groups


def _results(client: TestClient, key: str, campaign: dict[str, Any],
             **query: Any) -> dict[str, Any]:
    answer = client.get(f"/v1/campaigns/{campaign['id']}/results", headers=auth(key),
                        params=query)
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def test_counts_and_cost_after_real_checkouts(client: TestClient, world: World,
                                              database: Database) -> None:
    clock.freeze(NOW - timedelta(days=5))
    offer = make_offer(client, world.a.merchant_key, kind="amount_off", value=150)
    campaign = _campaign(client, world.a.merchant_key, [
        {"type": "issue_voucher", "offer_id": offer["id"]},
        {"type": "bonus_points", "points": 20}], control_share_bp=5000, max_outcomes=10)
    (t1, t2, t3), (c1, c2) = _members(client, world.a, campaign, treated=3, control=2)
    till = Till(client, world.a)
    at = NOW - timedelta(days=4)
    codes = {}
    for step, member in enumerate((t1, t2, t3, c1, c2)):
        offers = till.buy(member, [COFFEE], at + timedelta(minutes=step))["offers"]
        assert len(offers) == (0 if member in (c1, c2) else 1)
        if offers:
            codes[member["id"]] = offers[0]["voucher"]["code"]
    till.buy(t1, [COFFEE], at + timedelta(hours=1))  # a second outcome for t1
    till.buy(c1, [COFFEE], at + timedelta(hours=1, minutes=1))  # a second held-out trigger
    till.buy(c2, [_tea(300)], at + timedelta(hours=1, minutes=2))  # no trigger
    # t1 uses the first code: 150 off. t2 uses theirs, then brings everything back: the
    # use is reversed and counts neither as a redemption nor as a cost.
    used = till.buy(t1, [_tea(300)], at + timedelta(hours=2), vouchers=(codes[t1["id"]],))
    assert used["voucher_discount"] == 150
    returned = till.buy(t2, [_tea(300)], at + timedelta(hours=3), vouchers=(codes[t2["id"]],))
    clock.freeze(at + timedelta(hours=4))
    back = client.post(f"/v1/pos/transactions/{returned['id']}/returns",
                       headers=auth(world.a.pos_key),
                       json={"return_no": "RT-1",
                             "occurred_at": (at + timedelta(hours=4)).isoformat()})
    assert back.status_code == 201, back.text
    assert back.json()["refund_amount"] == 150
    clock.freeze(NOW)

    before = snapshot(database)
    report = _results(client, world.a.merchant_key, campaign)
    assert changed_tables(before, snapshot(database)) == []  # a read writes nothing
    assert report["campaign_id"] == campaign["id"]
    assert report["triggers"] == {"triggers": 7, "members": 5,
                                  "treatment": {"triggers": 4, "members": 3},
                                  "control": {"triggers": 3, "members": 2}}
    assert report["outcomes"] == {"issued": 4, "vouchers_issued": 4, "vouchers_redeemed": 1,
                                  "redemption_rate": 0.25}
    assert report["cost"] == {"points": 80,
                              "discounts": [{"currency": "JPY", "amount_minor": 150}],
                              "budget": {"max_outcomes": 10, "used": 4, "left": 6}}
    uplift = report["uplift"]
    # Paid after the first trigger, net of refunds: t1 coffee 400 + tea 300 - 150 off; t2
    # 150 paid and refunded; t3 nothing. c1 coffee 400; c2 tea 300.
    assert uplift["treatment"]["members"] == 3 and uplift["control"]["members"] == 2
    assert uplift["treatment"]["mean_spend_minor"] == pytest.approx(550 / 3, abs=1e-9)
    assert uplift["control"]["mean_spend_minor"] == 350.0
    assert uplift["difference_minor"] == pytest.approx(550 / 3 - 350, abs=1e-9)
    assert uplift["currency"] == "JPY" and uplift["until"].startswith("2026-12-02T03:00")
    assert uplift["excluded"] == {"in_both_groups": 0, "window_open": 0,
                                  "after_budget_spent": 0}
    assert uplift["note"] is None

    # The operator sees every campaign; another merchant's key and an unknown id get
    # the same 404.
    assert _results(client, world.operator_key, campaign) == report
    foreign = client.get(f"/v1/campaigns/{campaign['id']}/results",
                         headers=auth(world.b.merchant_key))
    unknown = client.get(f"/v1/campaigns/{uuid.uuid4()}/results",
                         headers=auth(world.b.merchant_key))
    assert foreign.status_code == unknown.status_code == 404
    assert foreign.headers["content-type"] == "application/problem+json"
    assert foreign.json() == unknown.json()
    assert changed_tables(before, snapshot(database)) == []


def _welch(treated: list[int], control: list[int]) -> tuple[float, float, float, float]:
    """Welch's interval by its textbook formula: difference, low, high, degrees."""
    n1, n2 = len(treated), len(control)
    m1, m2 = sum(treated) / n1, sum(control) / n2
    v1 = sum((x - m1) ** 2 for x in treated) / (n1 - 1)
    v2 = sum((x - m2) ** 2 for x in control) / (n2 - 1)
    se = math.sqrt(v1 / n1 + v2 / n2)
    df = (v1 / n1 + v2 / n2) ** 2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1))
    half = float(stats.t.ppf(0.975, df)) * se
    return m1 - m2, m1 - m2 - half, m1 - m2 + half, df


def test_the_uplift_against_an_independent_welch_interval(client: TestClient,
                                                           world: World) -> None:
    clock.freeze(NOW - timedelta(days=25))
    campaign = _campaign(client, world.a.merchant_key, [{"type": "bonus_points",
                                                         "points": 5}],
                         control_share_bp=5000)
    treated, control = _members(client, world.a, campaign, treated=5, control=4)
    late_treated, late_control = _members(client, world.a, campaign, treated=1, control=1)
    till = Till(client, world.a)
    start = NOW - timedelta(days=20)
    # Each member triggers with a coffee (not counted: it is before the treatment), then
    # buys tea for a known amount 2 days later; the treated spend 450 more on average.
    treated_spend = [1000, 1400, 900, 1700, 1250]
    control_spend = [800, 1100, 500, 800]
    for index, (member, spend) in enumerate([*zip(treated, treated_spend, strict=True),
                                             *zip(control, control_spend, strict=True)]):
        till.buy(member, [COFFEE], start + timedelta(minutes=index))
        till.buy(member, [_tea(spend)], start + timedelta(days=2, minutes=index))
    # Outside a 7-day window: a big purchase by a treated member 15 days after the trigger.
    till.buy(treated[0], [_tea(10_000)], start + timedelta(days=15))
    # Two members who first triggered yesterday (nothing spent since).
    for index, member in enumerate((*late_treated, *late_control)):
        till.buy(member, [COFFEE], NOW - timedelta(days=1, minutes=index))
    clock.freeze(NOW)

    # Up to now: the big purchase counts, and so do yesterday's members (spent 0).
    report = _results(client, world.a.merchant_key, campaign)
    everything = [*treated_spend, 0]
    everything[0] += 10_000
    _check(report["uplift"], everything, [*control_spend, 0])
    assert report["uplift"]["days"] is None
    assert report["uplift"]["excluded"]["window_open"] == 0

    # 7 days after the first trigger: the big purchase is out, and yesterday's members
    # are left out (their week is not over).
    week = _results(client, world.a.merchant_key, campaign, days=7)
    _check(week["uplift"], treated_spend, control_spend)
    assert week["uplift"]["difference_minor"] == 450.0  # 1250 - 800
    assert week["uplift"]["relative"] == 450 / 800
    assert week["uplift"]["days"] == 7
    assert week["uplift"]["excluded"] == {"in_both_groups": 0, "window_open": 2,
                                          "after_budget_spent": 0}

    # Until a day after the teas: the same figures without `days`; yesterday's members
    # had not triggered yet.
    until = (start + timedelta(days=3)).isoformat()
    early = _results(client, world.a.merchant_key, campaign, until=until)
    _check(early["uplift"], treated_spend, control_spend)
    assert early["uplift"]["excluded"]["window_open"] == 2
    # The counts are the campaign's to date, whatever the window.
    assert early["triggers"] == week["triggers"] == report["triggers"]
    assert report["triggers"]["members"] == 11


def _check(uplift: dict[str, Any], treated: list[int], control: list[int]) -> None:
    difference, low, high, df = _welch(treated, control)
    independent = stats.ttest_ind(treated, control, equal_var=False)
    interval = independent.confidence_interval(0.95)
    assert uplift["treatment"]["members"] == len(treated)
    assert uplift["control"]["members"] == len(control)
    assert uplift["treatment"]["mean_spend_minor"] == pytest.approx(
        sum(treated) / len(treated), abs=1e-9)
    assert uplift["control"]["sd_spend_minor"] == pytest.approx(
        stats.tstd(control), rel=1e-12)
    assert uplift["difference_minor"] == pytest.approx(difference, abs=1e-9)
    assert uplift["ci95_low_minor"] == pytest.approx(low, rel=1e-9)
    assert uplift["ci95_high_minor"] == pytest.approx(high, rel=1e-9)
    assert uplift["ci95_low_minor"] == pytest.approx(interval.low, rel=1e-12)
    assert uplift["degrees_of_freedom"] == pytest.approx(df, rel=1e-12)
    assert uplift["p_value"] == pytest.approx(independent.pvalue, rel=1e-9)
    assert uplift["note"] is None


def test_no_control_group_gives_no_estimate(client: TestClient, world: World) -> None:
    clock.freeze(NOW - timedelta(days=3))
    campaign = _campaign(client, world.a.merchant_key,
                         [{"type": "bonus_points", "points": 5}])
    till = Till(client, world.a)
    for index in range(3):
        member = enrol(client, world.a)
        till.buy(member, [COFFEE], NOW - timedelta(days=2, minutes=index))
        till.buy(member, [_tea(500 * (index + 1))], NOW - timedelta(days=1, minutes=index))
    clock.freeze(NOW)
    uplift = _results(client, world.a.merchant_key, campaign)["uplift"]
    assert uplift["treatment"] == {"members": 3, "mean_spend_minor": 1000.0,
                                   "sd_spend_minor": 500.0}
    assert uplift["control"] == {"members": 0, "mean_spend_minor": None,
                                 "sd_spend_minor": None}
    for figure in ("difference_minor", "relative", "ci95_low_minor", "ci95_high_minor",
                   "degrees_of_freedom", "p_value"):
        assert uplift[figure] is None
    assert uplift["note"] == ("no control group: the campaign holds out no one "
                              "(control_share_bp is 0)")


def test_once_the_budget_is_spent_later_control_members_are_left_out(
        client: TestClient, world: World) -> None:
    """After the last outcome given, the engine records the held out but not the
    treated; those later control members would compare another period."""
    clock.freeze(NOW - timedelta(days=3))
    campaign = _campaign(client, world.a.merchant_key, [{"type": "bonus_points",
                                                         "points": 5}],
                         control_share_bp=5000, max_outcomes=2)
    (t1, t2, t3), (c1, c2, c3) = _members(client, world.a, campaign, treated=3, control=3)
    till = Till(client, world.a)
    at = NOW - timedelta(days=2)
    for step, member in enumerate((c1, t1, c2, t2, c3, t3)):  # t3 finds the budget spent
        till.buy(member, [COFFEE], at + timedelta(minutes=step))
    clock.freeze(NOW)
    report = _results(client, world.a.merchant_key, campaign)
    assert report["triggers"]["treatment"] == {"triggers": 2, "members": 2}
    assert report["triggers"]["control"] == {"triggers": 3, "members": 3}
    assert report["cost"]["budget"] == {"max_outcomes": 2, "used": 2, "left": 0}
    uplift = report["uplift"]
    assert uplift["excluded"]["after_budget_spent"] == 1  # c3
    assert (uplift["treatment"]["members"], uplift["control"]["members"]) == (2, 2)
    # Nobody spent after triggering: the difference is exact, no interval can be drawn.
    assert uplift["difference_minor"] == 0.0 and uplift["ci95_low_minor"] is None
    assert uplift["note"] == ("the control group spent nothing: no relative uplift; every "
                              "member of each group spent the same: no variance, no interval")


def test_one_member_in_a_group_is_too_few(client: TestClient, world: World) -> None:
    clock.freeze(NOW - timedelta(days=3))
    campaign = _campaign(client, world.a.merchant_key, [{"type": "bonus_points",
                                                         "points": 5}],
                         control_share_bp=5000)
    treated, control = _members(client, world.a, campaign, treated=3, control=1)
    till = Till(client, world.a)
    for index, member in enumerate([*treated, *control]):
        till.buy(member, [COFFEE], NOW - timedelta(days=2, minutes=index))
    clock.freeze(NOW)
    uplift = _results(client, world.a.merchant_key, campaign)["uplift"]
    assert uplift["control"] == {"members": 1, "mean_spend_minor": 0.0,
                                 "sd_spend_minor": None}
    assert uplift["difference_minor"] is None and uplift["ci95_high_minor"] is None
    assert uplift["note"] == ("fewer than 2 members measured in the control group: a "
                              "variance, and so an interval, needs at least 2 in each")


def test_a_coalition_campaign_does_not_add_up_currencies(client: TestClient,
                                                         world: World) -> None:
    clock.freeze(NOW - timedelta(days=3))
    campaign = _campaign(client, world.operator_key, [{"type": "bonus_points",
                                                       "points": 5}],
                         control_share_bp=5000)
    tills = {world.a.merchant_id: Till(client, world.a),
             world.b.merchant_id: Till(client, world.b, currency="USD")}
    for tenant in (world.a, world.b):
        treated, control = _members(client, tenant, campaign, treated=2, control=2)
        for index, member in enumerate([*treated, *control]):
            till = tills[tenant.merchant_id]
            till.buy(member, [COFFEE], NOW - timedelta(days=2, minutes=index))
            till.buy(member, [_tea(100 + index)], NOW - timedelta(days=1, minutes=index))
    clock.freeze(NOW)
    report = _results(client, world.operator_key, campaign)
    assert report["triggers"]["members"] == 8
    uplift = report["uplift"]
    assert uplift["currency"] is None and uplift["difference_minor"] is None
    assert uplift["treatment"] == {"members": 4, "mean_spend_minor": None,
                                   "sd_spend_minor": None}
    assert uplift["note"] == ("the purchases are in 2 currencies (JPY, USD): spend cannot "
                              "be added across them")
    # A merchant's key does not see the coalition's campaign.
    assert client.get(f"/v1/campaigns/{campaign['id']}/results",
                      headers=auth(world.a.merchant_key)).status_code == 404


@pytest.mark.parametrize("query", [
    {"days": "0"}, {"days": "3661"}, {"days": "seven"}, {"days": "1.5"},
    {"until": "yesterday"}, {"until": "2026-12-01T00:00:00"},  # no offset
    {"until": "2026-12-03T00:00:00+00:00"},  # in the future
    {"until": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
], ids=["days_0", "days_too_many", "days_word", "days_fraction", "until_word",
        "until_naive", "until_future", "until_out_of_range"])
def test_bad_query_parameters_are_422(client: TestClient, world: World, database: Database,
                                      query: dict[str, str]) -> None:
    clock.freeze(NOW)
    campaign = _campaign(client, world.a.merchant_key, [{"type": "bonus_points",
                                                         "points": 5}])
    before = snapshot(database)
    answer = client.get(f"/v1/campaigns/{campaign['id']}/results",
                        headers=auth(world.a.merchant_key), params=query)
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    [name] = query
    assert [error["loc"] for error in answer.json()["errors"]] == [["query", name]]
    assert changed_tables(before, snapshot(database)) == []


def test_a_trigger_other_than_a_checkout_opens_the_window_at_its_outcome(
        client: TestClient, world: World) -> None:
    """An enrolment campaign: no triggering purchase; every purchase after the enrolment
    counts."""
    enrolled_at = NOW - timedelta(days=3)
    clock.freeze(enrolled_at)
    campaign = _campaign(client, world.a.merchant_key, [{"type": "bonus_points",
                                                         "points": 5}],
                         control_share_bp=5000, trigger="enrolment", conditions={"all": []})
    groups: dict[bool, list[int]] = {True: [], False: []}
    till = Till(client, world.a)
    index = 0
    while len(groups[True]) < 2 or len(groups[False]) < 2:
        clock.freeze(enrolled_at)
        member = enrol(client, world.a)
        out = held_out(campaign_id=uuid.UUID(campaign["id"]),
                       member_id=uuid.UUID(member["id"]), share_bp=5000)
        spend = 100 * (index + 1) + (300 if not out else 0)
        till.buy(member, [_tea(spend)], NOW - timedelta(days=1, minutes=index))
        groups[out].append(spend)
        index += 1
    clock.freeze(NOW)
    report = _results(client, world.a.merchant_key, campaign)
    assert report["triggers"]["members"] == index
    _check(report["uplift"], groups[False], groups[True])
