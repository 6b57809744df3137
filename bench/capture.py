"""What one real checkout commit writes, beside what the raw baseline writes.

The real commit runs in-process through ``patron.pos.service.commit`` (what the endpoint
calls) with SQLAlchemy's ``before_cursor_execute`` recording every statement; the raw
baseline's statements are recorded the same way through a wrapper around its connection.
``compare`` reduces both to their writes (rows inserted per table, tables updated, the
number of balance and lot updates) and lists every difference: when the product's
checkout starts writing something new (another ledger entry, a new table), the raw
baseline in ``bench.rawsql`` must be brought in step, and the smoke test says so.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event

from bench.baskets import Kind, Purchase, request_body
from bench.rawsql import RawDatabase, RawTill, connect, price, write_checkout
from bench.shop import Shop
from patron.db import Database
from patron.pos import service as pos
from patron.pos.schemas import PurchaseWrite
from patron.tenancy.models import Role
from patron.tenancy.service import Principal

_WRITE = re.compile(r"^\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)
# Written a varying number of times by design (the real commit fills the receipt row in
# several updates, the baseline in one) or depending on the member's lots.
PRESENCE_ONLY = {("UPDATE", "pos_transactions"), ("UPDATE", "point_lots"),
                 ("INSERT", "point_lot_draws")}


@dataclass
class Writes:
    statements: list[str] = field(default_factory=list)
    rows: Counter[tuple[str, str]] = field(default_factory=Counter)

    def record(self, statement: str, rows: int) -> None:
        self.statements.append(" ".join(statement.split()))
        match = _WRITE.match(statement)
        if match:
            verb = match.group(1).split()[0].upper()
            self.rows[(verb, match.group(2).lower())] += rows


def _rows(parameters: Any, executemany: bool) -> int:
    # SQLAlchemy flags some single-row executions (insertmanyvalues with RETURNING) as
    # executemany; only a sequence of rows counts as many.
    if (executemany and isinstance(parameters, list | tuple) and parameters
            and isinstance(parameters[0], list | tuple | dict)):
        return len(parameters)
    return 1


def capture_real(database: Database, shop: Shop, purchase: Purchase, *,
                 receipt_no: str) -> Writes:
    """Commit one purchase through the product's service and record its statements."""
    till = shop.raw_till
    actor = Principal(key_id=None, role=Role.terminal, merchant_id=shop.merchant_id,
                      terminal_id=till.terminal_id, store_id=till.store_id)
    barcode = None if purchase.customer_no is None else shop.barcode(purchase.customer_no)
    data = PurchaseWrite.model_validate_json(request_body(
        purchase, receipt_no=receipt_no, barcode=barcode, currency=shop.currency))
    writes = Writes()

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
               executemany: bool) -> None:
        writes.record(statement, _rows(parameters, executemany))

    event.listen(database.engine, "before_cursor_execute", record)
    try:
        with database.session_scope() as session:
            pos.commit(session, actor=actor, data=data)
    finally:
        event.remove(database.engine, "before_cursor_execute", record)
    return writes


class _Recording:
    """A raw connection that records what it is asked to run."""

    def __init__(self, inner: RawDatabase, writes: Writes) -> None:
        self.inner = inner
        self.writes = writes

    def begin(self) -> None:
        self.inner.begin()

    def commit(self) -> None:
        self.inner.commit()

    def rollback(self) -> None:
        self.inner.rollback()

    def execute(self, sql: str, params: dict[str, Any]) -> Any:
        self.writes.record(sql, 1)
        return self.inner.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[dict[str, Any]]) -> None:
        self.writes.record(sql, len(rows))
        self.inner.executemany(sql, rows)

    def id(self, value: uuid.UUID | None) -> Any:
        return self.inner.id(value)

    def at(self, value: datetime | None) -> Any:
        return self.inner.at(value)

    def json(self, value: dict[str, Any]) -> Any:
        return self.inner.json(value)

    def backend_pid(self) -> int | None:
        return self.inner.backend_pid()

    def close(self) -> None:
        self.inner.close()


def capture_raw(url: str, shop: Shop, purchase: Purchase, *, receipt_no: str) -> Writes:
    """Write one purchase through the raw baseline and record its statements."""
    writes = Writes()
    db = _Recording(connect(url), writes)
    till = RawTill(merchant_id=shop.merchant_id, store_id=shop.raw_till.store_id,
                   terminal_id=shop.raw_till.terminal_id, currency=shop.currency)
    barcode = None if purchase.customer_no is None else shop.barcode(purchase.customer_no)
    try:
        write_checkout(db, till, price(purchase, receipt_no=receipt_no, barcode=barcode,
                                       occurred_at=datetime.now(UTC)))
    finally:
        db.close()
    return writes


def compare(real: Writes, raw: Writes) -> list[str]:
    """Every way the baseline's writes differ from the real commit's (empty: in step)."""
    differences = []
    for key in sorted(set(real.rows) | set(raw.rows)):
        verb, table = key
        wanted, got = real.rows.get(key, 0), raw.rows.get(key, 0)
        if key in PRESENCE_ONLY:
            if bool(wanted) != bool(got):
                differences.append(f"{verb} {table}: the real commit "
                                   f"{'does' if wanted else 'does not'}, the baseline "
                                   f"{'does' if got else 'does not'}")
        elif wanted != got:
            differences.append(f"{verb} {table}: real commit {wanted} row(s), "
                               f"baseline {got}")
    return differences


def sample_purchases(purchases: Sequence[Purchase]) -> dict[Kind, Purchase]:
    """The first purchase of each kind (anonymous, earn, burn) from a stream."""
    found: dict[Kind, Purchase] = {}
    for purchase in purchases:
        found.setdefault(purchase.kind, purchase)
    return found
