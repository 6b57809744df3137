"""The pulled weather feed (``campaigns.weather_feed``): a file or an HTTP address read
by the ``weather-feed`` job into the stores' weather; bad entries counted and left out, an
unreadable feed changing nothing."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.campaigns.models import StoreWeather
from patron.campaigns.weather_feed import FileFeed, HttpFeed, feed_for, pull
from patron.config import get_settings
from patron.db import Database
from patron.jobs.scheduler import JOBS
from tests.conftest import World, auth

NOW = datetime(2026, 12, 4, 0, 0, tzinfo=UTC)


def _document(world: World) -> dict[str, Any]:
    return {"observations": [
        {"store_id": world.a.store_id, "condition": "rain", "temperature_c": 9.5,
         "observed_at": (NOW - timedelta(minutes=10)).isoformat()},
        {"store_id": world.b.store_id, "condition": "snow",
         "observed_at": (NOW - timedelta(minutes=5)).isoformat()},
        {"store_id": str(uuid.uuid4()), "condition": "sunny"},  # no such store
        {"store_id": world.a.store_id, "condition": "hail"},  # not a condition
        {"store_id": world.a.store_id, "condition": "fog", "temperature_c": 999},
        "not an object"]}


def _weather(database: Database) -> dict[str, tuple[str, str]]:
    with database.session_scope() as session:
        return {str(row.store_id): (row.condition, row.source)
                for row in session.scalars(select(StoreWeather))}


def test_a_file_feed_stores_what_it_can_and_counts_the_rest(
        world: World, database: Database, tmp_path: Path) -> None:
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(_document(world)))
    summary = pull(database, feed_for(f"file://{path}"), NOW)
    assert summary == ("weather feed: 2 observation(s) stored, 1 for unknown stores, "
                       "3 invalid")
    assert _weather(database) == {world.a.store_id: ("rain", "feed:file"),
                                  world.b.store_id: ("snow", "feed:file")}
    # An older observation read later changes nothing; a newer one replaces it.
    path.write_text(json.dumps({"observations": [
        {"store_id": world.a.store_id, "condition": "sunny",
         "observed_at": (NOW - timedelta(hours=1)).isoformat()},
        {"store_id": world.b.store_id, "condition": "cloudy",
         "observed_at": NOW.isoformat()}]}))
    pull(database, FileFeed(path), NOW)
    assert _weather(database) == {world.a.store_id: ("rain", "feed:file"),
                                  world.b.store_id: ("cloudy", "feed:file")}


def test_a_pushed_observation_and_the_feed_take_turns_by_time(
        client: TestClient, world: World, database: Database, tmp_path: Path) -> None:
    pushed = client.put(f"/v1/stores/{world.a.store_id}/weather",
                        headers=auth(world.a.merchant_key),
                        json={"condition": "storm", "observed_at": NOW.isoformat()})
    assert pushed.status_code == 200, pushed.text
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(_document(world)))  # A's rain is ten minutes older
    pull(database, FileFeed(path), NOW)
    assert _weather(database)[world.a.store_id] == ("storm", "api")


@pytest.fixture
def http_feed() -> Iterator[tuple[list[bytes], str]]:
    """A local HTTP server answering the body in the list's last item."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies[-1]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield bodies, f"http://127.0.0.1:{server.server_address[1]}/weather"
    finally:
        server.shutdown()
        server.server_close()


def test_an_http_feed(world: World, database: Database,
                      http_feed: tuple[list[bytes], str]) -> None:
    bodies, url = http_feed
    bodies.append(json.dumps(_document(world)).encode())
    feed = feed_for(url)
    assert isinstance(feed, HttpFeed)
    assert pull(database, feed, NOW).startswith("weather feed: 2 observation(s) stored")
    assert _weather(database)[world.a.store_id] == ("rain", "feed:http")


def test_an_unreadable_feed_changes_nothing(world: World, database: Database,
                                            http_feed: tuple[list[bytes], str],
                                            tmp_path: Path) -> None:
    bodies, url = http_feed
    for body, expected in ((b"<html>not json</html>", "not read (JSONDecodeError"),
                           (b'{"weather": []}', 'no "observations" list'),
                           (b"[1, 2]", 'no "observations" list')):
        bodies.append(body)
        assert expected in pull(database, HttpFeed(url), NOW)
    assert "not read (URLError" in pull(database, HttpFeed("http://127.0.0.1:9/"), NOW)
    assert "not read (FileNotFoundError" in pull(database, FileFeed(tmp_path / "none"), NOW)
    assert _weather(database) == {}
    with pytest.raises(ValueError, match="not ftp:"):
        feed_for("ftp://example.com/weather.json")


def test_the_job_reads_the_configured_feed(world: World, database: Database,
                                           tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    [job] = [job for job in JOBS if job.name == "weather-feed"]
    assert job.run(database, NOW, None) == (
        "weather feed: none configured (PATRON_WEATHER_FEED)")
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(_document(world)))
    monkeypatch.setenv("PATRON_WEATHER_FEED", str(path))
    get_settings.cache_clear()
    try:
        assert job.run(database, NOW, None).startswith("weather feed: 2 observation(s)")
    finally:
        monkeypatch.delenv("PATRON_WEATHER_FEED")
        get_settings.cache_clear()
    assert _weather(database)[world.b.store_id] == ("snow", "feed:file")
