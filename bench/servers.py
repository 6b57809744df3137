"""What the checkout benchmark starts and must stop: a benchmark database and the server.

Both are context managers that clean up on any exit, Ctrl-C included: the server's whole
process group (uvicorn and its workers) is terminated, then killed if it lingers, and a
PostgreSQL benchmark database is dropped (``WITH (FORCE)``, which ends any session left
on it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from bench.environment import BENCH_SECRET_KEY
from bench.shop import libpq_url
from patron.cli.main import upgrade_database

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/patron_bench"
POSTGRES_URL_ENV = "PATRON_BENCH_POSTGRES_URL"
# A database of this name is the benchmark's own: one left by a killed run is replaced.
OWN_PREFIX = "patron_bench"
START_SECONDS = 60.0


class BenchSetupError(RuntimeError):
    """The benchmark cannot start (no PostgreSQL, a database it must not touch, …)."""


def _admin_url(url: str) -> tuple[str, str]:
    parsed = make_url(url)
    if not parsed.database:
        raise BenchSetupError(f"name the benchmark database in the URL: {url}")
    return libpq_url(parsed.set(database="postgres").render_as_string(hide_password=False)), \
        parsed.database


@contextmanager
def postgres_database(url: str) -> Iterator[str]:
    """A new, migrated database at ``url`` (created here, dropped on the way out).

    An existing database is replaced only when its name starts with ``patron_bench``;
    any other name is refused, so a mistyped URL cannot wipe real data.
    """
    admin, name = _admin_url(url)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (name,)).fetchone()
            if exists and not name.startswith(OWN_PREFIX):
                raise BenchSetupError(
                    f"database {name!r} exists and is not the benchmark's own: the benchmark "
                    f"creates and drops its database; name one starting with {OWN_PREFIX!r}")
            if exists:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise BenchSetupError(f"PostgreSQL is not reachable: {exc}".strip()) from exc
    try:
        upgrade_database(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A new, migrated SQLite file in a temporary folder (removed on the way out)."""
    with tempfile.TemporaryDirectory(prefix="patron-bench-") as folder:
        url = f"sqlite:///{Path(folder) / 'checkout.db'}"
        upgrade_database(url)
        yield url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    # The leader of the server's process group (uvicorn's supervisor).
    pid: int


@contextmanager
def running_server(database_url: str, *, workers: int) -> Iterator[Server]:
    """``patron serve --workers N`` on a free port of 127.0.0.1.

    The server runs exactly as in production (the ``patron serve`` command: uvicorn, one
    process per worker), in a session of its own so that its whole process group can be
    stopped together. Its log goes to a temporary file, shown if it fails to start.
    """
    port = free_port()
    env = {**os.environ, "PATRON_DATABASE_URL": database_url,
           "PATRON_SECRET_KEY": BENCH_SECRET_KEY}
    command = [sys.executable, "-m", "patron.cli.main", "serve", "--workers", str(workers),
               "--host", "127.0.0.1", "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_healthy(base, process, log)
            yield Server(url=base, pid=process.pid)
        finally:
            stop_process_group(process)


def _wait_healthy(base: str, process: subprocess.Popen[bytes], log: object) -> None:
    deadline = time.monotonic() + START_SECONDS
    while True:
        with contextlib.suppress(urllib.error.URLError, OSError), \
                urllib.request.urlopen(f"{base}/health", timeout=2) as response:
            if response.status == 200:
                return
        if process.poll() is not None or time.monotonic() > deadline:
            tail = b""
            if hasattr(log, "seek") and hasattr(log, "read"):
                log.seek(0)
                tail = log.read()[-3000:]
            raise BenchSetupError(f"the server did not start:\n{tail.decode(errors='replace')}")
        time.sleep(0.2)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group the server leads, SIGKILL if it is still there."""
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)
            # The leader is gone; its workers may still be shutting down.
            if not _group_alive(process.pid):
                return
        time.sleep(0.2)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
