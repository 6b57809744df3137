"""The pages benchmark (bench/pages.py) at a tiny size, so that it cannot rot: what it runs
and prints, never how fast. In the PostgreSQL pass it runs on a database of its own beside
the test database (``--database-url``); otherwise on a SQLite file of its own."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import aiohttp
import psycopg
import pytest
from bench import loadgen, pages
from bench.loadgen import Phase, PhaseResult
from bench.shop import libpq_url
from sqlalchemy.engine import make_url

from tests.conftest import IS_POSTGRES, TEST_DATABASE_URL

PAGES = ("/", "/join?m=10001", "/wallet/sign-in", "/login", "/wallet", "/register/choose",
         "/console", "/operator")


@pytest.fixture
def database_url() -> Iterator[str | None]:
    if not IS_POSTGRES:
        yield None
        return
    url = make_url(TEST_DATABASE_URL)
    name = f"{url.database}_bench_pages"
    with psycopg.connect(libpq_url(TEST_DATABASE_URL), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(TEST_DATABASE_URL), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_the_benchmark_runs_and_prints_its_figures(
        capsys: pytest.CaptureFixture[str], database_url: str | None) -> None:
    argv = ["--members", "5", "--purchases", "2", "--workers", "1", "--concurrency", "2",
            "--warmup-seconds", "0.5", "--unloaded-seconds", "0.5", "--seconds", "1"]
    if database_url is not None:
        argv += ["--database-url", database_url]
    pages.main(argv)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("command:  python -m bench pages --members 5 ")
    assert lines[1].startswith("settings: --members 5 --purchases 2 --workers 1 ")
    assert lines[2].startswith("machine:  Python ")
    assert lines[3].startswith("database: " + ("PostgreSQL" if IS_POSTGRES else "SQLite"))
    assert re.fullmatch(r"set-up:   5 members with a wallet device and a voucher each, "
                        r"10 purchases \(\d+ burning points\), 3 staff, through the "
                        r"services in [\d.]+ s(; VACUUM ANALYZE [\d.]+ s)?", lines[4]), lines[4]
    assert lines[5].startswith("server:   patron serve --workers 1; ")
    assert lines[6].startswith("  checked: GET /wallet with member 10001")
    assert lines[6].endswith("a cookie the server did not issue is sent to /wallet/sign-in "
                             "(303)")

    # The wallet's phases: every page answered 200, none refused.
    table = lines.index(next(line for line in lines if line.startswith("The wallet page (")))
    assert lines[table + 1].split() == ["phase", "load", "requests", "pages/s", "p50", "ms",
                                        "p99", "ms"]
    assert [line.split()[0] for line in lines[table + 2:table + 5]] == \
        ["unloaded", "maximum", "under"]
    assert "FAILED" not in out
    assert re.search(r"^wallet page, (SQLite|PostgreSQL), under load \(70% of the maximum, "
                     r"\d+/s, [\d,]+ requests\): p99 <= 50 ms (PASS|FAIL) \([\d.]+ ms; p50 "
                     r"[\d.]+ ms\); every answer 200$", out, re.MULTILINE)

    # First-load sizes: a row per page, each with the scripts and the style sheet found.
    sizes = lines.index(next(line for line in lines if line.startswith("First-load transfer")))
    rows = [line.split() for line in lines[sizes + 2:sizes + 2 + len(PAGES)]]
    assert [row[0] for row in rows] == list(PAGES)
    for row in rows:
        html, js, css, code, gzip = (float(row[index]) for index in (2, 3, 4, 5, 7))
        assert html > 0 and js > 0 and css > 0 and code == pytest.approx(js + css, abs=0.11)
        assert 0 < gzip < code
        assert row[6] in ("PASS", "FAIL")
    assert re.search(r"^first-load JS \+ CSS <= 200 KB on every page: (PASS|FAIL) \(largest "
                     r"[\d.]+ KB, /\S+", out, re.MULTILINE)
    assert lines[-1].startswith("pages benchmark finished in ")


class _Redirecting(BaseHTTPRequestHandler):
    """What a server that has forgotten the device answers: the wallet sends the browser
    to the sign-in page, which answers 200."""

    def do_GET(self) -> None:
        if self.path == "/wallet":
            self.send_response(303)
            self.send_header("Location", "/wallet/sign-in")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"<!doctype html><title>Sign in</title>"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


async def _closed_loop(base: str, source: pages.WalletPages, phase: Phase) -> PhaseResult:
    """The load generator's closed loop, in this process (its own process only adds the
    time to start one)."""
    async with aiohttp.ClientSession(base) as session:
        return await loadgen._closed_loop(session, source, phase)


def test_a_redirect_to_the_sign_in_page_is_an_error_not_a_fast_page() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        source = pages.WalletPages(cookies=("__Host-patron_wallet=unknown",), seed=1)
        result = asyncio.run(_closed_loop(base, source, Phase("redirected", 0.2,
                                                             concurrency=1)))
    finally:
        server.shutdown()
        server.server_close()
    assert result.requests > 0
    assert result.ok == 0
    assert set(result.statuses) == {303}
