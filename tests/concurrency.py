"""Run calls truly at the same time: every thread waits at a barrier, then calls."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def all_at_once(count: int, call: Callable[[int], T]) -> list[T]:
    """``call(0) … call(count - 1)`` on ``count`` threads released together; the results
    in index order."""
    barrier = threading.Barrier(count)

    def run(index: int) -> T:
        barrier.wait()
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
