"""The one source of "now", so tests can move time."""

from __future__ import annotations

from datetime import UTC, datetime


class Clock:
    def __init__(self) -> None:
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        return self._frozen if self._frozen is not None else datetime.now(UTC)

    def freeze(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("clock needs a timezone-aware time")
        self._frozen = at

    def unfreeze(self) -> None:
        self._frozen = None


clock = Clock()


def utcnow() -> datetime:
    return clock.now()
