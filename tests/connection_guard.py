"""A request holds at most one pooled database connection at a time.

The connection budget (docs/configuration.md) lets a worker run more requests at once (40
threads) than its pool has connections (20 by default): a request that waits for a
connection then waits only for requests that are running. A request that held one
connection while it asked for a second could wait for one that only another such request
would free, and under a burst every connection could end up held by requests waiting for a
second: a pool deadlock, ended only by the pool timeout (503s).

``conftest`` watches every test: a connection checked out by a request's worker thread
(``AnyIO worker thread``, where the app runs its sync endpoints) while that thread already
holds one fails the test, naming both places. A test that takes a second connection inside
a request on purpose (to race the request from within) says so with the marker
``nested_connections``."""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.pool import Pool

REQUEST_THREAD = "AnyIO worker thread"


@dataclass
class ConnectionGuard:
    # the thread that holds each checked-out connection record, and where it took it
    owners: dict[int, tuple[int, str]] = field(default_factory=dict)
    nested: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self) -> None:
        event.listen(Pool, "checkout", self._checked_out)
        for name in ("checkin", "invalidate", "soft_invalidate", "detach", "close"):
            event.listen(Pool, name, self._given_back)

    def _checked_out(self, _dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        thread = threading.current_thread()
        here = "".join(traceback.format_stack(limit=25)[:-2])
        with self.lock:
            held = [where for owner, where in self.owners.values() if owner == thread.ident]
            self.owners[id(record)] = (thread.ident or 0, here)
            if held and thread.name.startswith(REQUEST_THREAD):
                self.nested.append(f"a second connection taken at:\n{here}\n"
                                   f"while holding the one taken at:\n{held[0]}")

    def _given_back(self, _dbapi_connection: Any, record: Any, *_args: Any) -> None:
        with self.lock:
            self.owners.pop(id(record), None)

    def take_nested(self) -> list[str]:
        with self.lock:
            found, self.nested = self.nested, []
        return found


GUARD = ConnectionGuard()
