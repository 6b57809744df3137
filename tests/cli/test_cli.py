"""The `patron` command, run as a user runs it: a subprocess with its own database."""

import os
import shutil
import subprocess
import sys
import tempfile

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.app import create_app
from patron.config import get_settings
from patron.db import Database
from tests.conftest import IS_POSTGRES

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="CLI runs against its own SQLite file")


def patron(db_url, *args, check=True):
    env = {**os.environ, "PATRON_DATABASE_URL": db_url}
    result = subprocess.run([sys.executable, "-m", "patron.cli.main", *args], env=env,
                            capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


_MIGRATED = tempfile.mkdtemp(prefix="patron-cli-")


def migrated_file(path):
    """A SQLite file at ``path`` as `patron db upgrade` leaves a new one: the command runs
    once per test process, and every later file is a copy of the first result."""
    template = os.path.join(_MIGRATED, "migrated.db")
    if not os.path.exists(template):
        patron(f"sqlite:///{template}", "db", "upgrade")
    shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def db_url(tmp_path):
    return migrated_file(tmp_path / "cli.db")


def test_db_upgrade_is_repeatable(db_url):
    assert "latest schema" in patron(db_url, "db", "upgrade").stderr


def test_keys_create_prints_the_key_alone_on_the_last_line(db_url):
    result = patron(db_url, "keys", "create", "--role", "operator")
    key = result.stdout.strip().splitlines()[-1]
    assert key.startswith("ptn_") and len(key) == 36 and " " not in key
    # The key works, and only its hash is stored.
    database = Database(db_url)
    with TestClient(create_app(get_settings(), database)) as client:
        merchants = client.get("/v1/merchants", headers={"Authorization": f"Bearer {key}"})
        assert merchants.status_code == 200
        assert merchants.json() == {"items": [], "next_cursor": None}
    with database.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT key_hash, prefix FROM api_keys").all()
    database.dispose()
    assert len(stored) == 1 and key not in stored[0][0] and stored[0][1] == key[:12]


def test_keys_for_the_other_roles_need_their_tenant(db_url):
    refused = patron(db_url, "keys", "create", "--role", "merchant", check=False)
    assert refused.returncode == 2
    assert "merchant_id" in refused.stderr
    patron(db_url, "demo", "--members", "3")
    merchant = patron(db_url, "keys", "create", "--role", "merchant",
                      "--merchant-number", "10001").stdout.strip().splitlines()[-1]
    rep = patron(db_url, "keys", "create", "--role", "sales_rep").stdout.strip().splitlines()[-1]
    assert merchant.startswith("ptn_") and rep.startswith("ptn_") and merchant != rep


def test_demo_builds_the_coalition_and_prints_keys(db_url):
    from patron.members.models import Member
    from patron.pos.models import PosTransaction
    from patron.tenancy.models import Merchant, Store, Terminal

    result = patron(db_url, "demo", "--members", "60")
    assert "http://127.0.0.1:8000/docs" in result.stdout
    assert result.stdout.count("ptn_") >= 8
    database = Database(db_url)
    with database.session_scope() as session:
        currencies = sorted(session.scalars(select(Merchant.currency)))
        timezones = set(session.scalars(select(Merchant.timezone)))
        stores = session.scalar(select(func.count()).select_from(Store))
        kinds = set(session.scalars(select(Terminal.kind)))
        members = session.scalar(select(func.count()).select_from(Member)
                                 .where(Member.external_ref.is_(None)))
        imported = session.scalar(select(func.count()).select_from(Member)
                                  .where(Member.external_ref.isnot(None)))
        history = session.scalar(select(func.count()).select_from(PosTransaction))
        with_coordinates = session.scalar(select(func.count()).select_from(Store)
                                          .where(Store.latitude.isnot(None)))
    database.dispose()
    assert currencies == ["JPY", "KRW", "USD"]
    assert len(timezones) == 3
    assert stores == 12 and with_coordinates == 11
    assert {"pos", "reader", "online"} <= kinds
    assert members == 60  # enrolled
    # A previous system's customers (10 a merchant at least) with a year of purchases.
    assert imported == 30 and history >= 100
    again = patron(db_url, "demo", "--if-empty")
    assert "nothing to do" in again.stderr


def test_make_run_serves_health_and_docs(tmp_path):
    """`make run` on an empty database: migrate, demo data, serve."""
    import socket
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PATRON_DATABASE_URL": f"sqlite:///{tmp_path}/run.db",
           "PATRON_PORT": str(port)}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    process = subprocess.Popen(["make", "--no-print-directory", "run"], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "make run did not serve in time"
                time.sleep(0.5)
        assert health.status_code == 200
        docs = httpx.get(f"http://127.0.0.1:{port}/docs", timeout=5)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        spec = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()
        assert "/v1/identify" in spec["paths"]
    finally:
        os.killpg(process.pid, 15)
        output = process.communicate(timeout=30)[0].decode()
    assert "API docs" in output and "ptn_" in output
    assert '"GET /health HTTP/1.1" 200' in output  # make run logs each request


@pytest.mark.parametrize(("flags", "env", "logged"), [
    ([], None, False),  # a production server: no line per request by default
    ([], "true", True),
    (["--access-log"], None, True),
    (["--no-access-log"], "true", False),  # the flag wins over the setting
])
def test_serve_logs_requests_only_when_asked(monkeypatch, flags, env, logged):
    import uvicorn
    from typer.testing import CliRunner

    from patron.cli.main import app as cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    monkeypatch.setattr("patron.cli.main._port_in_use", lambda host, port: None)
    if env is not None:
        monkeypatch.setenv("PATRON_ACCESS_LOG", env)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", *flags])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert [call["access_log"] for call in calls] == [logged]


@pytest.mark.parametrize(("workers", "limit", "warned"), [
    (1, 30, False),  # 25 connections at most
    (2, 30, True),  # 50
    (2, None, False),  # SQLite, or a server that could not be asked
])
def test_serve_warns_when_its_workers_may_want_more_connections_than_postgresql_accepts(
        monkeypatch, workers, limit, warned):
    import uvicorn
    from typer.testing import CliRunner

    from patron import db
    from patron.cli.main import app as cli

    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: None)
    monkeypatch.setattr(db, "connection_limit", lambda url: limit)
    monkeypatch.setattr("patron.cli.main._port_in_use", lambda host, port: None)
    result = CliRunner().invoke(cli, ["serve", "--workers", str(workers)])
    assert result.exit_code == 0, result.output
    assert ("may open up to 50 database connections" in result.output) is warned
    assert ("PATRON_DB_MAX_OVERFLOW" in result.output) is warned


