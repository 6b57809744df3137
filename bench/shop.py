"""The checkout benchmark's shop: a merchant with a points program, stores, tills with API
keys, and members with a points history, loaded in bulk.

The merchant, its program, stores and tills are made through the services, like real data.
Members and their history are written as rows (PostgreSQL ``COPY``, SQLite
``executemany``), because a million enrolments through the services would take hours.
The rows follow the ledger's rules exactly, so ``patron.ledger.service.check_invariants``
holds on the result (the smoke test checks it):

- per member: the member, a membership, a ``member_points`` account and, with the default
  10 postings per member, 5 journal entries: an opening balance (an ``adjust`` entry, as a
  migration from a previous system would create, against ``adjustments:<merchant>``;
  it does not count for tiers), 2 purchase earns in the last year (each a lot expiring
  24 months later), the coalition miles of those purchases (a ``member_miles`` account
  credited from ``coalition_pool``) and 1 burn that draws from the lots in the ledger's
  order (``ledger.rules.consumption_plan``, with its ``point_lot_draws``);
- each member account's balance is the sum of its postings and equals what its lots hold;
  the merchant's liability and adjustments accounts and the coalition pool mirror them;
- member stats and store visits consistent with the earns (the checkout upserts them).
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from sqlalchemy import text

from patron.coalition.schemas import RatesWrite, RateWrite
from patron.coalition.service import put_rates
from patron.db import Database
from patron.identity.numbers import format_member_number
from patron.ledger import service as ledger
from patron.ledger.rules import LotView, consumption_plan
from patron.programs import rules as program_rules
from patron.programs.schemas import ProgramWrite, TierWrite
from patron.programs.service import put_program, validated_rules
from patron.tenancy.models import TerminalKind
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import SYSTEM, create_merchant, create_store, create_terminal

MERCHANT_NUMBER = 10001
CURRENCY = "JPY"
TIMEZONE = "Asia/Tokyo"
OPENING_POINTS = 20_000
# The coalition's rate for the shop's currency: 1 mile per 100 yen, a mile worth 1 yen.
MILES_RATE = RateWrite(currency=CURRENCY, spend_per_mile=100, mile_value_milli=1_000)
HISTORY_DAYS = 360
BATCH_MEMBERS = 10_000

PROGRAM = ProgramWrite(
    earn_points=1, earn_per_amount=100, point_value_minor=1, min_burn=100, expiry_months=24,
    category_multipliers_bp={"coffee": 20_000, "bakery": 15_000},
    excluded_categories=["tobacco", "gift card"],
    tiers=[TierWrite(name="Member", threshold_points=0),
           TierWrite(name="Silver", threshold_points=5_000, earn_multiplier_bp=12_500),
           TierWrite(name="Gold", threshold_points=20_000, earn_multiplier_bp=15_000)])


@dataclass(frozen=True)
class Till:
    terminal_id: uuid.UUID
    store_id: uuid.UUID
    key: str


@dataclass(frozen=True)
class Shop:
    merchant_id: uuid.UUID
    merchant_number: int
    currency: str
    tills: tuple[Till, ...]
    # A till of its own for the raw baseline, so its receipt numbers never meet the HTTP ones.
    raw_till: Till

    def barcode(self, customer_no: int) -> str:
        return format_member_number(self.merchant_number, customer_no)


@dataclass
class LoadReport:
    members: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    index_seconds: float = 0.0  # part of ``seconds``
    analyze_seconds: float = 0.0

    @property
    def postings(self) -> int:
        return self.rows.get("postings", 0)

    def summary(self) -> str:
        total = sum(self.rows.values())
        counts = ", ".join(f"{self.rows.get(name, 0):,} {name}" for name in
                           ("journal_entries", "postings", "point_lots", "point_lot_draws"))
        line = (f"{self.members:,} members, {counts}: {total:,} rows in {self.seconds:.1f} s "
                f"({total / max(self.seconds, 1e-9):,.0f} rows/s)")
        if self.index_seconds:
            line += f" (of which rebuilding indexes {self.index_seconds:.1f} s)"
        if self.analyze_seconds:
            line += f"; VACUUM ANALYZE {self.analyze_seconds:.1f} s"
        return line


# --- the shop, through the services -----------------------------------------------------

def build_shop(database: Database, *, stores: int, tills_per_store: int) -> Shop:
    """The merchant, its program, ``stores`` stores with ``tills_per_store`` POS tills each
    (their API keys), plus the raw baseline's till; the merchant's counter accounts; and
    the coalition's miles rate for its currency (so identified purchases earn miles)."""
    tills: list[Till] = []
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=MERCHANT_NUMBER, name="Bench Market", currency=CURRENCY,
            timezone=TIMEZONE, country="JP"))
        put_program(session, actor=SYSTEM, merchant_id=merchant.id, data=PROGRAM)
        for store_no in range(1, stores + 2):
            raw = store_no == stores + 1
            store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                                 data=StoreCreate(code="raw" if raw else f"s{store_no:03d}",
                                                  name=f"Bench Market {store_no}"))
            for till_no in range(1, (1 if raw else tills_per_store) + 1):
                terminal, key = create_terminal(
                    session, actor=SYSTEM, store_id=store.id,
                    data=TerminalCreate(code=f"pos-{till_no}", kind=TerminalKind.pos))
                tills.append(Till(terminal_id=terminal.id, store_id=store.id, key=key))
        ledger.liability_account(session, merchant_id=merchant.id)
        ledger.adjustments_account(session, merchant_id=merchant.id)
        put_rates(session, actor=SYSTEM, data=RatesWrite(rates=[MILES_RATE]))
        ledger.coalition_pool_account(session)
        merchant_id = merchant.id
    return Shop(merchant_id=merchant_id, merchant_number=MERCHANT_NUMBER, currency=CURRENCY,
                tills=tuple(tills[:-1]), raw_till=tills[-1])


