"""Engine, declarative base and the session scope.

The transaction belongs to the boundary (a request, a CLI command, a job): services only
``flush()``. On SQLite every transaction starts with ``BEGIN IMMEDIATE`` so that a writer
takes the write lock up front and waits for it (busy timeout) instead of failing half-way
when it upgrades a read lock; SQLite allows one writer at a time anyway.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import psycopg
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Result,
    String,
    Table,
    Uuid,
    create_engine,
    event,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# ``ForeignKey(..., info=STATEMENT_CHECKED)``: on PostgreSQL the key is not a constraint but
# is checked by a trigger once per statement (a bulk path's table; migration 0012 says why).
STATEMENT_CHECKED = {"checked_per_statement_on": "postgresql"}


def schema_filter(dialect_name: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for comparing the models with a database: leaves out
    the foreign keys this backend checks per statement instead (``STATEMENT_CHECKED``)."""
    def include(item: Any, _name: str | None, kind: str, reflected: bool,
                _compare_to: Any) -> bool:
        if kind != "foreign_key_constraint" or reflected:
            return True
        return not any(key.info.get("checked_per_statement_on") == dialect_name
                       for key in item.elements)
    return include


def sql_in(values: type[StrEnum]) -> str:
    """An enum's values as a SQL list for a CHECK constraint: ``'a', 'b'``."""
    return ", ".join(f"'{value.value}'" for value in values)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, emit BEGIN (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A reading scope (``Database.read_scope``) takes no write lock: WAL lets it read
        # while a writer writes.
        reading = conn.get_execution_options().get(READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")


READ_ONLY = "patron_read_only"
AUTOCOMMIT = {"isolation_level": "AUTOCOMMIT"}


def autocommits(session: Session) -> bool:
    """Whether each statement of the session commits by itself (``statement_scope`` on
    PostgreSQL)."""
    options = session.connection().get_execution_options()
    return options.get("isolation_level") == AUTOCOMMIT["isolation_level"]


@dataclass(frozen=True)
class PoolLimits:
    """A process's connections to PostgreSQL: ``size`` kept open, up to ``overflow`` more,
    and how long a unit of work waits for one when all are taken."""

    size: int = 10
    overflow: int = 10
    timeout_seconds: float = 10.0

    @property
    def most(self) -> int:
        return self.size + self.overflow

    def engine_options(self) -> dict[str, Any]:
        return {"pool_size": self.size, "max_overflow": self.overflow,
                "pool_timeout": self.timeout_seconds}


DEFAULT_POOL = PoolLimits()


def make_engine(url: str, pool: PoolLimits = DEFAULT_POOL, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **kwargs)
        _configure_sqlite(engine)
        return engine
    # A bounded pool: every process of every server shares the database's connection
    # limit, so a process takes at most pool.most connections and a burst beyond them
    # waits for one (docs/configuration.md, "Connection budget").
    engine = create_engine(url, **{**pool.engine_options(), **kwargs})
    _ping_idle_connections(engine)
    return engine


# A connection back from the pool is pinged first only when it has been idle this long. A
# ping on every checkout (``pool_pre_ping``) is a round trip per unit of work — two per
# request with the caller's key read — while a connection in steady use has just proven
# itself. An idle one may have been closed by the server, a restart or a firewall.
IDLE_PING_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["patron_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("patron_checked_in")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)  # the driver's own ping
        except engine.dialect.loaded_dbapi.Error as exc:
            if not engine.dialect.is_disconnect(exc, dbapi_connection, None):
                raise
            alive = False
        if not alive:
            # The pool discards this connection and checks out another (a new one).
            raise DisconnectionError("an idle pooled connection is gone")


# What the request boundary asks every unit of work of this request to do in its own
# transaction, just before it commits (the Idempotency-Key's mark: patron.idempotency).
BEFORE_COMMIT: ContextVar[Callable[[Session], None] | None] = ContextVar(
    "patron_before_commit", default=None)


def _before_commit(session: Session) -> None:
    hook = BEFORE_COMMIT.get()
    if hook is not None:
        hook(session)


class Database:
    """An engine plus its session factory; one per application instance."""

    def __init__(self, url: str, pool: PoolLimits = DEFAULT_POOL, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine = make_engine(url, pool, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session_scope(self) -> Iterator[Session]:
        """Commit on success, roll back on any error: the boundary owns the transaction."""
        session = self.sessions()
        try:
            yield session
            _before_commit(session)
            session.commit()
        except BaseException as exc:
            if getattr(exc, "keep_side_effects", False):
                _before_commit(session)
                session.commit()
            else:
                session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_scope(self) -> Iterator[Session]:
        """A session for reads that need no transaction of their own (the caller's key):
        on PostgreSQL its statements run in autocommit, so it costs no BEGIN and no COMMIT
        round trip; on SQLite in a deferred transaction, which takes no write lock. For
        reads only: what it would write is not rolled back."""
        postgresql = self.engine.dialect.name == "postgresql"
        with self._connected(AUTOCOMMIT if postgresql else {READ_ONLY: True}) as session:
            yield session

    @contextmanager
    def statement_scope(self) -> Iterator[Session]:
        """A unit of work that writes with a single statement, atomic by itself, after its
        reads: on PostgreSQL every statement runs in autocommit (no BEGIN and no COMMIT
        round trip); elsewhere ``session_scope``'s transaction. The code in it asks
        ``autocommits(session)`` and writes with one statement when it does."""
        if self.engine.dialect.name != "postgresql":
            with self.session_scope() as session:
                yield session
            return
        with self._connected(AUTOCOMMIT) as session:
            yield session

    @contextmanager
    def _connected(self, options: dict[str, Any]) -> Iterator[Session]:
        with self.engine.connect() as connection:
            session = Session(bind=connection.execution_options(**options),
                              expire_on_commit=False)
            try:
                yield session
            finally:
                session.close()  # the connection's close rolls back what is open

    def warm(self) -> int:
        """Open the pool's standing connections now and run a first statement on each; the
        number opened. For a server process at its start (PostgreSQL): a connection
        opened on demand costs a new backend and its first statements several
        milliseconds, and under a burst many requests would pay that at once. SQLite's
        connections are files: nothing to warm."""
        pool = self.engine.pool
        if self.engine.dialect.name != "postgresql" or not isinstance(pool, QueuePool):
            return 0
        connections = [self.engine.connect() for _ in range(pool.size())]
        try:
            for connection in connections:
                connection.exec_driver_sql("SELECT 1")
        finally:
            for connection in connections:
                connection.close()  # back to the pool, which keeps them
        return len(connections)

    def dispose(self) -> None:
        self.engine.dispose()


def connection_limit(url: str) -> int | None:
    """How many connections the PostgreSQL server at ``url`` accepts from ordinary roles
    (``max_connections`` less those reserved for superusers); None for another database,
    or when the server cannot be asked."""
    if url.startswith("sqlite"):
        return None
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            most = int(connection.exec_driver_sql("SHOW max_connections").scalar_one())
            reserved = connection.exec_driver_sql(
                "SHOW superuser_reserved_connections").scalar_one()
        return most - int(reserved)
    except DBAPIError:
        return None
    finally:
        engine.dispose()


def unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database has no connection to give now: the pool still full
    after its timeout, a connection refused or lost, PostgreSQL at its connection limit,
    starting or shutting down, SQLite still locked after its busy timeout. Temporary and
    worth a retry (an answer 503), unlike an error of the statement itself."""
    if isinstance(exc, SQLAlchemyTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    if isinstance(exc, psycopg.OperationalError):  # the fast lane's pool timeout is one too
        sqlstate = exc.sqlstate
        return sqlstate is None or sqlstate.startswith(UNAVAILABLE_SQLSTATES)
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# Connection exceptions, insufficient resources (too many connections, disk full), and the
# server shutting down or not yet accepting connections.
UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


def flush_or_raise(session: Session, error: Exception) -> None:
    """Flush in a savepoint; a unique or foreign-key violation becomes ``error``."""
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise error from exc


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements (multi-row inserts and updates that bypass the
    ORM's unit of work)."""
    table = model.__table__
    assert isinstance(table, Table)
    return table


def uses_copy(session: Session) -> bool:
    """Whether the session's database takes ``COPY`` from this driver."""
    dialect = session.get_bind().dialect
    return dialect.name == "postgresql" and dialect.driver == "psycopg"


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_UTC_COLUMN = UTCDateTime()


def _copy_datetime(value: datetime) -> str:
    stored = _UTC_COLUMN.process_bind_param(value, None)
    assert stored is not None
    return stored.isoformat()


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


# By exact type (a bool is not written as an int); a uuid as its 32 hex digits, which
# PostgreSQL reads as a uuid, several times faster to make than the hyphenated form.
_COPY_FORMATS: dict[type, Callable[[Any], str]] = {
    str: _copy_text, int: str, uuid.UUID: lambda value: value.hex, datetime: _copy_datetime,
    type(None): lambda value: r"\N"}


def copy_field(value: object) -> str:
    """One value in ``COPY``'s text format, as the ``INSERT`` binds it."""
    format_ = _COPY_FORMATS.get(type(value))
    if format_ is None:
        raise TypeError(f"no COPY text form for {type(value).__name__}")
    return format_(value)


def _copy_type(column: Any) -> str:
    """The PostgreSQL type a column's values are sent as in a binary ``COPY``."""
    kind = column.type
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    if isinstance(kind, JSON):
        return "json"
    if isinstance(kind, Uuid):
        return "uuid"
    if isinstance(kind, BigInteger):
        return "int8"
    if isinstance(kind, Integer):
        return "int4"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, DateTime):
        return "timestamptz"
    if isinstance(kind, String):  # Text included
        return "text"
    if isinstance(kind, LargeBinary):
        return "bytea"
    if isinstance(kind, Date):
        return "date"
    raise TypeError(f"no COPY type for {column.table.name}.{column.name} ({kind!r})")


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert many rows (each with the same keys) in the session's transaction: one binary
    ``COPY … FROM STDIN`` on PostgreSQL (no statement to parse or bind per row, no text
    to parse), one multi-row ``INSERT`` elsewhere. A unique or foreign-key violation is
    SQLAlchemy's ``IntegrityError`` either way, so the caller's savepoint works alike.

    Values go as the ``INSERT`` would bind them: times must be timezone-aware (stored in
    UTC), JSON columns take JSON-ready data (psycopg encodes it as the ``INSERT`` does)."""
    if not rows:
        return
    if not uses_copy(session):
        session.execute(table.insert(), list(rows))
        return
    columns = list(rows[0])
    types = [_copy_type(table.c[name]) for name in columns]
    times = [index for index, kind in enumerate(types) if kind == "timestamptz"]
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    with copy_in(session, statement) as copy:
        copy.set_types(types)
        for row in rows:
            values = [row[name] for name in columns]
            for index in times:
                if values[index] is not None and values[index].tzinfo is None:
                    raise ValueError("naive datetime given to a UTC column")
            copy.write_row(values)


@contextmanager
def copy_in(session: Session, statement: str) -> Iterator[psycopg.Copy]:
    """``COPY … FROM STDIN`` in the session's transaction (PostgreSQL with psycopg). A
    violation during the copy is raised as SQLAlchemy's ``DBAPIError`` subclass for it
    (``IntegrityError`` for a unique or foreign key), as from an ``INSERT``."""
    connection = session.connection()
    raw = connection.connection.dbapi_connection
    assert isinstance(raw, psycopg.Connection)
    try:
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            yield copy
    except psycopg.Error as exc:
        raise DBAPIError.instance(statement, None, exc, psycopg.Error,
                                  dialect=connection.dialect) from exc


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (typed access to the DB-API rowcount)."""
    return int(getattr(result, "rowcount", 0))



# From this many rows ``upsert_rows`` stages them with COPY on PostgreSQL.
STAGE_FROM = 50


def upsert_rows(session: Session, statement: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Run an ``INSERT … ON CONFLICT`` (``statement``, built with ``insert_for``) for many
    rows, each with the same keys and no two with the same conflict key. On PostgreSQL
    with psycopg, many rows are copied (``insert_rows``) into a temporary staging table of
    the same columns and upserted from it by one statement, instead of one statement per
    row; otherwise one ``executemany`` (SQLite's runs in C)."""
    if not rows:
        return
    if len(rows) < STAGE_FROM or not uses_copy(session):
        session.execute(statement, list(rows))
        return
    table: Table = statement.table
    columns = list(rows[0])
    staging = Table(f"staging_{table.name}", MetaData(),
                    *(Column(name, table.c[name].type) for name in columns),
                    prefixes=["TEMPORARY"])
    # Names of the model's own table and columns, never input.
    names = ", ".join(columns)
    session.execute(text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging.name} ON COMMIT "  # noqa: S608
                         f"DROP AS SELECT {names} FROM {table.name} WITH NO DATA"))
    insert_rows(session, staging, rows)
    session.execute(statement.from_select(columns, select(*staging.c)))
    session.execute(text(f"TRUNCATE {staging.name}"))

def insert_for(session: Session, target: Any) -> Any:
    """An INSERT with ON CONFLICT support (upserts, skip-duplicates) for the session's
    backend. Patron runs on PostgreSQL and SQLite, which spell it alike."""
    return insert_for_dialect(session.get_bind().dialect.name, target)


def insert_for_dialect(dialect: str, target: Any) -> Any:
    """``insert_for`` by the backend's name (for statements built once per backend)."""
    if dialect == "postgresql":
        return postgresql.insert(target)
    return sqlite.insert(target)
