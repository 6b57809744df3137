"""The expiry job and expiry notices: store-local month ends, batches, exactly once."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select

from patron.config import get_settings
from patron.db import Database
from patron.jobs.expiry import expiring_event_id, run_expiry, run_expiry_notices
from patron.kit.clock import clock
from patron.ledger import rules, service
from patron.notify.models import OutboxEvent
from tests.concurrency import all_at_once
from tests.ledger.conftest import Cast, invariants, make_cast, snapshot

# One UTC instant: 1 April 01:00 in Tokyo, still 31 March 09:00 in Los Angeles.
EARNED = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)
TOKYO, LOS_ANGELES = 0, 1  # make_cast's merchants: Asia/Tokyo, America/Los_Angeles


@pytest.fixture(autouse=True)
def _frozen() -> None:
    clock.freeze(EARNED)


def earn(database: Database, cast: Cast, points: int, key: str, *, expires_at: datetime | None,
         merchant: int = 0, member: int = 0) -> None:
    with database.session_scope() as session:
        service.earn(session, merchant_id=cast.merchants[merchant],
                     member_id=cast.members[member], points=points, expires_at=expires_at,
                     idempotency_key=key, source=f"test:{key}", occurred_at=EARNED)


def balance(database: Database, cast: Cast, *, merchant: int, member: int = 0) -> int:
    with database.session_scope() as session:
        return service.points_balance(session, merchant_id=cast.merchants[merchant],
                                      member_id=cast.members[member])


def events(database: Database, type: str) -> list[OutboxEvent]:
    with database.session_scope() as session:
        return list(session.scalars(select(OutboxEvent).where(OutboxEvent.type == type)
                                    .order_by(OutboxEvent.occurred_at, OutboxEvent.id)))


def outbox_rows(database: Database) -> list[tuple[Any, ...]]:
    with database.session_scope() as session:
        return sorted((str(row.id), row.type, str(row.payload)) for row in
                      session.scalars(select(OutboxEvent)))


# --- expiry -------------------------------------------------------------------------------

def test_points_expire_at_the_store_local_month_end(database: Database) -> None:
    cast = make_cast(database, merchants=2, members=1)
    tokyo_end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)
    la_end = rules.expiry_at(EARNED, "America/Los_Angeles", 0)
    # The same instant is in April in Tokyo and in March in Los Angeles.
    assert tokyo_end == datetime(2026, 4, 30, 15, 0, tzinfo=UTC)  # 1 May 00:00 JST
    assert la_end == datetime(2026, 4, 1, 7, 0, tzinfo=UTC)  # 1 April 00:00 PDT
    earn(database, cast, 100, "tokyo", expires_at=tokyo_end, merchant=TOKYO)
    earn(database, cast, 40, "la", expires_at=la_end, merchant=LOS_ANGELES)
    earn(database, cast, 7, "never", expires_at=None, merchant=LOS_ANGELES)

    before = snapshot(database)
    assert run_expiry(database, la_end - timedelta(microseconds=1)).entries == 0
    assert snapshot(database) == before and events(database, "points.expired") == []

    run = run_expiry(database, la_end)
    assert (run.entries, run.points, run.batches) == (1, 40, 1)
    assert balance(database, cast, merchant=TOKYO) == 100
    assert balance(database, cast, merchant=LOS_ANGELES) == 7
    [expired] = events(database, "points.expired")
    assert (expired.merchant_id, expired.member_id, expired.occurred_at) == (
        cast.merchants[LOS_ANGELES], cast.members[0], la_end)
    assert expired.payload == {
        "entry_id": expired.payload["entry_id"], "merchant_id": str(cast.merchants[1]),
        "member_id": str(cast.members[0]), "points": 40,
        "expires_at": "2026-04-01T07:00:00+00:00"}

    # Running again (late, or twice) changes nothing.
    after_first = (snapshot(database), outbox_rows(database))
    assert run_expiry(database, la_end + timedelta(days=3)).entries == 0
    assert (snapshot(database), outbox_rows(database)) == after_first

    assert run_expiry(database, tokyo_end).points == 100
    assert balance(database, cast, merchant=TOKYO) == 0
    assert [e.payload["points"] for e in events(database, "points.expired")] == [40, 100]
    assert invariants(database) == []


def test_only_what_is_left_of_a_lot_expires(database: Database) -> None:
    cast = make_cast(database, merchants=1, members=1)
    end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)
    earn(database, cast, 100, "e1", expires_at=end)
    with database.session_scope() as session:
        service.burn(session, merchant_id=cast.merchants[0], member_id=cast.members[0],
                     points=65, idempotency_key="b1", source="test")
    assert run_expiry(database, end).points == 35
    assert [e.payload["points"] for e in events(database, "points.expired")] == [35]


def test_expiry_runs_one_short_transaction_per_batch(database: Database) -> None:
    cast = make_cast(database, merchants=1, members=2)
    end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)
    for index in range(5):
        earn(database, cast, 10 + index, f"e{index}", expires_at=end, member=index % 2)
    commits: list[int] = []
    listener = lambda _connection: commits.append(1)  # noqa: E731
    event.listen(database.engine, "commit", listener)
    try:
        run = run_expiry(database, end, batch=2)
    finally:
        event.remove(database.engine, "commit", listener)
    assert (run.entries, run.points, run.batches) == (5, 60, 3)
    # 3 batches that expired something + the one that found nothing left.
    assert len(commits) == 4
    assert sorted(e.payload["points"] for e in events(database, "points.expired")) == [
        10, 11, 12, 13, 14]
    assert invariants(database) == []


def test_a_stopped_run_does_nothing_more(database: Database) -> None:
    cast = make_cast(database, merchants=1, members=1)
    end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)
    earn(database, cast, 10, "e1", expires_at=end)
    stop = threading.Event()
    stop.set()
    assert run_expiry(database, end, stop=stop).entries == 0
    assert run_expiry_notices(database, end - timedelta(days=1), stop=stop).groups == 0
    assert balance(database, cast, merchant=0) == 10


def test_now_must_carry_a_time_zone(database: Database) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        run_expiry(database, datetime(2026, 4, 1))
    with pytest.raises(ValueError, match="at least 1"):
        run_expiry_notices(database, EARNED, days=0)


# --- notices ------------------------------------------------------------------------------

def test_one_notice_per_member_merchant_and_expiry_date(database: Database) -> None:
    cast = make_cast(database, merchants=2, members=2)
    tokyo_end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)  # 30 April 15:00 UTC
    la_end = rules.expiry_at(EARNED, "America/Los_Angeles", 0)  # 1 April 07:00 UTC
    earn(database, cast, 70, "t1", expires_at=tokyo_end, merchant=TOKYO)
    earn(database, cast, 30, "t2", expires_at=tokyo_end, merchant=TOKYO)  # same date: added
    earn(database, cast, 50, "t-later", expires_at=rules.expiry_at(EARNED, "Asia/Tokyo", 1),
         merchant=TOKYO)  # 31 May: outside the 30 days
    earn(database, cast, 9, "t-never", expires_at=None, merchant=TOKYO)
    earn(database, cast, 40, "la", expires_at=la_end, merchant=LOS_ANGELES, member=1)
    earn(database, cast, 5, "due", expires_at=EARNED, merchant=LOS_ANGELES)  # due now: expiry's

    now = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    run = run_expiry_notices(database, now)
    assert (run.groups, run.emitted) == (2, 2)
    notices = {e.merchant_id: e for e in events(database, "points.expiring")}
    assert len(notices) == 2
    tokyo, la = notices[cast.merchants[TOKYO]], notices[cast.merchants[LOS_ANGELES]]
    assert tokyo.payload == {
        "merchant_id": str(cast.merchants[TOKYO]), "member_id": str(cast.members[0]),
        "points": 100, "expires_at": "2026-04-30T15:00:00+00:00", "last_day": "2026-04-30",
        "timezone": "Asia/Tokyo"}
    assert la.payload == {
        "merchant_id": str(cast.merchants[LOS_ANGELES]), "member_id": str(cast.members[1]),
        "points": 40, "expires_at": "2026-04-01T07:00:00+00:00", "last_day": "2026-03-31",
        "timezone": "America/Los_Angeles"}
    assert (tokyo.member_id, tokyo.occurred_at) == (cast.members[0], now)
    assert tokyo.id == expiring_event_id(member_id=cast.members[0],
                                         merchant_id=cast.merchants[TOKYO],
                                         expires_at=tokyo_end)

    # Again, later, after a burn: the notices exist, nothing new and nothing changed.
    with database.session_scope() as session:
        service.burn(session, merchant_id=cast.merchants[TOKYO], member_id=cast.members[0],
                     points=20, idempotency_key="b1", source="test")
    before = outbox_rows(database)
    again = run_expiry_notices(database, now + timedelta(hours=5))
    assert (again.groups, again.emitted) == (2, 0)
    assert outbox_rows(database) == before

    # The May date enters the 30-day window on 1 May 15:00 UTC (31 May 15:00 minus 30 days).
    may = run_expiry_notices(database, datetime(2026, 5, 1, 15, 0, tzinfo=UTC))
    assert (may.groups, may.emitted) == (1, 1)
    assert len(events(database, "points.expiring")) == 3


def test_the_notice_window_is_a_setting(database: Database,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    cast = make_cast(database, merchants=1, members=1)
    end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)  # 30 April 15:00 UTC
    earn(database, cast, 10, "e1", expires_at=end)
    monkeypatch.setattr(get_settings(), "expiry_notice_days", 7)
    assert run_expiry_notices(database, end - timedelta(days=7, seconds=1)).groups == 0
    assert run_expiry_notices(database, end - timedelta(days=7)).emitted == 1
    assert run_expiry_notices(database, end - timedelta(days=40), days=45).emitted == 0


def test_notices_come_in_batches(database: Database) -> None:
    cast = make_cast(database, merchants=1, members=5)
    end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)
    for index in range(5):
        earn(database, cast, 10, f"e{index}", expires_at=end, member=index)
    run = run_expiry_notices(database, EARNED, batch=2)
    assert (run.groups, run.emitted) == (5, 5)
    assert {e.member_id for e in events(database, "points.expiring")} == set(cast.members)


# --- concurrency (PostgreSQL) ---------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_notice_runs_emit_each_notice_once(database: Database) -> None:
    cast = make_cast(database, merchants=2, members=30)
    for merchant, zone in ((TOKYO, "Asia/Tokyo"), (LOS_ANGELES, "America/Los_Angeles")):
        for index in range(30):
            earn(database, cast, 10 + index, f"e{merchant}-{index}", merchant=merchant,
                 member=index, expires_at=rules.expiry_at(EARNED, zone, 0))
    now = datetime(2026, 4, 1, 0, 0, tzinfo=UTC)
    runs = all_at_once(4, lambda _: run_expiry_notices(database, now, batch=7))
    assert [run.groups for run in runs] == [60] * 4
    assert sum(run.emitted for run in runs) == 60
    notices = events(database, "points.expiring")
    assert len(notices) == 60
    assert len({(e.member_id, e.merchant_id) for e in notices}) == 60


@pytest.mark.postgres
@pytest.mark.slow
def test_concurrent_expiry_runs_expire_each_lot_once(database: Database) -> None:
    cast = make_cast(database, merchants=1, members=20)
    end = rules.expiry_at(EARNED, "Asia/Tokyo", 0)
    for index in range(40):
        earn(database, cast, 1 + index, f"e{index}", expires_at=end, member=index % 20)
    runs = all_at_once(4, lambda _: run_expiry(database, end, batch=5))
    assert sum(run.entries for run in runs) == 40
    assert sum(run.points for run in runs) == sum(range(1, 41))
    expired = events(database, "points.expired")
    assert len(expired) == 40 and len({e.payload["entry_id"] for e in expired}) == 40
    assert all(balance(database, cast, merchant=0, member=m) == 0 for m in range(20))
    assert invariants(database) == []


def test_event_ids_are_deterministic() -> None:
    member, merchant = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 4, 30, 15, 0, tzinfo=UTC)
    same = expiring_event_id(member_id=member, merchant_id=merchant,
                             expires_at=at.astimezone(ZoneInfo("Asia/Tokyo")))
    assert expiring_event_id(member_id=member, merchant_id=merchant, expires_at=at) == same
    assert expiring_event_id(member_id=member, merchant_id=merchant,
                             expires_at=at + timedelta(days=1)) != same
    assert expiring_event_id(member_id=merchant, merchant_id=member, expires_at=at) != same
