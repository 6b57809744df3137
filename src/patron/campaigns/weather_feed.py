"""Pulled weather: a feed the ``weather-feed`` job reads into the stores' weather.

``PATRON_WEATHER_FEED`` names the feed: a file (``file:///srv/weather.json`` or a plain
path) or an HTTP(S) address that answers JSON. Either gives one document::

    {"observations": [{"store_id": "…", "condition": "rain", "temperature_c": 9.5,
                       "observed_at": "2026-12-04T08:00:00+09:00"}, ...]}

Each observation is checked on its own, like a ``PUT /v1/stores/{id}/weather`` body with
the store's id: a bad one, or one for a store Patron does not know, is counted and left
out; the others are stored (``environment.record_weather``: an observation older than the
stored one changes nothing). A feed that cannot be read, or is not such a document,
changes nothing; the job's summary says why. Pushing (the PUT) works beside a feed.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from pydantic import ValidationError
from sqlalchemy import select

from patron.campaigns.environment import ObservedInFuture, record_weather
from patron.campaigns.schemas import WeatherWrite
from patron.db import Database
from patron.tenancy.models import Store

# A feed document larger than this is refused (a feed for every store of a big coalition
# is well below it).
MAX_FEED_BYTES = 16 * 1024 * 1024
HTTP_TIMEOUT_SECONDS = 10.0


class FeedObservation(WeatherWrite):
    store_id: uuid.UUID


class Feed(Protocol):
    @property
    def name(self) -> str: ...

    def fetch(self) -> bytes: ...


@dataclass(frozen=True)
class FileFeed:
    path: Path
    name: str = "feed:file"

    def fetch(self) -> bytes:
        with self.path.open("rb") as handle:
            return _limited(handle.read(MAX_FEED_BYTES + 1))


@dataclass(frozen=True)
class HttpFeed:
    url: str
    timeout: float = HTTP_TIMEOUT_SECONDS
    name: str = "feed:http"

    def fetch(self) -> bytes:
        # feed_for made this feed for an http(s) address only.
        request = urllib.request.Request(  # noqa: S310
            self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
            return _limited(response.read(MAX_FEED_BYTES + 1))


def _limited(data: bytes) -> bytes:
    if len(data) > MAX_FEED_BYTES:
        raise ValueError(f"the feed is larger than {MAX_FEED_BYTES} bytes")
    return data


def feed_for(setting: str) -> Feed:
    """The feed a ``PATRON_WEATHER_FEED`` value names; ``ValueError`` for another scheme."""
    parts = urlsplit(setting)
    if parts.scheme in ("http", "https"):
        return HttpFeed(setting)
    if parts.scheme == "file":
        return FileFeed(Path(parts.path))
    if parts.scheme == "":
        return FileFeed(Path(setting))
    raise ValueError(f"a weather feed is a file or an http(s) address, not {parts.scheme}:")


def pull(database: Database, feed: Feed, now: datetime) -> str:
    """Read the feed once and store what it says; a one-line summary."""
    try:
        document = json.loads(feed.fetch())
    except (OSError, ValueError) as exc:  # unreachable, too large, not JSON
        return f"weather feed not read ({type(exc).__name__}: {exc}); nothing changed"
    entries = document.get("observations") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return "weather feed has no \"observations\" list; nothing changed"
    valid: list[FeedObservation] = []
    invalid = 0
    for entry in entries:
        try:
            valid.append(FeedObservation.model_validate(entry))
        except ValidationError:
            invalid += 1
    stored = unknown = 0
    with database.session_scope() as session:
        known = set(session.scalars(select(Store.id).where(
            Store.id.in_({observation.store_id for observation in valid}))))
        for observation in valid:
            if observation.store_id not in known:
                unknown += 1
                continue
            try:
                record_weather(session, store_id=observation.store_id,
                               data=WeatherWrite.model_validate(
                                   observation.model_dump(exclude={"store_id"})),
                               now=now, source=feed.name)
            except ObservedInFuture:
                invalid += 1
                continue
            stored += 1
    return (f"weather feed: {stored} observation(s) stored, {unknown} for unknown stores, "
            f"{invalid} invalid")
