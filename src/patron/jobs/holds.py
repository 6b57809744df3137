"""Voucher holds past their time give their counters back (the job's transaction
boundary; the vouchers service only flushes)."""

from __future__ import annotations

import threading
from datetime import datetime

from patron.db import Database
from patron.vouchers.service import release_expired_holds

BATCH = 500


def run_hold_release(database: Database, now: datetime, *,
                     stop: threading.Event | None = None) -> int:
    """Release every hold that expired by ``now``, one short transaction per batch; the
    number released. A use of a code releases its own expired holds too, so this only
    keeps caps and budgets honest for codes nobody presents again."""
    released = 0
    while stop is None or not stop.is_set():
        with database.session_scope() as session:
            batch = release_expired_holds(session, now=now, limit=BATCH)
        released += batch
        if batch < BATCH:
            break
    return released
