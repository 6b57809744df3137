"""A campaign's budget under real concurrency (PostgreSQL, a running server): 500
simultaneous qualifying checkouts of a campaign with budget for 50 vouchers issue
exactly 50."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.campaigns.models import Campaign, CampaignOutcome
from patron.db import Database
from patron.pos.models import PosTransaction
from patron.vouchers.models import Voucher
from tests.concurrency import all_at_once
from tests.conftest import auth
from tests.pos.conftest import purchase
from tests.vouchers.conftest import make_offer
from tests.vouchers.test_concurrency import Http, _server, _shop

CHECKOUTS = 500
BUDGET = 50
COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
          "unit_price": 400}


@pytest.mark.postgres
@pytest.mark.slow
def test_a_budget_for_50_vouchers_issues_exactly_50_under_500_simultaneous_checkouts(
        database: Database, client: TestClient) -> None:
    shop = _shop(database)
    offer = make_offer(client, shop.merchant_key, kind="free_item", item_sku="CR-1")
    created = client.post("/v1/campaigns", headers=auth(shop.merchant_key), json={
        "name": "First fifty", "trigger": "checkout", "max_outcomes": BUDGET,
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "issue_voucher", "offer_id": offer["id"]}]})
    assert created.status_code == 201, created.text
    members = []
    for _ in range(CHECKOUTS):
        enrolled = client.post("/v1/members", headers=auth(shop.merchant_key), json={})
        assert enrolled.status_code == 201, enrolled.text
        members.append(enrolled.json()["id"])

    def checkout(http: Http, index: int) -> tuple[int, int]:
        answer = http.post("/v1/pos/transactions", headers=auth(shop.till(index)),
                           json=purchase(receipt_no=f"R-{index}", lines=[COFFEE],
                                         member={"member_id": members[index]}))
        offers = answer.json().get("offers", []) if answer.status_code == 201 else []
        return answer.status_code, len(offers)

    with _server() as http:
        answers = all_at_once(CHECKOUTS, lambda index: checkout(http, index))
    assert Counter(status for status, _ in answers) == {201: CHECKOUTS}
    assert sum(given for _, given in answers) == BUDGET
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(PosTransaction)) == CHECKOUTS
        outcomes = session.scalars(select(CampaignOutcome)).all()
        assert len(outcomes) == BUDGET and not any(row.held_out for row in outcomes)
        assert len({row.member_id for row in outcomes}) == BUDGET
        assert session.scalar(select(Campaign.outcomes_count)) == BUDGET
        assert session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.source == "campaign")) == BUDGET


MEMBER_CHECKOUTS = 40


@pytest.mark.postgres
@pytest.mark.slow
def test_the_per_member_limit_holds_when_one_member_checks_out_at_every_till_at_once(
        database: Database, client: TestClient) -> None:
    """Once per member per 30 days, and the member at every register at the same instant
    (a card shared by a family): one outcome."""
    shop = _shop(database)
    offer = make_offer(client, shop.merchant_key, kind="free_item", item_sku="CR-1")
    created = client.post("/v1/campaigns", headers=auth(shop.merchant_key), json={
        "name": "Once a month", "trigger": "checkout",
        "per_member": {"count": 1, "period_days": 30},
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "issue_voucher", "offer_id": offer["id"]}]})
    assert created.status_code == 201, created.text
    member = client.post("/v1/members", headers=auth(shop.merchant_key), json={}).json()

    def checkout(http: Http, index: int) -> tuple[int, int]:
        answer = http.post("/v1/pos/transactions", headers=auth(shop.till(index)),
                           json=purchase(receipt_no=f"M-{index}", lines=[COFFEE],
                                         member={"member_id": member["id"]}))
        offers = answer.json().get("offers", []) if answer.status_code == 201 else []
        return answer.status_code, len(offers)

    with _server() as http:
        answers = all_at_once(MEMBER_CHECKOUTS, lambda index: checkout(http, index))
    assert Counter(status for status, _ in answers) == {201: MEMBER_CHECKOUTS}
    assert sum(given for _, given in answers) == 1
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(CampaignOutcome)) == 1
