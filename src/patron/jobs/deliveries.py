"""The delivery worker's loop: inside ``patron serve`` (a daemon thread started by the
application's lifespan, like the scheduler) or ``patron worker`` (the foreground).

Only the process holding the deliveries' lease (``patron.jobs.lease``, purpose
``deliveries``) runs rounds, so ``--workers N`` runs one worker per deployment; claims are
``SKIP LOCKED`` on PostgreSQL anyway, so a second runner would be safe, only wasteful.
"""

from __future__ import annotations

import logging

from patron.config import Settings, get_settings
from patron.db import Database
from patron.jobs.background import Background
from patron.jobs.lease import Lease, lease_for
from patron.notify.worker import Deliverer

log = logging.getLogger("patron.notify")


class DeliveryWorker(Background):
    """The loop: run rounds while there is work, sleep ``delivery_interval_seconds`` when
    there is none, only while this process holds the deliveries' lease."""

    thread_name = "patron-deliveries"
    what = "the delivery worker"

    def __init__(self, database: Database, settings: Settings | None = None, *,
                 deliverer: Deliverer | None = None, lease: Lease | None = None) -> None:
        super().__init__()
        self.database = database
        self.settings = settings or get_settings()
        self.deliverer = deliverer or Deliverer(database, self.settings)
        self.lease = lease if lease is not None else lease_for(database, purpose="deliveries")

    def run_forever(self) -> None:
        """In the calling thread (``patron worker``), until ``stop``."""
        self._loop()

    def _loop(self) -> None:
        interval = self.settings.delivery_interval_seconds
        try:
            while not self._stop.is_set():
                try:
                    if not self.lease.acquire():
                        self._stop.wait(max(interval, 5.0))
                        continue
                    if self.deliverer.run_once().idle:
                        self._stop.wait(interval)
                except Exception:
                    log.exception("delivery round failed; trying again")
                    self._stop.wait(max(interval, 1.0))
        finally:
            try:
                self.lease.release()
            except Exception:
                log.exception("releasing the deliveries' lease failed")
            self.deliverer.close()


def start_worker(database: Database, settings: Settings) -> DeliveryWorker | None:
    """The running worker, or None when ``PATRON_DELIVERIES_IN_SERVE`` is false."""
    if not settings.deliveries_in_serve:
        return None
    worker = DeliveryWorker(database, settings)
    worker.start()
    return worker