# --- members and their history, as rows --------------------------------------------------

# Columns written per table; every other column takes its server default (or NULL).
COLUMNS: dict[str, tuple[str, ...]] = {
    "members": ("id", "merchant_id", "enrolled_store_id", "customer_no", "member_number",
                "status", "birth_year", "gender", "language", "pin_failures", "created_at",
                "updated_at"),
    "memberships": ("id", "member_id", "merchant_id", "joined_at", "source"),
    "ledger_accounts": ("id", "key", "kind", "unit", "merchant_id", "member_id", "balance",
                        "created_at"),
    "journal_entries": ("id", "kind", "merchant_id", "member_id", "source", "reason",
                        "idempotency_key", "occurred_at", "created_at"),
    "postings": ("id", "entry_id", "account_id", "merchant_id", "amount", "unit"),
    "point_lots": ("id", "account_id", "merchant_id", "member_id", "entry_id", "amount",
                   "remaining", "expires_at", "created_at"),
    "point_lot_draws": ("id", "lot_id", "entry_id", "merchant_id", "amount"),
    "member_stats": ("member_id", "merchant_id", "first_purchase_at", "last_purchase_at",
                     "purchase_count", "spend_minor", "first_spend_minor"),
    "member_store_visits": ("member_id", "merchant_id", "store_id", "visit_count",
                            "last_visit_at"),
    "member_category_counts": ("member_id", "merchant_id", "category", "purchase_count",
                               "quantity"),
}
# Parents before children, so that foreign keys hold row by row when they are checked.
TABLE_ORDER = tuple(COLUMNS)
SERIAL_TABLES = ("postings", "point_lots", "point_lot_draws")

Rows = dict[str, list[tuple[Any, ...]]]


def uuid_hex(rng: random.Random) -> str:
    """A random UUID as 32 hex digits: PostgreSQL reads it as a uuid, and it is exactly how
    SQLAlchemy stores a UUID on SQLite."""
    return f"{rng.getrandbits(128):032x}"


def time_text(moment: datetime, *, postgres: bool) -> str:
    """A UTC instant as each backend stores it (SQLAlchemy keeps naive UTC text on SQLite)."""
    utc = moment.astimezone(UTC)
    if postgres:
        return utc.isoformat(sep=" ")
    return utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


@dataclass
class _Counters:
    posting_id: int
    lot_id: int
    draw_id: int
    liability: int = 0  # sum of the liability postings written so far
    adjustments: int = 0
    pool: int = 0  # sum of the coalition pool's postings


