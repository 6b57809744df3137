"""Where a phase's time went: CPU per checkout by process, and what PostgreSQL waited on.

- ``CpuMeter``: CPU seconds (user + system, from ``/proc``) used during a phase by the
  server's processes (uvicorn and its workers) and by the PostgreSQL backends serving the
  benchmark database; divided by the checkouts answered, it says how far the CPU alone is
  from a target (2 cores give 4 ms of CPU per checkout at 500 checkouts/s).
- ``WaitSampler``: every 20 ms, what each PostgreSQL session on the benchmark database
  is doing (``pg_stat_activity``): running, waiting for a lock (a row another transaction
  holds: the hot-row signature), waiting for the application inside a transaction
  (``ClientRead``: the server is computing or queued), committing (WAL), or other.

Both are best-effort: without ``/proc`` (not Linux) the CPU figures are left out.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.shop import libpq_url

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
SAMPLE_SECONDS = 0.02


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, from ``/proc``."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return pids


def _backends(url: str) -> list[int]:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid()").fetchall()
    return [int(pid) for (pid,) in rows]


@dataclass
class CpuUse:
    server: float
    database: float | None

    def per_checkout_ms(self, checkouts: int) -> tuple[float, float | None]:
        if not checkouts:
            return float("nan"), None
        database = None if self.database is None else self.database / checkouts * 1000
        return self.server / checkouts * 1000, database


class CpuMeter:
    """CPU used by a process group (the server) and the database's backends."""

    def __init__(self, server_pgid: int, database_url: str | None) -> None:
        self.server_pgid = server_pgid
        self.database_url = database_url
        self.available = Path("/proc/self/stat").exists()
        self._start: dict[int, float] = {}

    def _pids(self) -> list[int]:
        pids = _group(self.server_pgid)
        if self.database_url is not None:
            pids += [-pid for pid in _backends(self.database_url)]
        return pids

    def _snapshot(self) -> dict[int, float]:
        snapshot = {}
        for pid in self._pids():
            used = cpu_seconds(abs(pid))
            if used is not None:
                snapshot[pid] = used
        return snapshot

    def start(self) -> None:
        if self.available:
            self._start = self._snapshot()

    def stop(self) -> CpuUse | None:
        if not self.available:
            return None
        server = database = 0.0
        for pid, used in self._snapshot().items():
            spent = used - self._start.get(pid, 0.0)
            if pid < 0:
                database += spent
            else:
                server += spent
        return CpuUse(server=server,
                      database=database if self.database_url is not None else None)


@dataclass
class Waits:
    samples: Counter[str] = field(default_factory=Counter)

    def shares(self) -> str:
        """What the sessions inside a transaction were doing (idle pool connections are
        left out), most frequent first."""
        busy = [(name, count) for name, count in self.samples.most_common()
                if name != "idle"]
        total = sum(count for _, count in busy)
        if not total:
            return "no busy sessions sampled"
        return ", ".join(f"{name} {count / total:.0%}" for name, count in busy)


class WaitSampler:
    """Samples ``pg_stat_activity`` for the benchmark database in a thread."""

    def __init__(self, database_url: str) -> None:
        self.url = libpq_url(database_url)
        self.waits = Waits()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            statement = conn.cursor()
            while not self._stop.is_set():
                rows = statement.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'").fetchall()
                for state, kind, name in rows:
                    self.waits.samples[_classify(state, kind, name)] += 1
                time.sleep(SAMPLE_SECONDS)


def _classify(state: str | None, kind: str | None, name: str | None) -> str:
    if state == "idle":
        return "idle"
    if state and state.startswith("idle in transaction"):
        return "in transaction, waiting for the server"
    if kind is None:
        return "running"
    if kind == "Lock":
        return f"waiting for a lock ({name})"
    if kind == "LWLock" and name and name.startswith("WAL"):
        return "committing (WAL)"
    if kind == "IO" and name and name.startswith("WAL"):
        return "committing (WAL)"
    return f"{kind.lower()} ({name})"
