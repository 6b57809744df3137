"""Set-up built once per test process and restored for every later test that asks for it.

Many tests start from the same rows: the two merchants of ``world``, the objects every API
operation points at (``tests.api.operations.make_objects``). Building them goes through
the services or the API, tens of requests each time; restoring them is a few multi-row
INSERTs. ``restored(database, name, build)`` runs ``build`` the first time a process asks
for ``name`` and keeps what it added to the database — the rows it inserted and the rows
it changed, by primary key — and its return value. Each later call writes the same rows
again and returns the same value, so the test sees exactly the database a fresh ``build``
would have left, with two differences a test cannot tell apart from one: the ids are
the ones of the first build, and every date-time is moved by the time elapsed since then,
so that what was "just made" (a caller-ID wait, a hold, a key's last use) is just made
again: what the build made lies before its end, and is moved to lie as far before the
restore.

A layer rests on what was in the database when it was built: ``world``'s layer on an
empty database, the objects' layer on ``world``'s rows. Its name must say so (the API
tests' objects name their world's merchant), and the rows under it must be restored the
same way. The tables are emptied after every test (``tests.conftest._clean``) as before.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Table, and_, bindparam, select, text

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock
from patron.models import metadata

T = TypeVar("T")
Rows = dict[tuple[Any, ...], dict[str, Any]]  # one table's rows by primary key


@dataclass(frozen=True)
class Layer:
    value: Any
    built_at: datetime
    inserted: list[tuple[Table, list[dict[str, Any]]]]
    updated: list[tuple[Table, list[dict[str, Any]]]]


_LAYERS: dict[tuple[str, bytes, bytes], Layer] = {}


def _is_datetime(column: Any) -> bool:
    kind = column.type
    return isinstance(kind, DateTime) or isinstance(getattr(kind, "impl", None), DateTime)


def _primary_key(table: Table) -> list[str]:
    return [column.key for column in table.primary_key.columns]


def _dump(connection: Connection) -> dict[str, Rows]:
    tables: dict[str, Rows] = {}
    for table in metadata.sorted_tables:
        key = _primary_key(table)
        rows = [dict(row._mapping) for row in connection.execute(select(table))]
        tables[table.name] = {tuple(row[name] for name in key): row for row in rows}
    return tables


def _layer(before: dict[str, Rows], after: dict[str, Rows], value: Any,
           built_at: datetime) -> Layer:
    inserted: list[tuple[Table, list[dict[str, Any]]]] = []
    updated: list[tuple[Table, list[dict[str, Any]]]] = []
    for table in metadata.sorted_tables:
        old, new = before[table.name], after[table.name]
        if old.keys() - new.keys():
            raise AssertionError(f"a template's build deleted rows of {table.name}: "
                                 "it cannot be replayed as rows added and changed")
        added = [row for key, row in new.items() if key not in old]
        changed = [row for key, row in new.items() if key in old and old[key] != row]
        if added:
            inserted.append((table, added))
        if changed:
            updated.append((table, changed))
    return Layer(value=value, built_at=built_at, inserted=inserted, updated=updated)


def _shifted(table: Table, rows: list[dict[str, Any]], by: timedelta) -> list[dict[str, Any]]:
    moved = [column.key for column in table.columns if _is_datetime(column)]
    if not moved or not by:
        return rows
    return [{**row, **{name: row[name] + by for name in moved if row[name] is not None}}
            for row in rows]


def _write(connection: Connection, layer: Layer, by: timedelta) -> None:
    for table, rows in layer.inserted:
        connection.execute(table.insert(), _shifted(table, rows, by))
    for table, rows in layer.updated:
        key = _primary_key(table)
        condition = and_(*(table.c[name] == bindparam(f"pk_{name}") for name in key))
        values = {column.key: bindparam(column.key) for column in table.columns
                  if column.key not in key}
        connection.execute(table.update().where(condition).values(values),
                           [{**row, **{f"pk_{name}": row[name] for name in key}}
                            for row in _shifted(table, rows, by)])
    if connection.dialect.name == "postgresql":
        _advance_sequences(connection, layer)


def _advance_sequences(connection: Connection, layer: Layer) -> None:
    """Serial keys written explicitly leave their sequence behind: move it past them."""
    for table, _ in layer.inserted:
        if (column := table.autoincrement_column) is not None:
            connection.execute(text(
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                f"(SELECT max({column.name}) FROM {table.name}))"))


def restored(database: Database, name: str, build: Callable[[], T]) -> T:
    """``build()``'s value, and the rows it added to the database: built the first time
    this process asks for ``name``, restored from its rows every later time."""
    # Rows written under other keys (a phone's ciphertext, a card's lookup hash) are another
    # layer: a test that changes the secret must not be given the first one's rows.
    settings = get_settings()
    key = (name, settings.encryption_key, settings.lookup_key)
    layer = _LAYERS.get(key)
    if layer is not None:
        with database.engine.begin() as connection:
            _write(connection, layer, clock.now() - layer.built_at)
        value: T = layer.value
        return value
    with database.engine.connect() as connection:
        before = _dump(connection)
    value = build()
    # The build's end: what it made lies before it, and is moved to lie before "now".
    built_at = clock.now()
    with database.engine.connect() as connection:
        after = _dump(connection)
    _LAYERS[key] = _layer(before, after, value, built_at)
    return value