class HistoryWriter:
    """Makes the rows of members ``first``…``last`` (customer numbers) and their history."""

    def __init__(self, shop: Shop, *, postings_per_member: int, postgres: bool, seed: int,
                 now: datetime, counters: _Counters, adjustments_account: str,
                 liability_account: str, pool_account: str) -> None:
        if postings_per_member < 2 or postings_per_member % 2:
            raise ValueError("postings per member must be an even number, 2 or more")
        self.shop = shop
        self.adjustments_account = adjustments_account
        self.liability_account = liability_account
        self.pool_account = pool_account
        self.entries_per_member = postings_per_member // 2
        self.postgres = postgres
        self.rng = random.Random(seed)
        self.counters = counters
        self.merchant = shop.merchant_id.hex
        self.stores = sorted({till.store_id.hex for till in shop.tills})
        self.view = validated_rules(PROGRAM)
        # One timestamp per hour of the last HISTORY_DAYS days, with its lots' expiry.
        self.hours = [now - timedelta(hours=hour) for hour in range(HISTORY_DAYS * 24, 0, -1)]
        self.hour_text = [time_text(moment, postgres=postgres) for moment in self.hours]
        self.expiry: list[datetime | None] = [
            program_rules.points_expire_at(self.view, earned_at=moment, timezone=TIMEZONE)
            for moment in self.hours]
        self.expiry_text = [None if moment is None else time_text(moment, postgres=postgres)
                            for moment in self.expiry]
        self.opened_at = time_text(now - timedelta(days=HISTORY_DAYS + 40), postgres=postgres)

    def rows(self, first: int, last: int) -> Rows:
        out: Rows = {name: [] for name in TABLE_ORDER}
        for customer_no in range(first, last + 1):
            self._member(customer_no, out)
        return out

    def _member(self, customer_no: int, out: Rows) -> None:
        rng, merchant, counters = self.rng, self.merchant, self.counters
        member, account = uuid_hex(rng), uuid_hex(rng)
        number = format_member_number(self.shop.merchant_number, customer_no)
        opened = self.opened_at
        out["members"].append((
            member, merchant, None, customer_no, number, "active",
            rng.randint(1950, 2006) if rng.random() < 0.6 else None,
            rng.choice(("female", "male", "other", "undisclosed")) if rng.random() < 0.5
            else None, "ja", 0, opened, opened))
        out["memberships"].append((uuid_hex(rng), member, merchant, opened, "bench"))

        lots: list[LotView] = []
        lot_rows: dict[int, list[Any]] = {}
        balance = 0
        # The opening balance, then earns, then (from 3 entries on) one burn and (from 4
        # on) the miles of the member's purchases.
        burns = 1 if self.entries_per_member >= 3 else 0
        miles = 1 if self.entries_per_member >= 4 else 0
        earns = self.entries_per_member - 1 - burns - miles
        hours = sorted(rng.randrange(len(self.hours)) for _ in range(earns + burns))

        def entry(kind: str, index: int, at: str, source: str, reason: str,
                  amount: int, counter: str, *, unit: str = "points",
                  to: str = account) -> str:
            entry_id = uuid_hex(rng)
            out["journal_entries"].append((
                entry_id, kind, merchant, member, source, reason,
                f"bench:{customer_no}:{index}", at, at))
            for account_id, posted in ((to, amount), (counter, -amount)):
                counters.posting_id += 1
                out["postings"].append((counters.posting_id, entry_id, account_id, merchant,
                                        posted, unit))
            return entry_id

        def lot(entry_id: str, amount: int, expires: datetime | None,
                expires_text: str | None, at: str) -> None:
            counters.lot_id += 1
            lots.append(LotView(id=counters.lot_id, remaining=amount, expires_at=expires))
            lot_rows[counters.lot_id] = [counters.lot_id, account, merchant, member, entry_id,
                                         amount, amount, expires_text, at]

        adjustments, liability = self.adjustments_account, self.liability_account
        opening = entry("adjust", 0, opened, "bench:migration", "opening balance",
                        OPENING_POINTS, adjustments)
        lot(opening, OPENING_POINTS, None, None, opened)
        balance += OPENING_POINTS
        counters.adjustments -= OPENING_POINTS
        spend = 0
        for index, hour in enumerate(hours[:earns], start=1):
            points = rng.randint(20, 3_000)
            at = self.hour_text[hour]
            earned = entry("earn", index, at, "pos:history", "purchase", points, liability)
            lot(earned, points, self.expiry[hour], self.expiry_text[hour], at)
            balance += points
            counters.liability -= points
            spend += points * 100
        for index, hour in enumerate(hours[earns:], start=earns + 1):
            points = rng.randint(100, 1_500)
            at = self.hour_text[hour]
            burned = entry("burn", index, at, "pos:history", "purchase", -points, liability)
            for draw in consumption_plan(lots, points):
                counters.draw_id += 1
                out["point_lot_draws"].append((counters.draw_id, draw.lot_id, burned,
                                               merchant, draw.amount))
                lot_rows[draw.lot_id][6] -= draw.amount
            balance -= points
            counters.liability += points
        if miles:
            miles_account, earned_miles = uuid_hex(rng), spend // 100
            at = self.hour_text[hours[earns - 1]] if earns else opened
            entry("earn", self.entries_per_member, at, "pos:history", "purchases",
                  earned_miles, self.pool_account, unit="miles", to=miles_account)
            counters.pool -= earned_miles
            out["ledger_accounts"].append((
                miles_account, f"member_miles:{uuid.UUID(member)}", "member_miles", "miles",
                None, member, earned_miles, opened))
        out["point_lots"].extend(tuple(row) for row in lot_rows.values())
        out["ledger_accounts"].append((
            account, f"member_points:{self.shop.merchant_id}:{uuid.UUID(member)}",
            "member_points", "points", merchant, member, balance, opened))
        if earns:
            first, last = self.hour_text[hours[0]], self.hour_text[hours[earns - 1]]
            out["member_stats"].append((member, merchant, first, last, earns, spend,
                                        spend // earns))
            out["member_store_visits"].append((member, merchant, rng.choice(self.stores),
                                               earns, last))
            out["member_category_counts"].append((member, merchant, "bakery", earns,
                                                  earns * 2))


def load_members(database: Database, shop: Shop, *, members: int, postings_per_member: int,
                 seed: int, console: Console | None = None) -> LoadReport:
    """Write ``members`` members with their history; a progress bar while it runs."""
    postgres = database.url.startswith("postgresql")
    report = LoadReport(members=members, rows={name: 0 for name in TABLE_ORDER})
    started = time.perf_counter()
    with database.engine.connect() as conn:
        accounts: dict[str, Any] = dict(conn.execute(text(
            "SELECT kind, id FROM ledger_accounts WHERE (merchant_id = :merchant AND "
            "kind IN ('adjustments', 'merchant_liability')) OR key = 'coalition_pool'"),
            {"merchant": shop.merchant_id.hex if not postgres else shop.merchant_id}).all())
        starts = [int(conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {name}"))
                      .scalar_one()) for name in SERIAL_TABLES]
    counters = _Counters(posting_id=starts[0], lot_id=starts[1], draw_id=starts[2])
    writer = HistoryWriter(shop, postings_per_member=postings_per_member, postgres=postgres,
                           seed=seed, now=datetime.now(UTC), counters=counters,
                           adjustments_account=_hex(accounts["adjustments"]),
                           liability_account=_hex(accounts["merchant_liability"]),
                           pool_account=_hex(accounts["coalition_pool"]))
    sink = _PostgresSink(database.url) if postgres else _SqliteSink(database.url)
    try:
        with _progress(console) as progress:
            task = progress.add_task("loading members", total=members)
            for first, last in _batches(members):
                rows = writer.rows(first, last)
                sink.write(rows)
                for name, batch in rows.items():
                    report.rows[name] += len(batch)
                progress.update(task, advance=last - first + 1)
        sink.finish(shop, counters, next_customer_no=members + 1)
    finally:
        sink.close()
    report.seconds = time.perf_counter() - started
    report.index_seconds = sink.index_seconds
    if postgres:
        report.analyze_seconds = _vacuum_analyze(database.url)
    return report


def _hex(value: Any) -> str:
    return value.hex if isinstance(value, uuid.UUID) else str(value).replace("-", "")


def _batches(members: int) -> Iterator[tuple[int, int]]:
    for first in range(1, members + 1, BATCH_MEMBERS):
        yield first, min(first + BATCH_MEMBERS - 1, members)


def _progress(console: Console | None) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                    console=console, transient=False)


def libpq_url(url: str) -> str:
    """A SQLAlchemy ``postgresql+psycopg://`` URL as libpq takes it."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> str:
    return url.split("///", 1)[1]


class _PostgresSink:
    """COPY into the tables with their secondary indexes dropped, then rebuild them: a
    sorted index build is far faster than a million random insertions into each index.
    Primary keys and unique constraints stay in place all along."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq_url(url))
        with self.conn.cursor() as cursor:
            try:
                # The rows are made consistent above; skipping the per-row foreign-key
                # triggers makes COPY several times faster (needs a superuser).
                cursor.execute("SET session_replication_role = replica")
            except psycopg.Error:
                self.conn.rollback()
        self.conn.commit()
        with self.conn.cursor() as cursor:
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes i WHERE schemaname = "
                "current_schema() AND tablename = ANY(%s) AND NOT EXISTS (SELECT 1 FROM "
                "pg_constraint c WHERE c.conname = i.indexname) ORDER BY indexname",
                (list(TABLE_ORDER),))
            self.indexes: list[tuple[str, str]] = [(name, definition)
                                                   for name, definition in cursor.fetchall()]
            for name, _ in self.indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        self.conn.commit()
        self.index_seconds = 0.0

    def write(self, rows: Rows) -> None:
        with self.conn.cursor() as cursor:
            for name in TABLE_ORDER:
                if not rows[name]:
                    continue
                columns = ", ".join(COLUMNS[name])
                with cursor.copy(f"COPY {name} ({columns}) FROM STDIN") as copy:
                    for row in rows[name]:
                        copy.write_row(row)
        self.conn.commit()

    def finish(self, shop: Shop, counters: _Counters, *, next_customer_no: int) -> None:
        with self.conn.cursor() as cursor:
            _finish(cursor, shop.merchant_id, counters, next_customer_no, "%s",
                    shop.merchant_id)
            for name in SERIAL_TABLES:
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                               f"GREATEST((SELECT MAX(id) FROM {name}), 1))")
        self.conn.commit()
        started = time.perf_counter()
        self.rebuild_indexes()
        self.index_seconds = time.perf_counter() - started

    def rebuild_indexes(self) -> None:
        with self.conn.cursor() as cursor:
            cursor.execute("SET maintenance_work_mem = '256MB'")
            while self.indexes:
                _, definition = self.indexes[0]
                cursor.execute(definition)
                self.indexes.pop(0)
        self.conn.commit()

    def close(self) -> None:
        if self.indexes and not self.conn.closed:
            # A failed load still leaves the schema whole (the database is dropped anyway).
            self.conn.rollback()
            self.rebuild_indexes()
        self.conn.close()


