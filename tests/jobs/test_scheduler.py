"""The scheduler inside `patron serve`: runs due jobs, one process at a time, stops cleanly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from patron.app import create_app
from patron.config import get_settings
from patron.db import Database
from patron.jobs.lease import FileLease, PostgresLease, SoleLease, lease_for
from patron.jobs.scheduler import JOBS, Job, Scheduler, run_all, start_scheduler
from patron.kit.clock import clock
from patron.ledger import rules, service
from patron.notify.models import OutboxEvent
from tests.conftest import IS_POSTGRES
from tests.ledger.conftest import Cast, make_cast

EARNED = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
END = rules.expiry_at(EARNED, "Asia/Tokyo", 0)  # 31 March 15:00 UTC


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "patron-jobs" and t.is_alive()]


@pytest.fixture
def due_lot(database: Database) -> Cast:
    """A member with 100 points that are due to expire at the frozen time."""
    clock.freeze(EARNED)
    cast = make_cast(database, merchants=1, members=1)
    with database.session_scope() as session:
        service.earn(session, merchant_id=cast.merchants[0], member_id=cast.members[0],
                     points=100, expires_at=END, idempotency_key="e1", source="test")
    clock.freeze(END)
    return cast


def balance(database: Database, cast: Cast) -> int:
    with database.session_scope() as session:
        return service.points_balance(session, merchant_id=cast.merchants[0],
                                      member_id=cast.members[0])


def event_types(database: Database) -> list[str]:
    with database.session_scope() as session:
        return sorted(session.scalars(select(OutboxEvent.type)
                                      .where(OutboxEvent.type.like("points.%"))))


def test_the_scheduler_runs_the_expiry_job(database: Database, due_lot: Cast) -> None:
    scheduler = Scheduler(database, interval=0.05)
    scheduler.start()
    try:
        wait_for(lambda: balance(database, due_lot) == 0)
    finally:
        scheduler.stop()
    assert not job_threads()
    assert event_types(database) == ["points.expired"]


def test_the_server_runs_the_scheduler_while_it_runs(database: Database,
                                                     due_lot: Cast) -> None:
    settings = get_settings().model_copy(update={"jobs_interval_seconds": 0.05})
    with TestClient(create_app(settings, database)) as client:
        assert client.get("/health").status_code == 200
        wait_for(lambda: balance(database, due_lot) == 0)
        assert len(job_threads()) == 1
    # The lifespan stopped it with the server.
    assert not job_threads()


def test_interval_zero_starts_no_scheduler(database: Database, due_lot: Cast) -> None:
    settings = get_settings().model_copy(update={"jobs_interval_seconds": 0})
    assert start_scheduler(database, settings) is None
    with TestClient(create_app(settings, database)) as client:
        assert client.get("/health").status_code == 200
        assert not job_threads()
    assert balance(database, due_lot) == 100


def test_a_failing_job_does_not_stop_the_others_or_the_next_tick(database: Database) -> None:
    ran: list[str] = []

    def broken(_db: Database, _now: datetime, _stop: threading.Event | None) -> str:
        ran.append("broken")
        raise RuntimeError("boom")

    def fine(_db: Database, _now: datetime, _stop: threading.Event | None) -> str:
        ran.append("fine")
        return "ok"

    scheduler = Scheduler(database, interval=60, lease=SoleLease(),
                          jobs=[Job("broken", broken), Job("fine", fine)])
    assert scheduler.tick() and scheduler.tick()
    assert ran == ["broken", "fine", "broken", "fine"]


def test_a_job_with_a_period_waits_for_it(database: Database) -> None:
    ran: list[str] = []

    def record(name: str) -> Callable[[Database, datetime, threading.Event | None], str]:
        def run(_db: Database, _now: datetime, _stop: threading.Event | None) -> str:
            ran.append(name)
            return name
        return run

    scheduler = Scheduler(database, interval=60, lease=SoleLease(), jobs=[
        Job("often", record("often")), Job("hourly", record("hourly"),
                                           every=timedelta(hours=1))])
    for _ in range(3):
        scheduler.tick()
    assert ran == ["often", "hourly", "often", "often"]
    assert [job.name for job in JOBS] == ["expire-points", "expiry-notices",
                                          "release-voucher-holds", "resume-code-batches",
                                          "refit-scores", "campaign-calendar",
                                          "weather-feed", "purge-idempotency-keys"]


def test_run_all_runs_every_job_once(database: Database, due_lot: Cast) -> None:
    assert [report.name for report in run_all(database)] == [
        "expire-points", "expiry-notices", "release-voucher-holds", "resume-code-batches",
        "refit-scores", "campaign-calendar", "weather-feed", "purge-idempotency-keys"]
    assert balance(database, due_lot) == 0


# --- one process at a time --------------------------------------------------------------------

def test_two_schedulers_never_run_jobs_at_the_same_time(database: Database) -> None:
    """Two schedulers on one database, as two `serve` workers: only the lease holder runs
    jobs; when it stops, the other takes over; never both at once."""
    lock = threading.Lock()
    running: list[str] = []
    overlaps: list[list[str]] = []
    runs = {"first": 0, "second": 0}

    def job_for(name: str) -> Job:
        def run(_db: Database, _now: datetime, _stop: threading.Event | None) -> str:
            with lock:
                running.append(name)
                if len(running) > 1:
                    overlaps.append(list(running))
                runs[name] += 1
            time.sleep(0.02)
            with lock:
                running.remove(name)
            return name
        return Job("probe", run)

    first = Scheduler(database, interval=0.01, jobs=[job_for("first")])
    second = Scheduler(database, interval=0.01, jobs=[job_for("second")])
    first.start()
    wait_for(lambda: runs["first"] >= 3)
    second.start()
    try:
        time.sleep(0.5)
        assert runs["second"] == 0
        first.stop()
        wait_for(lambda: runs["second"] >= 3)
    finally:
        first.stop()
        second.stop()
    assert overlaps == []
    assert not job_threads()


def test_file_leases_exclude_each_other(tmp_path: pytest.TempPathFactory) -> None:
    path = f"{tmp_path}/patron.db.jobs.lock"
    one, two = FileLease(path), FileLease(path)
    assert one.acquire() and one.acquire()
    assert not two.acquire()
    one.release()
    assert two.acquire() and not one.acquire()
    two.release()


def test_the_lease_matches_the_database(database: Database) -> None:
    lease = lease_for(database)
    assert isinstance(lease, PostgresLease if IS_POSTGRES else FileLease)
    assert isinstance(lease_for(Database("sqlite://")), SoleLease)


@pytest.fixture
def leases(database: Database) -> Iterator[list[PostgresLease]]:
    made: list[PostgresLease] = []
    yield made
    for lease in made:
        lease.release()


@pytest.mark.postgres
def test_a_lost_lock_connection_ends_the_leadership(database: Database,
                                                    leases: list[PostgresLease]) -> None:
    leader, other = PostgresLease(database.engine), PostgresLease(database.engine)
    leases.extend([leader, other])
    assert leader.acquire()
    assert not other.acquire()
    with database.engine.connect() as connection:
        pids = connection.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND objid::bigint = :low AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"), {"low": 0x6F6E6A62}).scalars().all()
        assert len(pids) == 1
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
        connection.commit()
    # The server drops the lock with the connection; the old leader notices it lost it.
    wait_for(other.acquire)
    assert not leader.acquire()
    other.release()
    assert leader.acquire()


@pytest.mark.postgres
def test_the_lock_connection_is_not_a_pooled_one(database: Database,
                                                 leases: list[PostgresLease]) -> None:
    leader = PostgresLease(database.engine)
    leases.append(leader)
    assert leader.acquire()
    # Every pooled connection a request could get holds no advisory lock.
    connections = [database.engine.connect() for _ in range(5)]
    try:
        for connection in connections:
            assert connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                " AND pid = pg_backend_pid()")).scalar() == 0
    finally:
        for connection in connections:
            connection.close()
    leader.release()
    successor = PostgresLease(database.engine)
    leases.append(successor)
    assert successor.acquire()
