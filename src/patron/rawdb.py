"""Core statements run by psycopg itself, on the event loop (PostgreSQL only).

For the one request the register waits on most (``vouchers.fastlane``): a worker thread
and SQLAlchemy's execution layer around two statements cost more than the statements.
Here a statement is still written once with SQLAlchemy Core — the same statement the
synchronous path runs — and compiled once for PostgreSQL (``RawStatement``); it is then
executed on a connection of an ``AsyncConnectionPool`` (psycopg_pool) in autocommit, with
psycopg's own prepared statements, and its rows are read by column name.

What SQLAlchemy would do around a statement and this does not: type processing of
parameters and results. The statements run here take and return only what psycopg
adapts alike — text, integers, booleans, UUIDs, JSON, timezone-aware datetimes — and
``RawStatement.of`` refuses a statement whose parameters are expanded at execution
(``IN`` lists).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import make_url
from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.selectable import ExecutableReturnsRows

_DIALECT = PGDialect_psycopg()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class RawStatement:
    """A Core statement compiled for psycopg: its SQL, the values of its own bound
    parameters, and a row type named like its result's columns."""

    sql: str
    defaults: Mapping[str, Any]
    row: type[tuple[Any, ...]] | None

    @classmethod
    def of(cls, statement: ClauseElement) -> RawStatement:
        compiled = statement.compile(dialect=_DIALECT)
        sql = str(compiled)
        if "POSTCOMPILE" in sql:
            raise ValueError("a statement with expanding parameters cannot run raw")
        row: type[tuple[Any, ...]] | None = None
        if isinstance(statement, ExecutableReturnsRows):
            row = _row_type(list(statement.exported_columns.keys()))
        return cls(sql=sql, defaults=dict(compiled.params), row=row)

    async def first(self, connection: AsyncConnection[Any],
                    parameters: Mapping[str, Any]) -> Any:
        """The first row (None without one), its columns as attributes."""
        cursor = await connection.execute(self.sql, {**self.defaults, **parameters})
        values = await cursor.fetchone()
        if values is None or self.row is None:
            return values
        return self.row(*values)


def _row_type(names: list[str]) -> type[tuple[Any, ...]]:
    made: type[tuple[Any, ...]] = namedtuple("Row", names)  # type: ignore[misc]
    return made


def conninfo(url: str) -> str:
    """psycopg's connection string for a SQLAlchemy PostgreSQL URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def open_pool(url: str, *, size: int) -> AsyncConnectionPool[AsyncConnection[Any]]:
    """A pool of ``size`` autocommitting connections, all opened before it returns (the
    first request finds them ready)."""
    pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
        conninfo(url), min_size=size, max_size=size, open=False,
        kwargs={"autocommit": True}, name="patron-raw")
    await pool.open(wait=True, timeout=30)
    return pool
