"""The engine's connection handling (``patron.db``): idle connections pinged before reuse,
busy ones not; the read scope runs outside a transaction and takes no write lock."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text

from patron import db as patron_db
from patron.db import Database
from tests.conftest import IS_POSTGRES, TEST_DATABASE_URL


@pytest.fixture
def own_database(database: Database) -> Iterator[Database]:
    """A Database of its own (its own pool) on the test database."""
    mine = Database(TEST_DATABASE_URL)
    try:
        yield mine
    finally:
        mine.dispose()


def _backend_pid(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(text("SELECT pg_backend_pid()")) or 0)


@pytest.mark.postgres
def test_a_connection_closed_by_the_server_while_idle_is_replaced_unnoticed(
        own_database: Database, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patron_db, "IDLE_PING_SECONDS", 0.2)
    first = _backend_pid(own_database)
    with database.session_scope() as session:  # another pool: the server ends the first
        assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
    time.sleep(0.3)
    # The pooled connection is dead; the ping on checkout finds it and a new one serves.
    second = _backend_pid(own_database)
    assert second != first
    with own_database.session_scope() as session:
        assert session.scalar(text("SELECT 1")) == 1


@pytest.mark.postgres
def test_only_idle_connections_are_pinged(own_database: Database,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    pings: list[object] = []
    dialect = own_database.engine.dialect
    real_ping = dialect.do_ping

    def counted(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)  # type: ignore[arg-type]

    monkeypatch.setattr(dialect, "do_ping", counted)
    monkeypatch.setattr(patron_db, "IDLE_PING_SECONDS", 0.2)
    for _ in range(5):  # in steady use: no round trip spent on pings
        _backend_pid(own_database)
    assert pings == []
    time.sleep(0.3)
    _backend_pid(own_database)
    assert len(pings) == 1


def test_the_read_scope_runs_outside_a_write_transaction(own_database: Database) -> None:
    with own_database.read_scope() as session:
        assert session.scalar(text("SELECT 1")) == 1
        if IS_POSTGRES:
            # Autocommit: no transaction is open between statements.
            assert session.scalar(text("SELECT now() = statement_timestamp()"))
        else:
            # A deferred transaction: another connection can still take the write lock.
            with own_database.session_scope() as writer:
                writer.execute(text("SELECT 1"))


def test_warm_opens_the_pools_standing_connections(own_database: Database) -> None:
    """A server process opens its pool at start (``Database.warm``): on PostgreSQL every
    standing connection is open, idle in the pool, and has run a statement; SQLite has
    nothing to open."""
    pool = own_database.engine.pool
    opened = own_database.warm()
    if not IS_POSTGRES:
        assert opened == 0
        return
    assert opened == pool.size() == 10  # type: ignore[attr-defined]
    assert pool.checkedin() == opened  # type: ignore[attr-defined]
    assert pool.checkedout() == 0  # type: ignore[attr-defined]
    connects: list[object] = []
    event.listen(own_database.engine, "connect", lambda *_: connects.append(1))
    backends = {_backend_pid(own_database) for _ in range(2 * opened)}
    assert connects == []  # the requests of a burst find their connections open
    assert len(backends) == opened
