"""Migration 0026 (the consent ledger) on a database with consents in it, up and down, on
the suite's backend: a database of its own (a SQLite file, or a PostgreSQL database beside
the worker's), since the suite's is at the head."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    create_engine,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from patron.cli.main import _migrations_dir
from patron.db import UTCDateTime
from patron.members.models import consent_scope
from tests.conftest import (
    BASE_DATABASE_URL,
    IS_POSTGRES,
    TEST_DATABASE_URL,
    _create_postgres_database,
)

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

# The tables as revision 0025 has them (the columns written here).
_0025 = MetaData()
MERCHANTS = Table("merchants", _0025, Column("id", Uuid), Column("number", Integer),
                  Column("name", String), Column("currency", String),
                  Column("timezone", String), Column("country", String),
                  Column("next_customer_no", Integer), Column("created_at", UTCDateTime))
MEMBERS = Table("members", _0025, Column("id", Uuid), Column("merchant_id", Uuid),
                Column("customer_no", Integer), Column("member_number", String),
                Column("status", String), Column("consent_sms", Boolean),
                Column("consent_email", Boolean), Column("consent_push", Boolean),
                Column("pin_failures", Integer), Column("created_at", UTCDateTime),
                Column("updated_at", UTCDateTime), Column("withdrawn_at", UTCDateTime),
                Column("erased_at", UTCDateTime))
EVENTS = Table("consent_events", _0025, Column("id", Integer, primary_key=True),
               Column("member_id", Uuid), Column("merchant_id", Uuid),
               Column("channel", String), Column("granted", Boolean), Column("source", String),
               Column("occurred_at", UTCDateTime))
# And as 0026 has them.
_0026 = MetaData()
EVENTS_26 = Table("consent_events", _0026, Column("id", Integer, primary_key=True),
                  Column("member_id", Uuid), Column("merchant_id", Uuid),
                  Column("channel", String), Column("purpose", String),
                  Column("granted", Boolean), Column("source", String),
                  Column("policy_version", String), Column("evidence", String),
                  Column("occurred_at", UTCDateTime))
STATES = Table("consent_states", _0026, Column("member_id", Uuid), Column("scope", String),
               Column("channel", String), Column("purpose", String),
               Column("merchant_id", Uuid), Column("granted", Boolean),
               Column("source", String), Column("policy_version", String),
               Column("since", UTCDateTime), Column("event_id", Integer))


@pytest.fixture
def migration_url() -> Iterator[str]:
    if not IS_POSTGRES:
        with tempfile.TemporaryDirectory(prefix="patron-migration-") as folder:
            yield f"sqlite:///{os.path.join(folder, 'migration.db')}"
        return
    parsed = make_url(TEST_DATABASE_URL)
    url = parsed.set(database=f"{parsed.database}_migration").render_as_string(
        hide_password=False)
    _create_postgres_database(BASE_DATABASE_URL, url)
    engine = create_engine(url, poolclass=NullPool)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    yield url


def _migrate(url: str, direction: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.attributes["database_url"] = url
    getattr(command, direction)(config, revision)


def _rows(engine: Engine, statement: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(statement)]


def test_0026_moves_the_consents_into_the_ledger_and_back(migration_url: str) -> None:
    _migrate(migration_url, "upgrade", "0025")
    engine = create_engine(migration_url, poolclass=NullPool)
    a, b = uuid.uuid4(), uuid.uuid4()
    kept, erased = uuid.uuid4(), uuid.uuid4()
    try:
        with engine.begin() as connection:
            connection.execute(MERCHANTS.insert(), [
                {"id": merchant_id, "number": number, "name": f"M{number}", "currency": "JPY",
                 "timezone": "Asia/Tokyo", "country": "JP", "next_customer_no": 3,
                 "created_at": T0} for merchant_id, number in ((a, 12345), (b, 54321))])
            connection.execute(MEMBERS.insert(), [
                {"id": kept, "merchant_id": a, "customer_no": 1,
                 "member_number": "12345000000101", "status": "active", "consent_sms": False,
                 "consent_email": True, "consent_push": True, "pin_failures": 0,
                 "created_at": T0, "updated_at": T0, "withdrawn_at": None,
                 "erased_at": None},
                {"id": erased, "merchant_id": a, "customer_no": 2,
                 "member_number": "12345000000202", "status": "erased", "consent_sms": False,
                 "consent_email": False, "consent_push": False, "pin_failures": 0,
                 "created_at": T0, "updated_at": T0 + timedelta(days=9),
                 "withdrawn_at": T0 + timedelta(days=9),
                 "erased_at": T0 + timedelta(days=9)}])
            connection.execute(EVENTS.insert(), [
                {"member_id": member_id, "merchant_id": merchant_id, "channel": channel,
                 "granted": granted, "source": source,
                 "occurred_at": T0 + timedelta(days=day)}
                for member_id, merchant_id, channel, granted, source, day in (
                    (kept, a, "sms", True, "api", 0),        # 1
                    (kept, a, "email", True, "api", 0),      # 2
                    (erased, a, "sms", True, "api", 0),      # 3
                    (kept, a, "sms", False, "web", 1),       # 4: A's SMS, withdrawn
                    (kept, b, "push", True, "pos", 2),       # 5
                    (erased, a, "email", False, "api", 3))]) # 6

        _migrate(migration_url, "upgrade", "0026")
        # The rows so far are marketing consents for their merchant; the erased member's
        # grant still standing is withdrawn, when they left.
        assert _rows(engine, select(
            EVENTS_26.c.id, EVENTS_26.c.member_id, EVENTS_26.c.merchant_id,
            EVENTS_26.c.channel, EVENTS_26.c.purpose, EVENTS_26.c.granted,
            EVENTS_26.c.source, EVENTS_26.c.policy_version, EVENTS_26.c.evidence,
            EVENTS_26.c.occurred_at).order_by(EVENTS_26.c.id)) == [
            (1, kept, a, "sms", "marketing", True, "api", None, None, T0),
            (2, kept, a, "email", "marketing", True, "api", None, None, T0),
            (3, erased, a, "sms", "marketing", True, "api", None, None, T0),
            (4, kept, a, "sms", "marketing", False, "web", None, None, T0 + timedelta(days=1)),
            (5, kept, b, "push", "marketing", True, "pos", None, None, T0 + timedelta(days=2)),
            (6, erased, a, "email", "marketing", False, "api", None, None,
             T0 + timedelta(days=3)),
            (7, erased, a, "sms", "marketing", False, "erasure", None, None,
             T0 + timedelta(days=9))]
        # The state of each key is its latest row, its scope key as the application writes it.
        assert sorted(_rows(engine, select(STATES)), key=lambda row: row[-1]) == [
            (kept, consent_scope(a), "email", "marketing", a, True, "api", None, T0, 2),
            (kept, consent_scope(a), "sms", "marketing", a, False, "web", None,
             T0 + timedelta(days=1), 4),
            (kept, consent_scope(b), "push", "marketing", b, True, "pos", None,
             T0 + timedelta(days=2), 5),
            (erased, consent_scope(a), "email", "marketing", a, False, "api", None,
             T0 + timedelta(days=3), 6),
            (erased, consent_scope(a), "sms", "marketing", a, False, "erasure", None,
             T0 + timedelta(days=9), 7)]

        # Rows the old schema cannot hold: the coalition's, and a transactional one.
        with engine.begin() as connection:
            connection.execute(EVENTS_26.insert(), [
                {"member_id": kept, "merchant_id": None, "channel": "sms",
                 "purpose": "marketing", "granted": True, "source": "wallet",
                 "policy_version": "2026-01", "evidence": "203.0.113.7",
                 "occurred_at": T0 + timedelta(days=5)},
                {"member_id": kept, "merchant_id": a, "channel": "email",
                 "purpose": "transactional", "granted": False, "source": "api",
                 "policy_version": None, "evidence": None,
                 "occurred_at": T0 + timedelta(days=6)}])
            connection.execute(STATES.delete())  # their state rows are dropped anyway

        _migrate(migration_url, "downgrade", "0025")
        # The flags are back as the last marketing change by anyone; the coalition's row is
        # the enrolling merchant's again (as the operator's were before), the transactional
        # one is gone.
        assert _rows(engine, select(MEMBERS.c.id, MEMBERS.c.consent_sms,
                                    MEMBERS.c.consent_email, MEMBERS.c.consent_push)
                     .order_by(MEMBERS.c.customer_no)) == [(kept, True, True, True),
                                                           (erased, False, False, False)]
        assert _rows(engine, select(EVENTS.c.id, EVENTS.c.merchant_id, EVENTS.c.channel,
                                    EVENTS.c.granted, EVENTS.c.source)
                     .where(EVENTS.c.id > 6).order_by(EVENTS.c.id)) == [
            (7, a, "sms", False, "erasure"), (8, a, "sms", True, "wallet")]
        with engine.connect() as connection:
            tables = engine.dialect.get_table_names(connection)
        assert "consent_states" not in tables

        # And up again.
        _migrate(migration_url, "upgrade", "0026")
        assert len(_rows(engine, select(STATES))) == 5
    finally:
        engine.dispose()
