"""A picture of the whole database, to prove that a refused request changed nothing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from patron.db import Database
from patron.models import metadata

# Written on purpose when a request is refused (a failed voucher attempt is recorded after
# the request rolls back): not state a refusal may change. tests/vouchers/test_abuse.py
# asserts what it holds.
REFUSAL_LOGS = frozenset({"security_events"})


@dataclass(frozen=True)
class TableState:
    rows: int
    digest: str


def _canonical(value: Any) -> str:
    # Type-tagged so that, say, the integer 1 and the string "1" never hash alike.
    return f"{type(value).__name__}:{value!r}"


def snapshot(database: Database) -> dict[str, TableState]:
    """Row count and a content hash of every table but the refusal logs
    (order-independent)."""
    state: dict[str, TableState] = {}
    with database.engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name in REFUSAL_LOGS:
                continue
            rows = sorted(
                "\x1f".join(_canonical(value) for value in row)
                for row in connection.execute(select(*table.columns))
            )
            digest = hashlib.sha256("\x1e".join(rows).encode()).hexdigest()
            state[table.name] = TableState(rows=len(rows), digest=digest)
    return state


def changed_tables(before: dict[str, TableState], after: dict[str, TableState]) -> list[str]:
    """The tables whose rows differ; empty when the database is exactly as before."""
    return sorted(name for name in before.keys() | after.keys()
                  if before.get(name) != after.get(name))
