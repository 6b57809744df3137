"""The test helpers that make the suite safe under pytest-xdist and on a busy machine: the
live server's readiness wait, its one-at-a-time lock, and the per-worker databases."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import pytest

from tests.conftest import worker_database_url
from tests.live_server import READY_SECONDS, _one_at_a_time, wait_until_ready


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class _Process:
    def __init__(self, returncode: int | None) -> None:
        self.returncode = returncode

    def poll(self) -> int | None:
        return self.returncode


@contextmanager
def _log(text: str) -> Iterator[IO[bytes]]:
    with tempfile.TemporaryFile() as log:
        log.write(text.encode())
        yield log


def test_a_server_that_takes_a_minute_to_start_is_waited_for() -> None:
    clock = _Clock()
    asked: list[float] = []

    def healthy(base: str) -> bool:
        asked.append(clock.now)
        return clock.now >= 60

    with _log("") as log:
        wait_until_ready("http://127.0.0.1:1", _Process(None), log, healthy=healthy,
                         monotonic=clock.monotonic, sleep=clock.sleep)
    assert asked[-1] >= 60 and all(moment < 60 for moment in asked[:-1])


def test_a_server_that_stops_before_it_is_ready_fails_with_its_log() -> None:
    clock = _Clock()
    with _log("ImportError: no module named nowhere") as log, \
            pytest.raises(RuntimeError) as raised:
        wait_until_ready("http://127.0.0.1:1", _Process(1), log, healthy=lambda base: False,
                         monotonic=clock.monotonic, sleep=clock.sleep)
    assert "stopped before it was ready" in str(raised.value)
    assert "ImportError: no module named nowhere" in str(raised.value)
    assert clock.now == 0  # no waiting for a server that is gone


def test_a_server_never_ready_fails_at_the_deadline_with_its_log() -> None:
    clock = _Clock()
    with _log("still importing") as log, pytest.raises(RuntimeError) as raised:
        wait_until_ready("http://127.0.0.1:1", _Process(None), log,
                         healthy=lambda base: False, monotonic=clock.monotonic,
                         sleep=clock.sleep)
    assert f"within {READY_SECONDS:.0f} s" in str(raised.value)
    assert "still importing" in str(raised.value)
    assert READY_SECONDS < clock.now <= READY_SECONDS + 0.2


def test_live_servers_of_one_xdist_run_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    run = f"suite-{os.getpid()}"
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", run)
    path = os.path.join(tempfile.gettempdir(), f"patron-live-server-{run}.lock")
    try:
        with _one_at_a_time(), open(path, "a") as other_worker, \
                pytest.raises(BlockingIOError):
            fcntl.flock(other_worker, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with open(path, "a") as other_worker:  # free once the holder is done
            fcntl.flock(other_worker, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.remove(path)


def test_each_xdist_worker_has_its_own_postgresql_database() -> None:
    base = "postgresql+psycopg://postgres:pw@127.0.0.1:5432/test"
    assert worker_database_url(base, "gw1") == \
        "postgresql+psycopg://postgres:pw@127.0.0.1:5432/test_gw1"
    assert worker_database_url(base, None) == base
    sqlite = "sqlite:////tmp/patron-test-x/test.db"  # a file per process already
    assert worker_database_url(sqlite, "gw1") == sqlite
