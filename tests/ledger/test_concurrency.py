"""Real threads, each with its own connection and transaction, against PostgreSQL."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select

from patron.ledger import service
from patron.ledger.errors import InsufficientPoints, ReturnExceedsOriginal
from patron.ledger.models import JournalEntry, PointLot
from tests.ledger.conftest import invariants, make_cast

THREADS = 50


def _all_at_once(count, call, refusals=(InsufficientPoints,)):
    barrier = threading.Barrier(count)

    def run(index):
        barrier.wait()
        try:
            return call(index)
        except refusals as refused:
            return refused.code

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.postgres
@pytest.mark.slow
def test_50_concurrent_burns_of_100_from_1000_points(database):
    cast = make_cast(database)
    merchant, member = cast.merchants[0], cast.members[0]
    with database.session_scope() as session:
        # Ten lots of 100, so the burns also compete for the same lots.
        for index in range(10):
            service.earn(session, merchant_id=merchant, member_id=member, points=100,
                         expires_at=None, idempotency_key=f"earn:{index}", source="test")

    def burn(index):
        with database.session_scope() as session:
            service.burn(session, merchant_id=merchant, member_id=member, points=100,
                         idempotency_key=f"burn:{index}", source="test")
        return "burned"

    outcomes = _all_at_once(THREADS, burn)
    assert outcomes.count("burned") == 10
    assert outcomes.count("insufficient_points") == 40
    with database.session_scope() as session:
        assert service.points_balance(session, merchant_id=merchant, member_id=member) == 0
        assert session.scalars(select(PointLot.remaining)).all() == [0] * 10
        assert len(session.scalars(select(JournalEntry)
                                   .where(JournalEntry.kind == "burn")).all()) == 10
    assert invariants(database) == []


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_earns_burns_returns_and_expiry_keep_the_books_sound(database):
    from datetime import UTC, datetime, timedelta

    from patron.kit.clock import clock

    now = datetime(2026, 5, 1, tzinfo=UTC)
    clock.freeze(now)
    cast = make_cast(database, merchants=2, members=2)
    with database.session_scope() as session:
        earns = [service.earn(session, merchant_id=cast.merchants[i % 2],
                              member_id=cast.members[i // 2 % 2], points=50,
                              expires_at=now - timedelta(seconds=1) if i % 3 == 0 else None,
                              idempotency_key=f"seed:{i}", source="test") for i in range(12)]

    def work(index):
        with database.session_scope() as session:
            kind = index % 4
            if kind == 0:
                service.expire(session, now=now, limit=5)
            elif kind == 1:
                service.burn(session, merchant_id=cast.merchants[index % 2],
                             member_id=cast.members[index // 2 % 2], points=30,
                             idempotency_key=f"burn:{index}", source="test")
            elif kind == 2:
                service.claw_back(session, earn_entry_id=earns[index % 12].id, points=20,
                                  idempotency_key=f"return:{index}", source="test")
            else:
                service.earn(session, merchant_id=cast.merchants[index % 2],
                             member_id=cast.members[index // 2 % 2], points=25,
                             expires_at=None, idempotency_key=f"earn:{index % 8}",
                             source="test")
        return "done"

    outcomes = _all_at_once(40, work, (InsufficientPoints, ReturnExceedsOriginal))
    assert set(outcomes) <= {"done", "insufficient_points", "return_exceeds_original"}
    # Ten returns of 20 against three earns of 50: exactly two per earn succeed.
    assert outcomes.count("return_exceeds_original") == 10 - 3 * 2
    assert invariants(database) == []
