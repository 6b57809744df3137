"""Test set-up: one database per test process (SQLite file, or PostgreSQL when
PATRON_TEST_DATABASE_URL is set), migrated with Alembic, emptied between tests.

Under pytest-xdist (``-n N``, as ``make test`` runs the suite) every worker process has its
own database: a SQLite file in its own temporary directory, or on PostgreSQL the database
named after the worker (``test_gw0``, ``test_gw1``, ... beside the one the URL names),
created if missing and its schema reset as for a run without workers.

``world`` (two merchants, each with a merchant key, a store, a POS and a reader) is built
through the services the endpoints call, as the operator key's caller, in one transaction
(``build_tenant``): the same rows as the eight requests of ``make_tenant``, which tests that
talk to a live server still use, at about a sixth of the CPU (20-35 ms instead of
120-240 ms), and most tests start with it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import make_url


def worker_database_url(url: str, worker: str | None) -> str:
    """The database of one xdist worker: on PostgreSQL, the URL's database name suffixed
    with the worker's id; SQLite files are per process already (``_TMP``)."""
    if not worker or not url.startswith("postgresql"):
        return url
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{worker}").render_as_string(
        hide_password=False)


_TMP = tempfile.mkdtemp(prefix="patron-test-")
BASE_DATABASE_URL = os.environ.get("PATRON_TEST_DATABASE_URL") or f"sqlite:///{_TMP}/test.db"
TEST_DATABASE_URL = worker_database_url(BASE_DATABASE_URL,
                                        os.environ.get("PYTEST_XDIST_WORKER"))
os.environ["PATRON_DATABASE_URL"] = TEST_DATABASE_URL
os.environ.setdefault("PATRON_SECRET_KEY", "test-secret-key-for-the-suite-only")
os.environ.setdefault("PATRON_TELEPHONY_WEBHOOK_SECRET", "telephony-test-secret")
# No scheduler or delivery worker in the apps and servers tests start: a job running on its own
# would change what a test asserts. tests/jobs and tests/notify start them explicitly.
os.environ.setdefault("PATRON_JOBS_INTERVAL_SECONDS", "0")
os.environ.setdefault("PATRON_DELIVERIES_IN_SERVE", "false")
# Webhook receivers in the tests listen on loopback (tests/notify/test_targets.py checks
# the refusal with this off).
os.environ.setdefault("PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")
os.environ.setdefault("PATRON_CODE_BATCHES_IN_BACKGROUND", "false")
# No voucher failure limit either: tests present many refused codes from one terminal in
# a second on purpose. tests/vouchers/test_abuse.py turns the limit on where it tests it.
os.environ.setdefault("PATRON_VOUCHER_FAILURE_LIMIT", "0")
# Nor an identification limit: tests look up unknown numbers, phones and cards on purpose.
# tests/identity/test_enumeration.py turns it on where it tests it.
os.environ.setdefault("PATRON_IDENTIFY_FAILURE_LIMIT", "0")

import pytest  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from patron.app import create_app  # noqa: E402
from patron.cli.main import upgrade_database  # noqa: E402
from patron.config import get_settings  # noqa: E402
from patron.db import Database  # noqa: E402
from patron.kit.clock import clock  # noqa: E402
from patron.models import metadata  # noqa: E402

# The browser tests' Chromium (tests/browser.py), one per test module.
from tests.browser import browser  # noqa: E402, F401
from tests.connection_guard import GUARD  # noqa: E402
from tests.template import restored  # noqa: E402

IS_POSTGRES = TEST_DATABASE_URL.startswith("postgresql")


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    if IS_POSTGRES:
        # What a page's markup is, and what a browser does with it, does not depend on the
        # database: the browser tests run once, in the SQLite pass (the pages' behaviour,
        # through the same requests, is tested on both by tests/web).
        once = pytest.mark.skip(reason="in a browser: run in the SQLite pass")
        for item in items:
            if "markup" in item.keywords or "/tests/e2e/" in str(item.fspath):
                item.add_marker(once)
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL: runs in the PostgreSQL pass")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


