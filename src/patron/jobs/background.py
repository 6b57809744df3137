"""A loop on a daemon thread of the server process, started and stopped by the
application's lifespan (the scheduler, the delivery worker)."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger("patron.jobs")


class Background(ABC):
    """``_loop`` runs on the thread until ``_stop`` is set; ``stop`` sets it and waits."""

    thread_name = "patron-background"
    what = "the background loop"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @abstractmethod
    def _loop(self) -> None:
        """The thread's work, until ``self._stop`` is set."""

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{self.what} is already running")
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the thread to stop after the batch in hand and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s did not stop within %.0f s", self.what, timeout)
