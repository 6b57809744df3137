"""A database that cannot take a request now (its pool full past the timeout, the server
unreachable or at its connection limit) is a 503 with Retry-After, not a crash; and the
connection budget of a process comes from its settings."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator

import httpx
import psycopg
import psycopg_pool
import pytest
from psycopg import errors as pg_errors
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.testclient import TestClient

from patron.app import connections_per_process, create_app
from patron.config import Settings, get_settings
from patron.db import Database, PoolLimits, connection_limit, unavailable
from patron.members.models import Member
from tests.conftest import TEST_DATABASE_URL, World, auth


@pytest.mark.parametrize(("exc", "expected"), [
    (PoolTimeout("QueuePool limit reached"), True),
    (psycopg.OperationalError("connection failed: Connection refused"), True),
    (pg_errors.TooManyConnections("sorry, too many clients already"), True),
    (pg_errors.AdminShutdown("terminating connection"), True),
    (pg_errors.CannotConnectNow("the database system is starting up"), True),
    (psycopg_pool.PoolTimeout("couldn't get a connection after 30 s"), True),
    (OperationalError("SELECT 1", {}, psycopg.OperationalError("server closed")), True),
    (OperationalError("BEGIN", {}, sqlite3.OperationalError("database is locked")), True),
    # errors of the work itself: a bug or a conflict, never "retry later"
    (pg_errors.DeadlockDetected("deadlock detected"), False),
    (OperationalError("SELECT", {}, pg_errors.QueryCanceled("statement timeout")), False),
    (IntegrityError("INSERT", {}, pg_errors.UniqueViolation("duplicate key")), False),
    (OperationalError("SELECT", {}, sqlite3.OperationalError("no such table: x")), False),
    (RuntimeError("connection"), False),
])
def test_what_counts_as_the_database_being_unavailable(exc: BaseException,
                                                       expected: bool) -> None:
    assert unavailable(exc) is expected


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nobody listens once it is closed


def _assert_unavailable_answer(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    body = answer.json()
    assert body["code"] == "database_unavailable"
    assert body["status"] == 503


def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    database = Database(f"postgresql+psycopg://patron@127.0.0.1:{_closed_port()}/patron")
    try:
        # raise_server_exceptions: a crash would surface here; a 503 is an answer
        client = TestClient(create_app(get_settings(), database))
        answer = client.get("/v1/members/00000000-0000-0000-0000-000000000000",
                            headers=auth("ptn_whatever"))
        _assert_unavailable_answer(answer)
        assert "refused" not in answer.text and "127.0.0.1" not in answer.text
    finally:
        database.dispose()


@pytest.fixture
def one_connection(database: Database) -> Iterator[Database]:
    """A Database of its own on the test database whose pool holds a single connection
    and waits 0.2 s for it."""
    mine = Database(TEST_DATABASE_URL,
                    pool=PoolLimits(size=1, overflow=0, timeout_seconds=0.2))
    try:
        yield mine
    finally:
        mine.dispose()


@pytest.mark.postgres
def test_a_pool_still_full_after_its_timeout_is_a_503_and_changes_nothing(
        one_connection: Database, database: Database, world: World) -> None:
    def members() -> int:
        with database.session_scope() as session:
            return int(session.scalar(select(func.count()).select_from(Member)) or 0)

    before = members()
    client = TestClient(create_app(get_settings(), one_connection))
    with one_connection.engine.connect():  # another unit of work holds the only one
        answer = client.post("/v1/members", headers=auth(world.a.merchant_key), json={})
    _assert_unavailable_answer(answer)
    assert members() == before
    # the connection back, the same request goes through
    again = client.post("/v1/members", headers=auth(world.a.merchant_key), json={})
    assert again.status_code == 201, again.text
    assert members() == before + 1


@pytest.mark.postgres
def test_the_settings_bound_each_process_connections() -> None:
    settings = Settings(database_url=TEST_DATABASE_URL, db_pool_size=3, db_max_overflow=2,
                        db_pool_timeout_seconds=1.5)
    app = create_app(settings)
    try:
        pool = app.state.database.engine.pool
        assert (pool.size(), pool._max_overflow, pool.timeout()) == (3, 2, 1.5)
        assert connections_per_process(settings) == 3 + 2 + 4 + 1
    finally:
        app.state.database.dispose()


def test_the_default_budget_of_two_workers_fits_a_default_postgresql() -> None:
    """PostgreSQL's default max_connections is 100, 3 of them reserved for superusers:
    `patron serve --workers 2` with the default pools, plus another Patron process at its
    full pool (a `patron` command, or this suite beside its live server), must fit."""
    settings = Settings()
    assert 2 * connections_per_process(settings) + settings.database_pool().most <= 100 - 3


@pytest.mark.postgres
def test_the_connection_limit_is_read_from_the_server() -> None:
    limit = connection_limit(TEST_DATABASE_URL)
    assert limit is not None and limit > 0


def test_no_connection_limit_without_postgresql_or_an_answer() -> None:
    assert connection_limit("sqlite:///:memory:") is None
    assert connection_limit(f"postgresql+psycopg://x@127.0.0.1:{_closed_port()}/x") is None
