"""Points expiry and expiry notices.

``run_expiry`` expires every lot whose date has passed, ``run_expiry_notices`` tells
members (through the outbox) which of their points expire soon. Both are safe to run
again, late, or at the same time as another copy: expiry entries are keyed by lot, notice
events by a deterministic id, and the database decides.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, TypeVarTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, func, select
from sqlalchemy.orm import Session

import patron.models  # noqa: F401 - every table, so foreign keys resolve outside the app
from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.models import JournalEntry, PointLot, PointLotDraw
from patron.notify.outbox import EventType, UniqueEvent, emit, emit_once, event_id
from patron.tenancy.models import Merchant

# Lots per expiry transaction. Each lot locks its member's account until the commit (and on
# SQLite the batch holds the one write lock), so a batch is kept small enough that a member
# paying at a till meanwhile waits a moment only: a lot is about a dozen statements.
EXPIRY_BATCH = 100
# (member, merchant, date) groups per notice transaction.
NOTICE_BATCH = 500

Columns = TypeVarTuple("Columns")
if TYPE_CHECKING:
    ExpiringGroup = Row[uuid.UUID, uuid.UUID, datetime | None, int]


@dataclass(frozen=True)
class ExpiryRun:
    entries: int  # lots expired (one journal entry each)
    points: int
    batches: int  # transactions that expired something


@dataclass(frozen=True)
class NoticeRun:
    groups: int  # (member, merchant, expiry instant) groups inside the window
    emitted: int  # points.expiring events added by this run (the rest existed already)


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC)


def run_expiry(database: Database, now: datetime | None = None, *,
               batch: int = EXPIRY_BATCH, stop: threading.Event | None = None) -> ExpiryRun:
    """Expire every lot due at ``now``, ``batch`` lots per transaction, with one
    ``points.expired`` event per expiry entry in that entry's transaction.

    ``stop`` (the scheduler's shutdown signal) is checked between batches; a batch is
    never left half done."""
    now = _require_aware(now or utcnow())
    entries = points = batches = 0
    while stop is None or not stop.is_set():
        with database.session_scope() as session:
            expired = ledger.expire(session, now=now, limit=batch)
            points += _emit_expired(session, expired)
        if not expired:
            break
        entries += len(expired)
        batches += 1
    return ExpiryRun(entries=entries, points=points, batches=batches)


def _emit_expired(session: Session, entries: Sequence[JournalEntry]) -> int:
    if not entries:
        return 0
    # An expiry entry draws its lot's whole remainder: one draw per entry.
    drawn = {entry_id: (amount, expires_at) for entry_id, amount, expires_at in session.execute(
        select(PointLotDraw.entry_id, PointLotDraw.amount, PointLot.expires_at)
        .join(PointLot, PointLot.id == PointLotDraw.lot_id)
        .where(PointLotDraw.entry_id.in_([entry.id for entry in entries])))}
    total = 0
    for entry in entries:
        assert entry.merchant_id is not None and entry.member_id is not None
        amount, expires_at = drawn[entry.id]
        total += amount
        emit(session, type=EventType.points_expired, merchant_id=entry.merchant_id,
             member_id=entry.member_id, occurred_at=entry.occurred_at, payload={
                 "entry_id": str(entry.id), "merchant_id": str(entry.merchant_id),
                 "member_id": str(entry.member_id), "points": amount,
                 "expires_at": (expires_at or entry.occurred_at).isoformat()})
    return total


def expiring_event_id(*, member_id: uuid.UUID, merchant_id: uuid.UUID,
                      expires_at: datetime) -> uuid.UUID:
    return event_id(EventType.points_expiring, member_id, merchant_id,
                    expires_at.astimezone(UTC).isoformat())


def run_expiry_notices(database: Database, now: datetime | None = None, *,
                       days: int | None = None, batch: int = NOTICE_BATCH,
                       stop: threading.Event | None = None) -> NoticeRun:
    """One ``points.expiring`` event per member, merchant and expiry instant for points
    that expire after ``now`` and at most ``days`` (default ``PATRON_EXPIRY_NOTICE_DAYS``)
    later — once, however often this runs: the event id is derived from the group, and an
    id that exists is skipped. ``points`` is what was left when the notice was made."""
    now = _require_aware(now or utcnow())
    if days is None:
        days = get_settings().expiry_notice_days
    if days < 1:
        raise ValueError("days must be at least 1")
    remaining = func.sum(PointLot.remaining)
    statement = (
        select(PointLot.merchant_id, PointLot.member_id, PointLot.expires_at, remaining)
        .where(PointLot.expires_at > now, PointLot.expires_at <= now + timedelta(days=days),
               PointLot.remaining > 0)
        .group_by(PointLot.merchant_id, PointLot.member_id, PointLot.expires_at)
        .order_by(PointLot.expires_at, PointLot.merchant_id, PointLot.member_id))
    zones: dict[uuid.UUID, str] = {}
    groups = emitted = 0
    for rows in _read_in_chunks(database, statement, batch):
        if stop is not None and stop.is_set():
            break
        groups += len(rows)
        with database.session_scope() as session:
            _load_zones(session, zones, {row[0] for row in rows})
            emitted += emit_once(session, [_notice(row, zones, now) for row in rows])
    return NoticeRun(groups=groups, emitted=emitted)


def _notice(row: ExpiringGroup, zones: dict[uuid.UUID, str], now: datetime) -> UniqueEvent:
    merchant_id, member_id, expires_at, points = row
    assert expires_at is not None  # the query's window excludes lots that never expire
    timezone = zones[merchant_id]
    # The last moment the points can be used falls on this local date.
    last_day = (expires_at.astimezone(ZoneInfo(timezone)) - timedelta(microseconds=1)).date()
    return UniqueEvent(
        id=expiring_event_id(member_id=member_id, merchant_id=merchant_id,
                             expires_at=expires_at),
        type=EventType.points_expiring, merchant_id=merchant_id, member_id=member_id,
        occurred_at=now, payload={
            "merchant_id": str(merchant_id), "member_id": str(member_id),
            "points": int(points), "expires_at": expires_at.isoformat(),
            "last_day": last_day.isoformat(), "timezone": timezone})


def _load_zones(session: Session, zones: dict[uuid.UUID, str],
                merchant_ids: set[uuid.UUID]) -> None:
    missing = merchant_ids - zones.keys()
    if missing:
        zones.update((merchant_id, timezone) for merchant_id, timezone in session.execute(
            select(Merchant.id, Merchant.timezone).where(Merchant.id.in_(missing))))


def _read_in_chunks(database: Database, statement: Select[*Columns],
                    size: int) -> Iterator[Sequence[Row[*Columns]]]:
    """The rows of a read-only query, ``size`` at a time, while the caller writes each
    chunk in its own transaction.

    PostgreSQL streams them through a server-side cursor on a connection of their own
    (a snapshot, no row locks), so memory stays flat however many rows there are. On
    SQLite every transaction takes the write lock (``BEGIN IMMEDIATE``), so a reader
    left open would block the caller's own writes: the rows are read first, in one
    short transaction."""
    if database.engine.dialect.name == "postgresql":
        with database.engine.connect() as connection:
            result = connection.execution_options(yield_per=size).execute(statement)
            yield from result.partitions()
        return
    with database.session_scope() as session:
        rows = session.execute(statement).all()
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
