"""The register's durable queue: one SQLite file, WAL journal, synchronous=FULL.

A sale is queued (with its receipt number and provisional figures) in one transaction
before the cashier is told it went through; it leaves the queue only in the transaction
that records the server's answer for it. A crash at any point therefore loses nothing
and duplicates nothing: what is still queued is sent again, and the server answers a
resent receipt with ``replayed``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    receipt_no TEXT NOT NULL UNIQUE,
    queued_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    receipt_no TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    answer TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS allowances (
    id TEXT PRIMARY KEY,
    member_id TEXT NOT NULL,
    member_number TEXT NOT NULL,
    signed TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    burned INTEGER NOT NULL DEFAULT 0,
    codes_used TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS allowances_member ON allowances (member_id);
"""


@dataclass(frozen=True)
class QueuedEntry:
    seq: int
    receipt_no: str
    queued_at: str
    body: dict[str, Any]


class Queue:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One durable write: BEGIN IMMEDIATE ... COMMIT (fsynced before it returns)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- settings ------------------------------------------------------------------

    def get(self, name: str) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE name = ?",
                                   (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, name: str, value: Any, connection: sqlite3.Connection | None = None) -> None:
        statement = ("INSERT INTO settings (name, value) VALUES (?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET value = excluded.value")
        if connection is not None:
            connection.execute(statement, (name, json.dumps(value)))
            return
        with self.transaction() as db:
            db.execute(statement, (name, json.dumps(value)))

    def forget(self, name: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM settings WHERE name = ?", (name,))

    def next_receipt_no(self, prefix: str) -> str:
        """A new receipt number, durably used up before it is handed out (a crash never
        hands the same number out twice)."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM settings WHERE name = 'receipt_counter'"
                             ).fetchone()
            number = (json.loads(row[0]) if row else 0) + 1
            self.put("receipt_counter", number, db)
        return f"{prefix}{number:08d}"

    # --- entries -------------------------------------------------------------------

    def enqueue(self, connection: sqlite3.Connection, *, receipt_no: str, queued_at: str,
                body: dict[str, Any]) -> int:
        cursor = connection.execute(
            "INSERT INTO entries (receipt_no, queued_at, body) VALUES (?, ?, ?)",
            (receipt_no, queued_at, json.dumps(body, sort_keys=True)))
        return int(cursor.lastrowid or 0)

    def pending(self, limit: int | None = None) -> list[QueuedEntry]:
        query = "SELECT seq, receipt_no, queued_at, body FROM entries ORDER BY seq"
        with self._lock:
            rows = (self._db.execute(query + " LIMIT ?", (limit,)) if limit
                    else self._db.execute(query)).fetchall()
        return [QueuedEntry(seq=seq, receipt_no=receipt_no, queued_at=queued_at,
                            body=json.loads(body)) for seq, receipt_no, queued_at, body in rows]

    def size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM entries").fetchone()[0])

    def holds(self, receipt_no: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM entries WHERE receipt_no = ?",
                                    (receipt_no,)).fetchone() is not None

    def acknowledge(self, answers: Sequence[tuple[int, str, str, dict[str, Any]]],
                    recorded_at: str) -> None:
        """Record the server's answers (seq, receipt, status, answer) and remove those
        entries, in one transaction."""
        with self.transaction() as db:
            for seq, receipt_no, status, answer in answers:
                db.execute("INSERT INTO results (receipt_no, seq, status, answer, recorded_at) "
                           "VALUES (?, ?, ?, ?, ?) ON CONFLICT (receipt_no) DO UPDATE SET "
                           "seq = excluded.seq, status = excluded.status, "
                           "answer = excluded.answer, recorded_at = excluded.recorded_at",
                           (receipt_no, seq, status, json.dumps(answer), recorded_at))
                db.execute("DELETE FROM entries WHERE seq = ?", (seq,))

    def results(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT receipt_no, seq, status, answer FROM results "
                                    "ORDER BY seq").fetchall()
        return [{"receipt_no": receipt_no, "seq": seq, "status": status,
                 "answer": json.loads(answer)} for receipt_no, seq, status, answer in rows]

    # --- allowances ------------------------------------------------------------------

    def save_allowance(self, signed: dict[str, Any]) -> None:
        document = signed["allowance"]
        with self.transaction() as db:
            db.execute("DELETE FROM allowances WHERE member_id = ?", (document["member_id"],))
            db.execute("INSERT INTO allowances (id, member_id, member_number, signed, "
                       "expires_at) VALUES (?, ?, ?, ?, ?)",
                       (document["id"], document["member_id"], document["member_number"],
                        json.dumps(signed), document["expires_at"]))

    def allowance_for(self, *, member_id: str | None = None,
                      member_number: str | None = None) -> tuple[dict[str, Any], int,
                                                                 list[str]] | None:
        """The stored signed allowance for a member, the points burned under it so far and
        the codes used, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT signed, burned, codes_used FROM allowances WHERE member_id = ? "
                "OR member_number = ?", (member_id or "", member_number or "")).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), int(row[1]), list(json.loads(row[2]))

    def use_allowance(self, connection: sqlite3.Connection, allowance_id: str, *,
                      points: int, codes: Sequence[str]) -> None:
        row = connection.execute("SELECT codes_used FROM allowances WHERE id = ?",
                                 (allowance_id,)).fetchone()
        used = list(json.loads(row[0])) if row else []
        connection.execute("UPDATE allowances SET burned = burned + ?, codes_used = ? "
                           "WHERE id = ?", (points, json.dumps(used + list(codes)),
                                            allowance_id))
