"""Which process runs the scheduled jobs: one leader per database.

``patron serve --workers N`` starts N processes, each with a scheduler; only the one
holding the lease runs jobs. The lease is held for the life of the process, not taken per
run, so the others stay idle and one of them takes over when the leader stops or dies:

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) on a connection
  kept for the purpose and detached from the pool, so the lock can never leak into a
  request's connection. The server drops the lock when that connection ends, however the
  process dies. Before every run the leader asks, on that same connection, whether its
  backend still holds the lock: a connection that was lost (and perhaps replaced) holds
  nothing, and the leader goes back to competing.
- SQLite: an exclusive ``flock`` on a file next to the database file
  (``<database>.jobs.lock``); the operating system drops it when the process ends.
  SQLite serves one machine, so a file lock covers every process that can open it. An
  in-memory database belongs to one process, which is always the leader.

No lease table: a lock that dies with its holder never leaves a stale lease for someone
to time out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Protocol

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from patron.db import Database

# "patronjb" as a signed 64-bit key; any fixed number works, as long as it never changes.
JOBS_LOCK_KEY = int.from_bytes(b"patronjb", "big")
# One lease per purpose: the scheduled jobs, and the delivery worker ("patrondl").
LOCK_KEYS = {"jobs": JOBS_LOCK_KEY, "deliveries": int.from_bytes(b"patrondl", "big")}


class Lease(Protocol):
    def acquire(self) -> bool:
        """True when this process holds the lease now (taking it if it is free)."""

    def release(self) -> None:
        """Give the lease up (nothing happens if it is not held)."""


class PostgresLease:
    def __init__(self, engine: Engine, key: int = JOBS_LOCK_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: Connection | None = None

    def acquire(self) -> bool:
        if self._connection is not None:
            if self._still_held(self._connection):
                return True
            self._drop()
        connection = self._engine.connect()
        # Closing a detached connection really closes it, taking any lock with it.
        connection.detach()
        try:
            held = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"),
                                           {"key": self._key}).scalar())
            connection.commit()
        except BaseException:
            connection.close()
            raise
        if not held:
            connection.close()
            return False
        self._connection = connection
        return True

    def _still_held(self, connection: Connection) -> bool:
        try:
            held = connection.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid() AND objsubid = 1"
                " AND classid::bigint = :high AND objid::bigint = :low"),
                {"high": self._key >> 32, "low": self._key & 0xFFFFFFFF}).scalar()
            connection.commit()
        except Exception:
            return False
        return held == 1

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            # A broken connection may fail to close; it is gone either way.
            with contextlib.suppress(Exception):
                connection.close()

    def release(self) -> None:
        if self._connection is None:
            return
        # Closing the connection (below) drops the lock too; unlocking first is politeness.
        with contextlib.suppress(Exception):
            self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                     {"key": self._key})
            self._connection.commit()
        self._drop()


class FileLease:
    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


class SoleLease:
    """An in-memory database: the one process that can see it leads."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        return None


def lease_for(database: Database, purpose: str = "jobs") -> Lease:
    """The lease of one purpose (``jobs`` or ``deliveries``) on this database."""
    url = database.engine.url
    if url.get_backend_name() == "postgresql":
        return PostgresLease(database.engine, LOCK_KEYS[purpose])
    if url.get_backend_name() == "sqlite":
        path = url.database
        if not path or path == ":memory:":
            return SoleLease()
        return FileLease(os.path.abspath(path) + f".{purpose}.lock")
    raise ValueError(f"no job lease for {url.get_backend_name()} databases")
