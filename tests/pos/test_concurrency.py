"""Real concurrent checkouts against a running server (several worker processes), on
PostgreSQL: duplicate receipts and competing burns."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patron.db import Database
from patron.ledger import service as ledger
from patron.ledger.models import JournalEntry, Posting
from patron.notify.models import OutboxEvent
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.scores.models import MemberStats
from patron.tenancy.models import Role
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    create_merchant,
    create_store,
    create_terminal,
    issue_key,
)
from tests.concurrency import all_at_once
from tests.conftest import TEST_DATABASE_URL, auth
from tests.live_server import live_server
from tests.pos.conftest import JPY_BASKET, give_points, purchase

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Shop:
    def __init__(self, merchant_id: str, merchant_key: str, pos_key: str) -> None:
        self.merchant_id = merchant_id
        self.merchant_key = merchant_key
        self.pos_key = pos_key


def _shop(database: Database) -> Shop:
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=88888, name="Busy", currency="JPY", timezone="Asia/Tokyo", country="JP"))
        store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code="main", name="Main"))
        _, pos_key = create_terminal(session, actor=SYSTEM, store_id=store.id,
                                     data=TerminalCreate(code="pos-1"))
        _, merchant_key = issue_key(session, role=Role.merchant, merchant_id=merchant.id)
        return Shop(str(merchant.id), merchant_key, pos_key)


def _count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_20_simultaneous_submissions_of_one_receipt_commit_once(database: Database) -> None:
    shop = _shop(database)
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60,
                         limits=httpx.Limits(max_connections=20)) as http:
        member = http.post("/v1/members", headers=auth(shop.merchant_key), json={}).json()
        give_points(database, shop.merchant_id, member["id"], 1000)
        body = purchase(receipt_no="DUP-1", member={"barcode": member["member_number"]},
                        lines=JPY_BASKET, points_to_burn=200)
        responses = all_at_once(20, lambda _: http.post(
            "/v1/pos/transactions", headers=auth(shop.pos_key), json=body))
    assert [r.status_code for r in responses] == [201] * 20, {r.text for r in responses}
    assert len({r.content for r in responses}) == 1
    assert _count(database, PosTransaction) == 1
    assert _count(database, PosTransactionLine) == 3
    # The seed, one burn, one earn; and their postings only.
    assert _count(database, JournalEntry) == 3 and _count(database, Posting) == 6
    with database.session_scope() as session:
        stats = session.scalars(select(MemberStats)).one()
        assert stats.purchase_count == 1
        assert session.scalar(select(func.count()).select_from(OutboxEvent)
                              .where(OutboxEvent.type == "transaction.committed")) == 1
        balance = ledger.points_balance(session, merchant_id=uuid.UUID(shop.merchant_id),
                                        member_id=uuid.UUID(member["id"]))
    assert balance == responses[0].json()["balance_after"] == 1000 - 200 + 23
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []


def test_50_checkouts_burning_100_from_1000_points_exactly_10_succeed(
        database: Database) -> None:
    shop = _shop(database)
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60,
                         limits=httpx.Limits(max_connections=50)) as http:
        member = http.post("/v1/members", headers=auth(shop.merchant_key), json={}).json()
        give_points(database, shop.merchant_id, member["id"], 1000)
        # Tobacco earns nothing, so every success burns exactly 100 and earns 0.
        lines = [{"sku": "TB-1", "name": "Cigarettes", "category": "tobacco",
                  "quantity": 1, "unit_price": 600}]

        def checkout(index: int) -> httpx.Response:
            return http.post("/v1/pos/transactions", headers=auth(shop.pos_key),
                             json=purchase(receipt_no=f"R-{index}", lines=lines,
                                           member={"member_id": member["id"]},
                                           points_to_burn=100))

        # The default program would earn on tobacco; exclude it first.
        program = http.put(f"/v1/merchants/{shop.merchant_id}/program",
                           headers=auth(shop.merchant_key),
                           json={"earn_points": 1, "earn_per_amount": 100,
                                 "point_value_minor": 1, "expiry_months": None,
                                 "excluded_categories": ["tobacco"]})
        assert program.status_code == 200, program.text
        responses = all_at_once(50, checkout)
    outcomes = Counter((r.status_code, r.json().get("code")) for r in responses)
    assert outcomes == {(201, None): 10, (409, "insufficient_points"): 40}, outcomes
    assert _count(database, PosTransaction) == 10
    with database.session_scope() as session:
        assert ledger.points_balance(session, merchant_id=uuid.UUID(shop.merchant_id),
                                     member_id=uuid.UUID(member["id"])) == 0
        assert ledger.check_invariants(session) == []


def test_concurrent_returns_never_bring_back_more_than_was_bought(
        database: Database) -> None:
    """A line of 5 units, 12 simultaneous returns of one unit each (different return
    numbers) plus 8 replays of one of them: exactly 5 returns, the points given back add up
    to exactly what the purchase moved."""
    shop = _shop(database)
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=60,
                         limits=httpx.Limits(max_connections=20)) as http:
        member = http.post("/v1/members", headers=auth(shop.merchant_key), json={}).json()
        give_points(database, shop.merchant_id, member["id"], 1000)
        sale = http.post("/v1/pos/transactions", headers=auth(shop.pos_key), json=purchase(
            receipt_no="RET-1", member={"barcode": member["member_number"]},
            points_to_burn=100, lines=[{"sku": "S", "name": "Socks", "quantity": 5,
                                        "unit_price": 333}])).json()
        url = f"/v1/pos/transactions/{sale['id']}/returns"

        def give_back(index: int) -> httpx.Response:
            number = "RT-0" if index >= 12 else f"RT-{index}"
            return http.post(url, headers=auth(shop.pos_key), json={
                "return_no": number, "occurred_at": sale["occurred_at"],
                "lines": [{"line_no": 1, "quantity": 1}]})

        answers = all_at_once(20, give_back)
    codes = Counter((a.status_code, a.json().get("code")) for a in answers)
    assert set(codes) <= {(201, None), (409, "return_exceeds_purchase")}, codes
    accepted = {a.json()["return_no"]: a.json() for a in answers if a.status_code == 201}
    assert len(accepted) == 5, codes
    # Replays of one return number answer with the same bytes.
    bodies: dict[str, set[bytes]] = {}
    for answer in answers:
        if answer.status_code == 201:
            bodies.setdefault(answer.json()["return_no"], set()).add(answer.content)
    assert all(len(same) == 1 for same in bodies.values())
    assert sum(r["refund_amount"] for r in accepted.values()) == sale["total"]
    assert sum(r["points_clawed_back"] for r in accepted.values()) == sale["points_earned"]
    assert sum(r["points_restored"] for r in accepted.values()) == sale["points_burned"]
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []
        line = session.scalars(select(PosTransactionLine)).one()
        assert line.returned_quantity == 5
        assert ledger.points_balance(session, merchant_id=uuid.UUID(shop.merchant_id),
                                     member_id=uuid.UUID(member["id"])) == 1000
