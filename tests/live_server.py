"""A real Patron server in a subprocess (uvicorn, several workers, each with the app of a
``patron serve`` worker: ``patron.app:server_app``) for concurrency tests.

The server is used once it answers ``/health`` (``wait_until_ready``), however long a busy
machine takes to start it, up to ``READY_SECONDS``; a server that stops first, or is not
ready by then, fails the test with the end of its log.

Under pytest-xdist one live server runs at a time across the workers of a run (a file lock,
``_one_at_a_time``): a server of 2 workers may open 2 x 25 PostgreSQL connections, and the
suite's connection budget (docs/configuration.md, "Connection budget") counts one."""

from __future__ import annotations

import fcntl
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import IO, Protocol

import httpx

# Ready or failed by then: generous for a 2-core machine running other test processes too
# (starting a server took 25-46 s there; 2-3 s on an idle one).
READY_SECONDS = 120.0


class _Process(Protocol):
    def poll(self) -> int | None: ...


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: IO[bytes], size: int = 3000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def wait_until_ready(base: str, process: _Process, log: IO[bytes], *,
                     ready_seconds: float = READY_SECONDS,
                     healthy: Callable[[str], bool] = _healthy,
                     monotonic: Callable[[], float] = time.monotonic,
                     sleep: Callable[[float], None] = time.sleep) -> None:
    """Returns once the server at ``base`` answers ``/health`` with 200; raises with its log
    when its process ends first or ``ready_seconds`` pass."""
    deadline = monotonic() + ready_seconds
    while not healthy(base):
        if process.poll() is not None:
            raise RuntimeError(f"the server stopped before it was ready; its log:\n{_tail(log)}")
        if monotonic() > deadline:
            raise RuntimeError(f"the server did not answer /health within {ready_seconds:.0f} s;"
                               f" its log:\n{_tail(log)}")
        sleep(0.1)


@contextmanager
def _one_at_a_time() -> Iterator[None]:
    """Across the xdist workers of one run (``PYTEST_XDIST_TESTRUNUID``), one holder at a
    time; without xdist there is only this process."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        yield
        return
    path = os.path.join(tempfile.gettempdir(), f"patron-live-server-{run}.lock")
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextmanager
def live_server(database_url: str, workers: int = 2,
                env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The server's base URL; ``env`` adds to (or overrides) its environment.

    The server's log goes to a temporary file (a pipe nobody reads would block the server
    once full); its end is printed when the server stops, which pytest shows for a failed
    test.
    """
    environment = {**os.environ, **(env or {}), "PATRON_DATABASE_URL": database_url}
    with _one_at_a_time(), tempfile.TemporaryFile() as log:
        port = _free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "patron.app:server_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
             "--log-level", "warning", "--no-proxy-headers"],
            env=environment, stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(base, process, log)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if tail := _tail(log):
                print(f"--- end of the live server's log ---\n{tail}")