def test_keys_create_with_an_expiry(db_url):
    in_days = patron(db_url, "keys", "create", "--role", "operator", "--expires", "30d")
    key = in_days.stdout.strip().splitlines()[-1]
    at = patron(db_url, "keys", "create", "--role", "operator",
                "--expires", "2090-03-31T23:59:59+09:00")
    assert at.stdout.strip().splitlines()[-1].startswith("ptn_")
    database = Database(db_url)
    with database.engine.connect() as conn:
        stored = sorted(conn.exec_driver_sql("SELECT expires_at FROM api_keys").scalars())
    with TestClient(create_app(get_settings(), database)) as client:
        assert client.get("/v1/merchants", headers={"Authorization": f"Bearer {key}"}
                          ).status_code == 200
    database.dispose()
    assert [str(value)[:19] for value in stored][1] == "2090-03-31 14:59:59"
    assert len(stored) == 2 and all(stored)
    for refused in ("2001-01-01T00:00:00+00:00", "soon", "0d", "2090-03-31T23:59:59"):
        result = patron(db_url, "keys", "create", "--role", "operator", "--expires", refused,
                        check=False)
        assert result.returncode == 2, (refused, result.stdout, result.stderr)
    with Database(db_url).engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM api_keys").scalar() == 2


def test_serve_says_the_port_is_busy_before_its_banner(monkeypatch):
    import socket

    import uvicorn
    from typer.testing import CliRunner

    from patron.cli.main import app as cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"port {port} is already in use" in result.output
    assert "Patron on" not in result.output
    assert calls == []


def test_serve_starts_on_a_free_port(monkeypatch):
    import socket

    import uvicorn
    from typer.testing import CliRunner

    from patron.cli.main import app as cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append(kwargs))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(cli, ["serve", "--host", "127.0.0.1", "--port", str(port)])
    assert result.exit_code == 0, result.output
    assert f"Patron on http://127.0.0.1:{port}" in result.output
    assert [call["port"] for call in calls] == [port]


def test_worker_once_delivers_what_is_due_and_prints_the_counts(db_url, tmp_path):
    from bench.sinks import webhook_receiver

    patron(db_url, "demo", "--members", "3")
    database = Database(db_url)
    try:
        with webhook_receiver() as receiver:
            operator = patron(db_url, "keys", "create", "--role", "operator")
            key = operator.stdout.strip().splitlines()[-1]
            with TestClient(create_app(get_settings(), database)) as client:
                merchant = client.get("/v1/merchants", headers={
                    "Authorization": f"Bearer {key}"}).json()["items"][0]
                created = client.post("/v1/webhook-endpoints", headers={
                    "Authorization": f"Bearer {key}"}, json={
                    "url": receiver.url, "events": ["member.enrolled"],
                    "merchant_id": merchant["id"]})
                assert created.status_code == 201, created.text
                enrolled = client.post("/v1/members", headers={
                    "Authorization": f"Bearer {key}"}, json={"merchant_id": merchant["id"]})
                assert enrolled.status_code == 201, enrolled.text
            env = {"PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"}
            result = subprocess.run(
                [sys.executable, "-m", "patron.cli.main", "worker", "--once"],
                env={**os.environ, **env, "PATRON_DATABASE_URL": db_url},
                capture_output=True, text=True, timeout=300)
            assert result.returncode == 0, result.stderr
        assert [item.json["data"]["member_id"] for item in receiver.received] == [
            enrolled.json()["id"]]
        # Every event of the demo is dispatched (this one endpoint hears of one).
        said = " ".join(result.stderr.split())
        assert said.startswith("events dispatched: ")
        assert "deliveries delivered: 1, to retry: 0, failed: 0, suppressed: 0" in said
    finally:
        database.dispose()
