"""Threshold benefits under real concurrency: simultaneous purchases of one member against a
running server (several worker processes) on PostgreSQL issue each crossing's benefit
exactly once; replays never issue again; a return racing the benefit's use either revokes
it or leaves it used, never both."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patron.db import Database
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.notify.models import OutboxEvent
from patron.tenancy.models import Role
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    create_merchant,
    create_store,
    create_terminal,
    issue_key,
)
from patron.vouchers.benefits.models import BenefitProgress, IssuedBenefit
from patron.vouchers.models import Voucher
from tests.concurrency import all_at_once
from tests.conftest import TEST_DATABASE_URL, auth
from tests.live_server import live_server

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Shop:
    def __init__(self, merchant_key: str, pos_keys: list[str]) -> None:
        self.merchant_key = merchant_key
        self.pos_keys = pos_keys


@pytest.fixture
def shop(database: Database) -> Shop:
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=77777, name="Stamps", currency="JPY", timezone="Asia/Tokyo", country="JP"))
        store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code="main", name="Main"))
        pos_keys = [create_terminal(session, actor=SYSTEM, store_id=store.id,
                                    data=TerminalCreate(code=f"pos-{number}"))[1]
                    for number in range(4)]
        _, merchant_key = issue_key(session, role=Role.merchant, merchant_id=merchant.id)
    return Shop(merchant_key, pos_keys)


@pytest.fixture
def http(monkeypatch: pytest.MonkeyPatch) -> Iterator[httpx.Client]:
    # Refused vouchers are part of the race below: no failure throttle in the way.
    monkeypatch.setenv("PATRON_VOUCHER_FAILURE_LIMIT", "0")
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60,
                         limits=httpx.Limits(max_connections=40)) as client:
        yield client


def _setup(http: httpx.Client, shop: Shop, *, mode: str, threshold: int,
           members: int = 1) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    offer = http.post("/v1/offers", headers=auth(shop.merchant_key), json={
        "name": "Thank you", "kind": "amount_off", "value": 500})
    assert offer.status_code == 201, offer.text
    rule = http.post("/v1/benefit-rules", headers=auth(shop.merchant_key), json={
        "name": "Spender", "measure": "points", "mode": mode, "threshold": threshold,
        "offer_id": offer.json()["id"]})
    assert rule.status_code == 201, rule.text
    people = []
    for _ in range(members):
        member = http.post("/v1/members", headers=auth(shop.merchant_key), json={})
        assert member.status_code == 201, member.text
        people.append(member.json())
    return rule.json(), people


def _purchase(member: dict[str, Any], receipt_no: str, price: int,
              vouchers: list[dict[str, str]] | None = None) -> dict[str, Any]:
    # The default program: 1 point per 100 yen.
    return {"receipt_no": receipt_no, "occurred_at": utcnow().isoformat(),
            "currency": "JPY", "member": {"member_id": member["id"]},
            "lines": [{"sku": "G", "name": "Goods", "quantity": 1, "unit_price": price}],
            "vouchers": vouchers or []}


def _benefits(database: Database) -> list[tuple[uuid.UUID, int]]:
    with database.session_scope() as session:
        return [(member_id, int(crossing)) for member_id, crossing in session.execute(
            select(IssuedBenefit.member_id, IssuedBenefit.crossing)
            .where(IssuedBenefit.revoked_at.is_(None)))]


def _count(database: Database, model: Any, *where: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _progress(database: Database, member: dict[str, Any]) -> int | None:
    with database.session_scope() as session:
        return session.scalar(select(BenefitProgress.count).where(
            BenefitProgress.member_id == uuid.UUID(member["id"])))


def test_20_simultaneous_purchases_crossing_a_threshold_together_issue_one_benefit(
        database: Database, shop: Shop, http: httpx.Client) -> None:
    """Each purchase earns 60 points; the 17th to count reaches 1,000 — whichever it is."""
    _, [member] = _setup(http, shop, mode="once", threshold=1000)
    responses = all_at_once(20, lambda index: http.post(
        "/v1/pos/transactions", headers=auth(shop.pos_keys[index % 4]),
        json=_purchase(member, f"R-{index}", 6_000)))
    assert [r.status_code for r in responses] == [201] * 20, {r.text for r in responses}
    issued = [benefit for r in responses for benefit in r.json()["benefits"]]
    assert [benefit["crossing"] for benefit in issued] == [1]
    assert _benefits(database) == [(uuid.UUID(member["id"]), 1)]
    assert _count(database, Voucher, Voucher.source == "benefit") == 1
    assert _count(database, OutboxEvent, OutboxEvent.type == "benefit.issued") == 1
    assert _progress(database, member) == 1200
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []


def test_every_crossing_of_20_simultaneous_purchases_is_issued_once(
        database: Database, shop: Shop, http: httpx.Client) -> None:
    """Every 100 points, 20 x 60 points at once: crossings 1 to 12, each exactly once,
    plus 20 replays of the same receipts that add nothing."""
    _, [member] = _setup(http, shop, mode="every", threshold=100)
    bodies = [_purchase(member, f"R-{index}", 6_000) for index in range(20)]
    responses = all_at_once(40, lambda index: http.post(
        "/v1/pos/transactions", headers=auth(shop.pos_keys[0]), json=bodies[index % 20]))
    assert [r.status_code for r in responses] == [201] * 40, {r.text for r in responses}
    # A receipt and its replay answer with the same bytes.
    assert all(responses[index].content == responses[index + 20].content
               for index in range(20))
    crossings = sorted(benefit["crossing"] for r in responses[:20]
                       for benefit in r.json()["benefits"])
    assert crossings == list(range(1, 13))
    assert sorted(crossing for _, crossing in _benefits(database)) == list(range(1, 13))
    assert _count(database, Voucher, Voucher.source == "benefit") == 12
    assert _count(database, OutboxEvent, OutboxEvent.type == "benefit.issued") == 12
    assert _progress(database, member) == 1200


def test_a_return_racing_the_benefits_use_revokes_it_or_leaves_it_used(
        database: Database, shop: Shop, http: httpx.Client) -> None:
    """Ten members each cross 1,000 points once, then each member's crossing purchase is
    returned while the member spends the benefit, all 20 requests at once. Per member:
    either the code was revoked and the purchase refused with `voucher_revoked`, or the
    purchase used it and the return left it alone. Never both, never neither, no 5xx."""
    _, members = _setup(http, shop, mode="once", threshold=1000, members=10)
    sales, codes = [], []
    for number, member in enumerate(members):
        sale = http.post("/v1/pos/transactions", headers=auth(shop.pos_keys[0]),
                         json=_purchase(member, f"X-{number}", 100_000))
        assert sale.status_code == 201, sale.text
        [benefit] = sale.json()["benefits"]
        sales.append(sale.json())
        codes.append(benefit["code"])

    def race(index: int) -> httpx.Response:
        number = index // 2
        if index % 2 == 0:
            return http.post(f"/v1/pos/transactions/{sales[number]['id']}/returns",
                             headers=auth(shop.pos_keys[1]), json={
                                 "return_no": "RT-1", "occurred_at": utcnow().isoformat()})
        return http.post("/v1/pos/transactions", headers=auth(shop.pos_keys[2 + number % 2]),
                         json=_purchase(members[number], f"U-{number}", 3_000,
                                            vouchers=[{"code": codes[number]}]))

    answers = all_at_once(20, race)
    outcomes: Counter[str] = Counter()
    for number in range(10):
        returned, spent = answers[2 * number], answers[2 * number + 1]
        assert returned.status_code == 201, returned.text
        if returned.json()["benefits_revoked"] == [codes[number]]:
            assert (spent.status_code, spent.json()["code"]) == (409, "voucher_revoked")
            outcomes["revoked"] += 1
        else:
            assert returned.json()["benefits_revoked"] == [], returned.text
            assert spent.status_code == 201, spent.text
            assert spent.json()["voucher_discount"] == 500
            outcomes["used"] += 1
        state = http.get(f"/v1/vouchers/{codes[number]}", headers=auth(shop.merchant_key))
        assert state.json()["status"] == ("revoked" if returned.json()["benefits_revoked"]
                                          else "used")
    assert sum(outcomes.values()) == 10, outcomes
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []
        # No code is both revoked and used.
        assert session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.revoked_at.is_not(None), Voucher.redemptions_count > 0)) == 0
