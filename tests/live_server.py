"""A real Patron server in a subprocess (uvicorn, several workers, each with the app of a
``patron serve`` worker: ``patron.app:server_app``) for concurrency tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import IO

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(log: IO[bytes], size: int = 3000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-size:]


@contextmanager
def live_server(database_url: str, workers: int = 2,
                env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The server's base URL; ``env`` adds to (or overrides) its environment.

    The server's log goes to a temporary file (a pipe nobody reads would block the server
    once full); its end is printed when the server stops, which pytest shows for a failed
    test.
    """
    port = _free_port()
    environment = {**os.environ, **(env or {}), "PATRON_DATABASE_URL": database_url}
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "patron.app:server_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
             "--log-level", "warning", "--no-proxy-headers"],
            env=environment, stdout=subprocess.DEVNULL, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start: {_tail(log)}")
                time.sleep(0.1)
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
