"""The referral program under real concurrency (PostgreSQL, a running server): referees of
one referrer qualifying at the same instant, each with two simultaneous purchases — every
referral rewarded exactly once, and the referrer's monthly cap exact.

The rewards are codes and the merchant's program earns no points, so no ledger account
lock puts the purchases in a queue: only the referral's own locks keep the count."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.referrals.models import Referral
from patron.vouchers.models import Voucher
from tests.concurrency import all_at_once
from tests.conftest import auth
from tests.pos.conftest import purchase
from tests.vouchers.conftest import make_offer
from tests.vouchers.test_concurrency import Http, _server, _shop

REFEREES = 40
CAP = 3
KETTLE = {"sku": "KT-1", "name": "Kettle", "category": "home", "quantity": 1,
          "unit_price": 3000}


@pytest.mark.postgres
@pytest.mark.slow
def test_simultaneous_qualifying_purchases_reward_each_referral_once_within_the_cap(
        database: Database, client: TestClient) -> None:
    shop = _shop(database)
    program = client.put(f"/v1/merchants/{shop.merchant_id}/program",
                         headers=auth(shop.merchant_key), json={
                             "earn_points": 0, "earn_per_amount": 100, "rounding": "floor",
                             "point_value_minor": 1, "min_burn": 1, "expiry_months": None,
                             "tiers": [{"name": "Base", "threshold_points": 0}]})
    assert program.status_code == 200, program.text
    welcome = make_offer(client, shop.merchant_key, name="Welcome", value=300)
    thanks = make_offer(client, shop.merchant_key, name="Thanks", value=500)
    put = client.put(f"/v1/merchants/{shop.merchant_id}/referral-program",
                     headers=auth(shop.merchant_key),
                     json={"referrer_offer_id": thanks["id"], "referee_offer_id": welcome["id"],
                           "min_purchase_minor": 1000, "monthly_cap": CAP})
    assert put.status_code == 200, put.text
    referrer = client.post("/v1/members", headers=auth(shop.merchant_key), json={}).json()
    code = client.get(f"/v1/members/{referrer['id']}/referral",
                      headers=auth(shop.merchant_key)).json()["code"]
    referees = []
    for _ in range(REFEREES):
        enrolled = client.post("/v1/members", headers=auth(shop.merchant_key),
                               json={"referral_code": code})
        assert enrolled.status_code == 201, enrolled.text
        referees.append(enrolled.json()["id"])

    def checkout(http: Http, index: int) -> tuple[int, int]:
        # Two purchases per referee, on two registers, at once.
        answer = http.post("/v1/pos/transactions", headers=auth(shop.till(index)),
                           json=purchase(receipt_no=f"R-{index}", lines=[KETTLE],
                                         member={"member_id": referees[index // 2]}))
        offers = answer.json().get("offers", []) if answer.status_code == 201 else []
        return answer.status_code, sum("referral_id" in offer for offer in offers)

    with _server() as http:
        answers = all_at_once(2 * REFEREES, lambda index: checkout(http, index))
    assert Counter(status for status, _ in answers) == {201: 2 * REFEREES}
    assert sum(given for _, given in answers) == REFEREES
    with database.session_scope() as session:
        referrals = session.scalars(select(Referral)).all()
        assert Counter(row.status for row in referrals) == {"rewarded": REFEREES}
        assert Counter(row.referrer_refusal for row in referrals) == {
            None: CAP, "monthly_cap_reached": REFEREES - CAP}
        codes = Counter(session.scalars(select(Voucher.member_id).where(
            Voucher.source == "referral")))
        assert codes[uuid.UUID(referrer["id"])] == CAP
        assert sorted(codes.values()) == sorted([CAP] + [1] * REFEREES)
        assert session.scalar(select(func.count()).select_from(Referral).where(
            Referral.transaction_id.is_(None))) == 0