# A test's report property whose value, a ``(template, {name: number})`` pair, goes to the
# run's terminal summary: the report carries it from an xdist worker to the process that
# prints, the numbers of every pair with the same template are summed, and the template,
# filled with the sums, is printed once (a check split over several tests, as the ledger
# walks' shards are, reports its total: tests/ledger/conftest.py).
SUMMARY_SUM = "summary sum"
_SUMS: dict[str, dict[str, float]] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for name, value in report.user_properties:
        if name == SUMMARY_SUM:
            template, numbers = value
            sums = _SUMS.setdefault(template, {})
            for key, number in numbers.items():
                sums[key] = sums.get(key, 0) + number


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for template, sums in _SUMS.items():
        terminalreporter.write_line(template.format(**sums))


def _create_postgres_database(base_url: str, url: str) -> None:
    """Creates ``url``'s database, if missing, through a connection to ``base_url``'s."""
    name = make_url(url).database
    if url == base_url or not name:
        return
    engine = create_engine(base_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"),
                                  {"name": name}).first()
            if exists is None:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()


def _reset_postgres_schema(url: str) -> None:
    database = Database(url)
    try:
        _create_postgres_database(BASE_DATABASE_URL, url)
        with database.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    except Exception as exc:  # pragma: no cover - only when the server is missing
        if os.environ.get("PATRON_REQUIRE_POSTGRES"):
            pytest.exit(f"PostgreSQL is required for this run but unreachable: {exc}", 3)
        raise
    finally:
        database.dispose()


@pytest.fixture(scope="session")
def database() -> Iterator[Database]:
    if IS_POSTGRES:
        _reset_postgres_schema(TEST_DATABASE_URL)
    upgrade_database(TEST_DATABASE_URL)
    db = Database(TEST_DATABASE_URL)
    yield db
    db.dispose()


# On PostgreSQL, every table's rows deleted children first and the serial keys' sequences
# restarted, in one round trip: a TRUNCATE of every table makes new files for each table
# and index, 100-250 ms a test where this takes 2 ms (the tables of a test are small).
_EMPTY_POSTGRES = "; ".join(
    [f"DELETE FROM {table.name}" for table in reversed(metadata.sorted_tables)]
    + [f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), 1, false)"
       for table in metadata.sorted_tables
       if (column := table.autoincrement_column) is not None])


def empty_all_tables(db: Database) -> None:
    with db.engine.begin() as conn:
        if IS_POSTGRES:
            conn.exec_driver_sql(_EMPTY_POSTGRES)
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())


GUARD.install()


@pytest.fixture(autouse=True)
def _one_connection_per_request(request: pytest.FixtureRequest) -> Iterator[None]:
    """See ``tests.connection_guard``."""
    GUARD.take_nested()
    yield
    nested = GUARD.take_nested()
    if nested and "nested_connections" not in request.keywords:
        pytest.fail("a request held two pooled connections at once:\n" + nested[0],
                    pytrace=False)


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    clock.unfreeze()
    if "database" in request.fixturenames:
        empty_all_tables(request.getfixturevalue("database"))


@pytest.fixture
def app(database: Database) -> Any:
    return create_app(get_settings(), database)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Tenant:
    merchant_id: str
    number: int
    merchant_key: str
    store_id: str
    pos_id: str
    pos_key: str
    reader_id: str
    reader_key: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class World:
    operator_key: str
    a: Tenant
    b: Tenant


def operator_key(database: Database) -> str:
    from patron.tenancy.models import Role
    from patron.tenancy.service import ensure_operator, issue_key

    with database.session_scope() as session:
        ensure_operator(session)
        _, secret = issue_key(session, role=Role.operator, label="tests")
    return secret


