from __future__ import annotations

from patron.errors import PatronError


class TooManyFailures(PatronError):
    """Refused before anything is looked up: the caller learns nothing while throttled.
    ``retry_after`` (seconds, also the ``Retry-After`` header) says when to try again."""

    status = 429
    code = "too_many_failures"
    title = "Too many failed attempts: wait before trying again"
