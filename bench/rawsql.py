"""The raw baseline: the database writes of one checkout as plain SQL, from one process.

``write_checkout`` issues, in the product's order and in one transaction, the writes that
``POST /v1/pos/transactions`` causes (captured from a real commit with SQLAlchemy's
``before_cursor_execute``; ``python -m bench checkout --show-statements`` prints both
side by side, and the smoke test fails when they drift apart):

- the receipt claim (``pos_transactions`` insert) and, at the end, its figures (update);
- per ledger entry (points burn, points earn, coalition miles earn): the entry, its two
  postings, the two conditional balance updates (the member's guarded for a burn), and
  the lot it creates or the lots it draws (conditional updates plus ``point_lot_draws``);
- the member stats upserts (``member_stats``, one multi-row statement for the categories,
  ``member_store_visits``);
- the lines and the outbox events.

Only two reads are kept, because the writes cannot be made without them: the member by
the scanned barcode, and the member's lots before a burn. Everything else the product
reads (the till, the program, the tier, idempotency look-ups, savepoints) is left out:
the baseline is what a hand-written implementation could not avoid. Pricing (earn
points, discount shares) is done before the clock starts.

PostgreSQL goes through psycopg (statements are prepared after a few runs, as psycopg
does by default), SQLite through the standard library's ``sqlite3`` with the product's
settings (WAL, ``synchronous=FULL``, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Json

from bench.baskets import Kind, Purchase, PurchaseMaker
from bench.diagnostics import cpu_seconds
from bench.shop import MILES_RATE, PROGRAM, Shop, libpq_url, sqlite_path, time_text
from patron.coalition import rules as coalition_rules
from patron.ledger.rules import LotView, consumption_plan, split_proportionally
from patron.programs import rules
from patron.programs.service import validated_rules

VIEW = validated_rules(PROGRAM)
MILES = coalition_rules.Rate(currency=MILES_RATE.currency,
                             spend_per_mile=MILES_RATE.spend_per_mile,
                             mile_value_milli=MILES_RATE.mile_value_milli)
RAW_CHUNK = 500


@dataclass(frozen=True)
class RawLine:
    line_no: int
    sku: str
    gtin: str | None
    name: str
    category: str
    quantity: int
    unit_price: int
    amount: int
    points_discount: int
    points_earned: int
    points_burned: int
    miles_earned: int


@dataclass(frozen=True)
class RawCheckout:
    """A purchase priced in advance: only the database work is left for the clock."""

    id: uuid.UUID
    kind: Kind
    receipt_no: str
    occurred_at: datetime
    barcode: str | None
    subtotal: int
    points_discount: int
    total: int
    points_burned: int
    points_earned: int
    miles_earned: int
    lines: tuple[RawLine, ...]
    categories: tuple[tuple[str, int], ...]  # normalised category → units, sorted
    expires_at: datetime | None


def price(purchase: Purchase, *, receipt_no: str, barcode: str | None,
          occurred_at: datetime) -> RawCheckout:
    """The same pricing as the product (``pos.service._price``), at the base tier."""
    amounts = [line.amount for line in purchase.basket.lines]
    burn = purchase.points_to_burn
    discount = burn * VIEW.point_value_minor
    shares = _shares(discount, amounts)
    paid = [amount - share for amount, share in zip(amounts, shares, strict=True)]
    total = purchase.basket.subtotal - discount
    if purchase.kind == Kind.anonymous:
        points = [0] * len(amounts)
        earned = miles = 0
    else:
        result = rules.earn_for_basket(VIEW, [
            rules.BasketLine(amount=amount, category=line.product.category)
            for amount, line in zip(paid, purchase.basket.lines, strict=True)])
        points, earned = [line.points for line in result.lines], result.points
        miles = coalition_rules.miles_for_spend(total, MILES)
    burned, line_miles = _shares(burn, amounts), _shares(miles, paid)
    categories: dict[str, int] = {}
    for line in purchase.basket.lines:
        name = rules.normalise_category(line.product.category)
        categories[name] = categories.get(name, 0) + line.quantity
    lines = tuple(RawLine(line_no=index + 1, sku=line.product.sku, gtin=line.product.gtin,
                          name=line.product.name, category=line.product.category,
                          quantity=line.quantity, unit_price=line.product.unit_price,
                          amount=amounts[index], points_discount=shares[index],
                          points_earned=points[index], points_burned=burned[index],
                          miles_earned=line_miles[index])
                  for index, line in enumerate(purchase.basket.lines))
    return RawCheckout(
        id=uuid.uuid4(), kind=purchase.kind, receipt_no=receipt_no, occurred_at=occurred_at,
        barcode=barcode, subtotal=purchase.basket.subtotal, points_discount=discount,
        total=total, points_burned=burn, points_earned=earned, miles_earned=miles,
        lines=lines,
        categories=tuple(sorted(categories.items())),
        expires_at=rules.points_expire_at(VIEW, earned_at=occurred_at, timezone="Asia/Tokyo"))


def _shares(total: int, weights: list[int]) -> list[int]:
    if total == 0:
        return [0] * len(weights)
    return split_proportionally(total, weights if any(weights) else [1] * len(weights))


# --- the connection: one per backend, same statements -----------------------------------

class Cursor(Protocol):
    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class RawDatabase(Protocol):
    """What ``write_checkout`` needs: statements with ``%(name)s`` parameters."""

    def begin(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def execute(self, sql: str, params: dict[str, Any]) -> Cursor: ...

    def executemany(self, sql: str, rows: Sequence[dict[str, Any]]) -> None: ...

    def id(self, value: uuid.UUID | None) -> Any: ...

    def at(self, value: datetime | None) -> Any: ...

    def json(self, value: dict[str, Any]) -> Any: ...

    def backend_pid(self) -> int | None: ...

    def close(self) -> None: ...


class PostgresRaw:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(libpq_url(url))

    def begin(self) -> None:
        pass  # psycopg opens the transaction with the first statement

    def commit(self) -> None:
        self.conn.commit()

    def rollback(self) -> None:
        self.conn.rollback()

    def execute(self, sql: str, params: dict[str, Any]) -> Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        with self.conn.cursor() as cursor:
            cursor.executemany(sql, rows)

    def id(self, value: uuid.UUID | None) -> Any:
        return value

    def at(self, value: datetime | None) -> Any:
        return value

    def json(self, value: dict[str, Any]) -> Any:
        return Json(value)

    def backend_pid(self) -> int | None:
        return int(self.conn.info.backend_pid)

    def close(self) -> None:
        self.conn.close()


_NAMED = re.compile(r"%\((\w+)\)s")


class SqliteRaw:
    """The product's SQLite settings; UUIDs and times stored as SQLAlchemy stores them."""

    def __init__(self, url: str) -> None:
        self.conn = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "busy_timeout=30000"):
            self.conn.execute(f"PRAGMA {pragma}")
        self._sql: dict[str, str] = {}

    def _convert(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            converted = self._sql[sql] = _NAMED.sub(r":\1", sql)
        return converted

    def begin(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def execute(self, sql: str, params: dict[str, Any]) -> Cursor:
        return self.conn.execute(self._convert(sql), params)

    def executemany(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        self.conn.executemany(self._convert(sql), rows)

    def id(self, value: uuid.UUID | None) -> Any:
        return None if value is None else value.hex

    def at(self, value: datetime | None) -> Any:
        return None if value is None else time_text(value, postgres=False)

    def json(self, value: dict[str, Any]) -> Any:
        return json.dumps(value)

    def backend_pid(self) -> int | None:
        return None  # SQLite works inside this process

    def close(self) -> None:
        self.conn.close()


def connect(url: str) -> RawDatabase:
    if url.startswith("postgresql"):
        return PostgresRaw(url)
    return SqliteRaw(url)


# --- the statements ---------------------------------------------------------------------

CLAIM = """INSERT INTO pos_transactions (id, merchant_id, store_id, terminal_id, receipt_no,
    channel, currency, subtotal, points_discount, total, points_earned, points_burned,
    payment_method, payment_amount, occurred_at, created_at, request_hash)
    VALUES (%(id)s, %(merchant)s, %(store)s, %(terminal)s, %(receipt_no)s, 'store',
    %(currency)s, 0, 0, 0, 0, 0, 'card', %(paid)s, %(occurred_at)s, %(now)s, %(hash)s)"""
MEMBER = "SELECT id, status FROM members WHERE member_number = %(barcode)s"
ENTRY = """INSERT INTO journal_entries (id, kind, merchant_id, member_id, source, reason,
    idempotency_key, occurred_at, created_at) VALUES (%(id)s, %(kind)s, %(merchant)s,
    %(member)s, %(source)s, %(reason)s, %(key)s, %(occurred_at)s, %(now)s)"""
DEBIT_MEMBER = """UPDATE ledger_accounts SET balance = balance - %(points)s
    WHERE key = %(key)s AND balance - %(points)s >= 0 RETURNING id, balance"""
CREDIT = "UPDATE ledger_accounts SET balance = balance + %(points)s WHERE key = %(key)s " \
         "RETURNING id, balance"
POSTING = """INSERT INTO postings (entry_id, account_id, merchant_id, amount, unit)
    VALUES (%(entry)s, %(account)s, %(merchant)s, %(amount)s, %(unit)s)"""
MILES_ACCOUNT = """INSERT INTO ledger_accounts (id, key, kind, unit, member_id, balance,
    created_at) VALUES (%(id)s, %(key)s, 'member_miles', 'miles', %(member)s, %(points)s,
    %(now)s) RETURNING id, balance"""
LOTS = """SELECT id, remaining, expires_at FROM point_lots
    WHERE account_id = %(account)s AND remaining > 0"""
DRAW_LOT = """UPDATE point_lots SET remaining = remaining - %(amount)s
    WHERE id = %(lot)s AND remaining >= %(amount)s"""
DRAW = """INSERT INTO point_lot_draws (lot_id, entry_id, merchant_id, amount)
    VALUES (%(lot)s, %(entry)s, %(merchant)s, %(amount)s)"""
LOT = """INSERT INTO point_lots (account_id, merchant_id, member_id, entry_id, amount,
    remaining, expires_at, created_at) VALUES (%(account)s, %(merchant)s, %(member)s,
    %(entry)s, %(points)s, %(points)s, %(expires_at)s, %(now)s)"""
STATS = """INSERT INTO member_stats (member_id, merchant_id, first_purchase_at,
    last_purchase_at, purchase_count, spend_minor, first_spend_minor) VALUES (%(member)s,
    %(merchant)s, %(occurred_at)s, %(occurred_at)s, 1, %(spend)s, %(spend)s)
    ON CONFLICT (member_id, merchant_id) DO UPDATE SET
    first_purchase_at = CASE WHEN excluded.first_purchase_at < member_stats.first_purchase_at
        THEN excluded.first_purchase_at ELSE member_stats.first_purchase_at END,
    first_spend_minor = CASE WHEN excluded.first_purchase_at < member_stats.first_purchase_at
        THEN excluded.first_spend_minor ELSE member_stats.first_spend_minor END,
    last_purchase_at = CASE WHEN excluded.last_purchase_at > member_stats.last_purchase_at
        THEN excluded.last_purchase_at ELSE member_stats.last_purchase_at END,
    purchase_count = member_stats.purchase_count + 1,
    spend_minor = member_stats.spend_minor + excluded.spend_minor"""
# One row per category, sent together (executemany), as the product issues it.
CATEGORY = """INSERT INTO member_category_counts (member_id, merchant_id, category,
    purchase_count, quantity) VALUES (%(member)s, %(merchant)s, %(category)s, 1,
    %(quantity)s) ON CONFLICT (member_id, merchant_id, category)
    DO UPDATE SET purchase_count = member_category_counts.purchase_count + 1,
    quantity = member_category_counts.quantity + excluded.quantity"""
VISIT = """INSERT INTO member_store_visits (member_id, merchant_id, store_id, visit_count,
    last_visit_at) VALUES (%(member)s, %(merchant)s, %(store)s, 1, %(occurred_at)s)
    ON CONFLICT (member_id, store_id) DO UPDATE SET
    visit_count = member_store_visits.visit_count + 1,
    last_visit_at = CASE WHEN excluded.last_visit_at > member_store_visits.last_visit_at
        THEN excluded.last_visit_at ELSE member_store_visits.last_visit_at END"""
# The member's purchase day (store-local: the bench's stores are in Tokyo), as the
# commit's scores.record_purchases writes it.
TOKYO = ZoneInfo("Asia/Tokyo")
PURCHASE_DAY = """INSERT INTO member_purchase_days (merchant_id, member_id, day,
    purchase_count, spend_minor) VALUES (%(merchant)s, %(member)s, %(day)s, 1, %(spend)s)
    ON CONFLICT (merchant_id, member_id, day) DO UPDATE SET
    purchase_count = member_purchase_days.purchase_count + 1,
    spend_minor = member_purchase_days.spend_minor + excluded.spend_minor"""
FIGURES = """UPDATE pos_transactions SET member_id = %(member)s, subtotal = %(subtotal)s,
    points_discount = %(discount)s, total = %(total)s, points_earned = %(earned)s,
    points_burned = %(burned)s, miles_earned = %(miles)s, earn_entry_id = %(earn_entry)s,
    burn_entry_id = %(burn_entry)s, miles_earn_entry_id = %(miles_entry)s,
    response_json = %(response)s WHERE id = %(id)s"""
LINE = """INSERT INTO pos_transaction_lines (transaction_id, line_no, merchant_id, sku, gtin,
    name, category, quantity, unit_price, amount, points_discount, points_earned,
    points_burned, miles_earned) VALUES (%(id)s, %(line_no)s, %(merchant)s, %(sku)s,
    %(gtin)s, %(name)s, %(category)s, %(quantity)s, %(unit_price)s, %(amount)s,
    %(points_discount)s, %(points_earned)s, %(points_burned)s, %(miles_earned)s)"""
EVENT = """INSERT INTO outbox_events (id, type, merchant_id, member_id, payload, occurred_at,
    created_at) VALUES (%(id)s, %(type)s, %(merchant)s, %(member)s, %(payload)s,
    %(occurred_at)s, %(now)s)"""


class RawInsufficientPoints(Exception):
    """The guarded debit found too few points (the product answers 409)."""


@dataclass(frozen=True)
class RawTill:
    merchant_id: uuid.UUID
    store_id: uuid.UUID
    terminal_id: uuid.UUID
    currency: str


def write_checkout(db: RawDatabase, till: RawTill, checkout: RawCheckout) -> None:
    """Every statement one checkout issues, in the product's order, in one transaction."""
    x, i, at = db.execute, db.id, db.at
    now = datetime.now(UTC)
    merchant = i(till.merchant_id)
    common = {"merchant": merchant, "now": at(now), "occurred_at": at(checkout.occurred_at)}
    source, reason = f"pos:{till.terminal_id}", f"purchase {checkout.receipt_no}"
    db.begin()
    try:
        x(CLAIM, {**common, "id": i(checkout.id), "store": i(till.store_id),
                  "terminal": i(till.terminal_id), "receipt_no": checkout.receipt_no,
                  "currency": till.currency, "paid": checkout.total,
                  "hash": checkout.id.hex * 2})
        member_id: uuid.UUID | None = None
        burn_entry: uuid.UUID | None = None
        earn_entry: uuid.UUID | None = None
        miles_entry: uuid.UUID | None = None
        balance: int | None = None
        if checkout.barcode is not None:
            row = x(MEMBER, {"barcode": checkout.barcode}).fetchone()
            member_id = uuid.UUID(str(row[0]))
            member = i(member_id)
            key = f"member_points:{till.merchant_id}:{member_id}"
            liability = f"merchant_liability:{till.merchant_id}"
            entry_common = {**common, "member": member, "source": source, "reason": reason}
            if checkout.points_burned:
                burn_entry = uuid.uuid4()
                points = checkout.points_burned
                x(ENTRY, {**entry_common, "id": i(burn_entry), "kind": "burn",
                          "key": f"pos:{checkout.id}:burn"})
                debited = x(DEBIT_MEMBER, {"points": points, "key": key}).fetchone()
                if debited is None:
                    raise RawInsufficientPoints(checkout.receipt_no)
                account, balance = debited
                counter = x(CREDIT, {"points": points, "key": liability}).fetchone()[0]
                db.executemany(POSTING, [
                    {"entry": i(burn_entry), "account": account, "merchant": merchant,
                     "amount": -points, "unit": "points"},
                    {"entry": i(burn_entry), "account": counter, "merchant": merchant,
                     "amount": points, "unit": "points"}])
                lots = [LotView(id=int(lot), remaining=int(left), expires_at=_aware(expires))
                        for lot, left, expires in x(LOTS, {"account": account}).fetchall()]
                draws = consumption_plan(lots, points)
                for draw in draws:
                    x(DRAW_LOT, {"amount": draw.amount, "lot": draw.lot_id})
                db.executemany(DRAW, [{"lot": draw.lot_id, "entry": i(burn_entry),
                                       "merchant": merchant, "amount": draw.amount}
                                      for draw in draws])
            if checkout.points_earned:
                earn_entry = uuid.uuid4()
                points = checkout.points_earned
                x(ENTRY, {**entry_common, "id": i(earn_entry), "kind": "earn",
                          "key": f"pos:{checkout.id}:earn"})
                account, balance = x(CREDIT, {"points": points, "key": key}).fetchone()
                counter = x(CREDIT, {"points": -points, "key": liability}).fetchone()[0]
                db.executemany(POSTING, [
                    {"entry": i(earn_entry), "account": account, "merchant": merchant,
                     "amount": points, "unit": "points"},
                    {"entry": i(earn_entry), "account": counter, "merchant": merchant,
                     "amount": -points, "unit": "points"}])
                x(LOT, {**entry_common, "account": account, "entry": i(earn_entry),
                        "points": points, "expires_at": at(checkout.expires_at)})
            if checkout.miles_earned:
                miles_entry = uuid.uuid4()
                miles = checkout.miles_earned
                x(ENTRY, {**entry_common, "id": i(miles_entry), "kind": "earn",
                          "key": f"pos:{checkout.id}:miles"})
                credited = x(CREDIT, {"points": miles,
                                      "key": f"member_miles:{member_id}"}).fetchone()
                if credited is None:  # the member's first miles open their account
                    credited = x(MILES_ACCOUNT, {**entry_common, "id": i(uuid.uuid4()),
                                                 "key": f"member_miles:{member_id}",
                                                 "points": miles}).fetchone()
                pool = x(CREDIT, {"points": -miles, "key": "coalition_pool"}).fetchone()[0]
                db.executemany(POSTING, [
                    {"entry": i(miles_entry), "account": credited[0], "merchant": merchant,
                     "amount": miles, "unit": "miles"},
                    {"entry": i(miles_entry), "account": pool, "merchant": merchant,
                     "amount": -miles, "unit": "miles"}])
            x(STATS, {**common, "member": member, "spend": checkout.total})
            if checkout.categories:
                db.executemany(CATEGORY, [
                    {**common, "member": member, "category": category, "quantity": quantity}
                    for category, quantity in sorted(checkout.categories)])
            x(VISIT, {**common, "member": member, "store": i(till.store_id)})
            x(PURCHASE_DAY, {**common, "member": member, "spend": checkout.total,
                             "day": checkout.occurred_at.astimezone(TOKYO).date().isoformat()})
        x(FIGURES, {"id": i(checkout.id), "member": i(member_id),
                    "subtotal": checkout.subtotal, "discount": checkout.points_discount,
                    "total": checkout.total, "earned": checkout.points_earned,
                    "burned": checkout.points_burned, "miles": checkout.miles_earned,
                    "earn_entry": i(earn_entry), "burn_entry": i(burn_entry),
                    "miles_entry": i(miles_entry),
                    "response": _answer(checkout, member_id, balance, now)})
        db.executemany(LINE, [{"id": i(checkout.id), "merchant": merchant, **_line(line)}
                              for line in checkout.lines])
        db.executemany(EVENT, [{**common, "id": i(uuid.uuid4()), "type": kind,
                                "member": i(member_id), "payload": db.json(payload)}
                               for kind, payload in _events(till, checkout, member_id,
                                                            burn_entry, earn_entry, balance)])
        db.commit()
    except BaseException:
        db.rollback()
        raise


def _line(line: RawLine) -> dict[str, Any]:
    return {"line_no": line.line_no, "sku": line.sku, "gtin": line.gtin, "name": line.name,
            "category": line.category, "quantity": line.quantity,
            "unit_price": line.unit_price, "amount": line.amount,
            "points_discount": line.points_discount, "points_earned": line.points_earned,
            "points_burned": line.points_burned, "miles_earned": line.miles_earned}


def _aware(value: datetime | str | None) -> datetime | None:
    """A lot's expiry as read back (SQLite gives naive UTC text)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _answer(checkout: RawCheckout, member_id: uuid.UUID | None, balance: int | None,
            now: datetime) -> str:
    """The stored answer, shaped like the product's ``TransactionRead``."""
    return json.dumps({
        "id": str(checkout.id), "receipt_no": checkout.receipt_no,
        "member_id": str(member_id) if member_id else None, "channel": "store",
        "currency": "JPY", "subtotal": checkout.subtotal,
        "points_discount": checkout.points_discount, "total": checkout.total,
        "points_earned": checkout.points_earned, "points_burned": checkout.points_burned,
        "miles_earned": checkout.miles_earned, "balance_after": balance,
        "lines": [_line(line) for line in checkout.lines],
        "offers": [], "occurred_at": checkout.occurred_at.isoformat(),
        "created_at": now.isoformat()}, separators=(",", ":"))


def _events(till: RawTill, checkout: RawCheckout, member_id: uuid.UUID | None,
            burn_entry: uuid.UUID | None, earn_entry: uuid.UUID | None,
            balance: int | None) -> list[tuple[str, dict[str, Any]]]:
    base = {"transaction_id": str(checkout.id), "receipt_no": checkout.receipt_no,
            "merchant_id": str(till.merchant_id), "store_id": str(till.store_id),
            "terminal_id": str(till.terminal_id),
            "member_id": str(member_id) if member_id else None}
    events = [("transaction.committed", {
        **base, "channel": "store", "currency": till.currency, "subtotal": checkout.subtotal,
        "points_discount": checkout.points_discount, "total": checkout.total,
        "points_earned": checkout.points_earned, "points_burned": checkout.points_burned})]
    if burn_entry is not None:
        events.append(("points.burned", {
            **base, "entry_id": str(burn_entry), "points": checkout.points_burned,
            "discount_minor": checkout.points_discount, "currency": till.currency,
            "balance_after": balance}))
    if earn_entry is not None:
        events.append(("points.earned", {**base, "entry_id": str(earn_entry),
                                          "points": checkout.points_earned,
                                          "balance_after": balance}))
    return events


# --- the measurement --------------------------------------------------------------------

@dataclass
class RawResult:
    latencies_ms: list[float] = field(default_factory=list)
    busy_seconds: float = 0.0
    refused: int = 0
    # CPU seconds while writing: this process (with SQLite, the database's work too) and
    # the PostgreSQL backend serving it (None on SQLite or without /proc).
    client_cpu: float = 0.0
    database_cpu: float | None = None

    def cpu_line(self) -> str:
        count = len(self.latencies_ms)
        if not count:
            return "CPU per checkout: not measured"
        line = f"CPU per checkout: this process {self.client_cpu / count * 1000:.1f} ms"
        if self.database_cpu is not None:
            line += f", PostgreSQL {self.database_cpu / count * 1000:.1f} ms"
        return line

    @property
    def rate(self) -> float:
        """Checkouts per second of time spent writing them."""
        return len(self.latencies_ms) / self.busy_seconds if self.busy_seconds else 0.0


def run_baseline(url: str, shop: Shop, *, members: int, seconds: float, seed: int,
                 warmup: int = 200) -> RawResult:
    """Write checkouts one after another for ``seconds`` of writing time (after
    ``warmup`` unmeasured ones)."""
    maker = PurchaseMaker(members=members, seed=seed)
    till = RawTill(merchant_id=shop.merchant_id, store_id=shop.raw_till.store_id,
                   terminal_id=shop.raw_till.terminal_id, currency=shop.currency)
    db = connect(url)
    result = RawResult()
    prefix = f"RAW{uuid.uuid4().hex[:8]}-"
    sequence = 0
    backend_started: float | None = None
    try:
        while result.busy_seconds < seconds:
            chunk = []
            for _ in range(RAW_CHUNK):
                sequence += 1
                purchase = maker.next()
                barcode = None if purchase.customer_no is None else \
                    shop.barcode(purchase.customer_no)
                chunk.append(price(purchase, receipt_no=f"{prefix}{sequence}",
                                   barcode=barcode, occurred_at=datetime.now(UTC)))
            for checkout in chunk:
                if warmup == 0:
                    warmup, backend_started = -1, _backend_cpu(db)
                started, cpu = time.perf_counter(), time.process_time()
                try:
                    write_checkout(db, till, checkout)
                except RawInsufficientPoints:
                    result.refused += 1
                    continue
                elapsed = time.perf_counter() - started
                if warmup > 0:
                    warmup -= 1
                    continue
                result.client_cpu += time.process_time() - cpu
                result.latencies_ms.append(elapsed * 1000)
                result.busy_seconds += elapsed
                if result.busy_seconds >= seconds:
                    break
        backend_now = _backend_cpu(db)
        if backend_now is not None and backend_started is not None:
            result.database_cpu = backend_now - backend_started
    finally:
        db.close()
    return result


def _backend_cpu(db: RawDatabase) -> float | None:
    pid = db.backend_pid()
    return None if pid is None else cpu_seconds(pid)