class _SqliteSink:
    index_seconds = 0.0

    def __init__(self, url: str) -> None:
        self.conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.execute("PRAGMA busy_timeout=30000")

    def write(self, rows: Rows) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        for name in TABLE_ORDER:
            if rows[name]:
                columns = COLUMNS[name]
                marks = ", ".join("?" for _ in columns)
                self.conn.executemany(
                    f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({marks})", rows[name])
        self.conn.execute("COMMIT")

    def finish(self, shop: Shop, counters: _Counters, *, next_customer_no: int) -> None:
        cursor = self.conn.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        _finish(cursor, shop.merchant_id, counters, next_customer_no, "?",
                shop.merchant_id.hex)
        cursor.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()


def _finish(cursor: Any, merchant_id: uuid.UUID, counters: _Counters, next_customer_no: int,
            mark: str, merchant_param: Any) -> None:
    """The counter accounts (and the coalition pool) take the mirror of what the members
    were given, and the next enrolment gets the next customer number."""
    for key, amount in ((f"merchant_liability:{merchant_id}", counters.liability),
                        (f"adjustments:{merchant_id}", counters.adjustments),
                        ("coalition_pool", counters.pool)):
        cursor.execute(f"UPDATE ledger_accounts SET balance = balance + {mark} "
                       f"WHERE key = {mark}", (amount, key))
    cursor.execute(f"UPDATE merchants SET next_customer_no = {mark} WHERE id = {mark}",
                   (next_customer_no, merchant_param))


def _vacuum_analyze(url: str) -> float:
    """What autovacuum would have done to a database that grew to this size."""
    started = time.perf_counter()
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def member_numbers(shop: Shop, members: int) -> Sequence[str]:
    return [shop.barcode(customer_no) for customer_no in range(1, members + 1)]