def make_tenant(client: TestClient, op_key: str, *, number: int, country: str, currency: str,
                timezone: str, call_number: str | None = None) -> Tenant:
    merchant = client.post("/v1/merchants", headers=auth(op_key), json={
        "number": number, "name": f"Merchant {number}", "currency": currency,
        "timezone": timezone, "country": country})
    assert merchant.status_code == 201, merchant.text
    merchant_id = merchant.json()["id"]
    key = client.post("/v1/keys", headers=auth(op_key),
                      json={"role": "merchant", "merchant_id": merchant_id})
    assert key.status_code == 201, key.text
    store = client.post(f"/v1/merchants/{merchant_id}/stores", headers=auth(op_key), json={
        "code": "main", "name": "Main store", "latitude": 35.6, "longitude": 139.7})
    assert store.status_code == 201, store.text
    store_id = store.json()["id"]
    pos = client.post(f"/v1/stores/{store_id}/terminals", headers=auth(op_key),
                      json={"code": "pos-1", "kind": "pos", "call_number": call_number})
    reader = client.post(f"/v1/stores/{store_id}/terminals", headers=auth(op_key),
                         json={"code": "reader-1", "kind": "reader", "points_per_tap": 5})
    assert pos.status_code == 201 and reader.status_code == 201, (pos.text, reader.text)
    return Tenant(merchant_id=merchant_id, number=number, merchant_key=key.json()["key"],
                  store_id=store_id, pos_id=pos.json()["id"], pos_key=pos.json()["api_key"],
                  reader_id=reader.json()["id"], reader_key=reader.json()["api_key"])


def build_tenant(database: Database, op_key: str, *, number: int, country: str,
                 currency: str, timezone: str, call_number: str | None = None) -> Tenant:
    """What ``make_tenant`` makes, through the services the endpoints call (as the operator
    key's caller), in one transaction: a tenth of the time of eight requests."""
    from patron.tenancy.models import Role, TerminalKind
    from patron.tenancy.schemas import ApiKeyCreate, MerchantCreate, StoreCreate, TerminalCreate
    from patron.tenancy.service import (
        authenticate,
        create_key,
        create_merchant,
        create_store,
        create_terminal,
    )

    with database.session_scope() as session:
        caller = authenticate(session, key=op_key)
        merchant = create_merchant(session, actor=caller, data=MerchantCreate(
            number=number, name=f"Merchant {number}", currency=currency, timezone=timezone,
            country=country))
        _, key = create_key(session, actor=caller, data=ApiKeyCreate(
            role=Role.merchant, merchant_id=merchant.id))
        store = create_store(session, actor=caller, merchant_id=merchant.id, data=StoreCreate(
            code="main", name="Main store", latitude=35.6, longitude=139.7))
        pos, pos_key = create_terminal(session, actor=caller, store_id=store.id,
                                       data=TerminalCreate(code="pos-1", kind=TerminalKind.pos,
                                                           call_number=call_number))
        reader, reader_key = create_terminal(session, actor=caller, store_id=store.id,
                                             data=TerminalCreate(code="reader-1",
                                                                 kind=TerminalKind.reader,
                                                                 points_per_tap=5))
        return Tenant(merchant_id=str(merchant.id), number=number, merchant_key=key,
                      store_id=str(store.id), pos_id=str(pos.id), pos_key=pos_key,
                      reader_id=str(reader.id), reader_key=reader_key)


def build_world(database: Database) -> World:
    op = operator_key(database)
    a = build_tenant(database, op, number=12345, country="JP", currency="JPY",
                     timezone="Asia/Tokyo", call_number="+81356781234")
    b = build_tenant(database, op, number=54321, country="US", currency="USD",
                     timezone="America/New_York")
    return World(operator_key=op, a=a, b=b)


@pytest.fixture
def world(client: TestClient, database: Database) -> World:
    """Built by the services once per process, restored from its rows for later tests
    (``tests.template``)."""
    return restored(database, "world", lambda: build_world(database))
