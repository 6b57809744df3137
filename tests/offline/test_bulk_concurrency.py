"""The set-wise offline replay racing online checkouts of the same members, against a
running server (two worker processes) on PostgreSQL: no deadlock, no lost or doubled
points or miles, every answer the books agree with."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patron.db import Database
from patron.ledger import service as ledger
from patron.offline.models import OfflineAllowance
from patron.pos.models import PosTransaction
from patron.tenancy.models import Role
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import SYSTEM, create_merchant, create_store, create_terminal, issue_key
from tests.concurrency import all_at_once
from tests.conftest import TEST_DATABASE_URL, auth, operator_key
from tests.live_server import live_server
from tests.offline.conftest import entry, sale
from tests.pos.conftest import JPY_BASKET, give_points, purchase

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MEMBERS = 6
START = 2_000
BATCH = 120
ONLINE = 40


def test_batches_and_online_checkouts_of_the_same_members_at_once_keep_the_books(
        database: Database) -> None:
    op_key = operator_key(database)
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=86001, name="Rush", currency="JPY", timezone="Asia/Tokyo", country="JP"))
        store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code="main", name="Main"))
        tills = [create_terminal(session, actor=SYSTEM, store_id=store.id,
                                 data=TerminalCreate(code=f"pos-{n}"))[1] for n in range(3)]
        _, merchant_key = issue_key(session, role=Role.merchant, merchant_id=merchant.id)
        merchant_id = str(merchant.id)
    online_key, batch_keys = tills[0], tills[1:]
    with live_server(TEST_DATABASE_URL, workers=2) as base, \
            httpx.Client(base_url=base, timeout=120,
                         limits=httpx.Limits(max_connections=ONLINE + 2)) as http:
        # Miles too: the batches then lock the coalition pool as the checkouts do.
        assert http.put("/v1/coalition/rates", headers=auth(op_key), json={"rates": [
            {"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000}]},
                        ).status_code == 200
        members = [http.post("/v1/members", headers=auth(merchant_key), json={}).json()
                   for _ in range(MEMBERS)]
        for member in members:
            give_points(database, merchant_id, member["id"], START)
        # Batch till t burns for the members whose index is t modulo 2; the online till
        # burns for every member meanwhile.
        signed = {(key, member["id"]): http.post(
            "/v1/pos/offline/allowances", headers=auth(key),
            json={"member": {"member_id": member["id"]}}).json()
            for till, key in enumerate(batch_keys) for member in members[till::2]}

        def queue(till: int, key: str) -> list[dict[str, Any]]:
            entries = []
            for n in range(BATCH):
                member = members[n % MEMBERS]
                burn = 100 if n % 3 == 0 and n % MEMBERS % 2 == till else 0
                entries.append(entry(n + 1, sale(
                    f"B{till}-{n:04d}", member={"barcode": member["member_number"]}
                    if burn == 0 else {"member_id": member["id"]}, points_to_burn=burn,
                    lines=JPY_BASKET), signed=signed[key, member["id"]] if burn else None))
            return entries

        queues = [queue(n, key) for n, key in enumerate(batch_keys)]

        def call(index: int) -> httpx.Response:
            if index < len(batch_keys):
                return http.post("/v1/pos/offline/batches", headers=auth(batch_keys[index]),
                                 json={"entries": queues[index]})
            n = index - len(batch_keys)
            member = members[n % MEMBERS]
            return http.post("/v1/pos/transactions", headers=auth(online_key), json=purchase(
                receipt_no=f"ON-{n:03d}", member={"barcode": member["member_number"]},
                lines=JPY_BASKET, points_to_burn=700 if n % 2 else 0))

        responses = all_at_once(len(batch_keys) + ONLINE, call)

    batch_answers = responses[:len(batch_keys)]
    assert [r.status_code for r in batch_answers] == [200] * len(batch_keys), \
        [r.text[:300] for r in batch_answers]
    online = responses[len(batch_keys):]
    online_outcomes = Counter((r.status_code, r.json().get("code")) for r in online)
    assert set(online_outcomes) <= {(201, None), (409, "insufficient_points")}, online_outcomes
    results = [result for r in batch_answers for result in r.json()["results"]]
    statuses = Counter(result["status"] for result in results)
    assert set(statuses) <= {"committed", "committed_with_exception"}, statuses
    assert sum(statuses.values()) == BATCH * len(batch_keys)

    # Every committed sale, online or replayed, and what it moved.
    committed = [r.json() for r in online if r.status_code == 201] + [
        result["transaction"] for result in results]
    moved: Counter[str] = Counter()
    miles: Counter[str] = Counter()
    for transaction in committed:
        moved[transaction["member_id"]] += (transaction["points_earned"]
                                            - transaction["points_burned"])
        miles[transaction["member_id"]] += transaction["miles_earned"]
    with database.session_scope() as session:
        assert ledger.check_invariants(session) == []
        assert session.scalar(select(func.count()).select_from(PosTransaction)) == len(committed)
        for member in members:
            member_id = uuid.UUID(member["id"])
            assert ledger.points_balance(session, merchant_id=uuid.UUID(merchant_id),
                                         member_id=member_id) == START + moved[member["id"]]
            assert ledger.miles_balance(session, member_id=member_id) == miles[member["id"]]
        # An allowance counts exactly the points its till's replayed sales burned.
        burned: Counter[tuple[str, str]] = Counter()
        for key, answer in zip(batch_keys, batch_answers, strict=True):
            for result in answer.json()["results"]:
                burned[key, result["transaction"]["member_id"]] += \
                    result["transaction"]["points_burned"]
        for (key, member_id), document in signed.items():
            row = session.get(OfflineAllowance, uuid.UUID(document["allowance"]["id"]))
            assert row is not None and row.burned == burned[key, member_id]
    # Both kinds of sale went through while the other ran.
    assert statuses["committed"] > 0 and online_outcomes[201, None] > 0
