"""Bulk code generation: more codes than one request should hold, made in chunks.

A batch is a row with its progress. Each chunk — its codes inserted and the progress moved
by ``generated = generated + n WHERE generated = <what this runner read>`` — is one
transaction, so a crash loses at most the chunk in hand and two runners on one batch
(the thread that started it and the scheduler resuming it) never both add a chunk: the
second one's progress statement matches nothing and its chunk rolls back. Every code is
unique by the table's unique index whatever runs. This module opens its own transactions:
like a job, a batch is its own boundary.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.db import Database, rowcount
from patron.kit.clock import utcnow
from patron.tenancy.models import Role
from patron.tenancy.service import Principal
from patron.vouchers import codes, offers, service
from patron.vouchers.errors import BatchNotFound, InvalidCodeRequest
from patron.vouchers.models import BatchStatus, Offer, Voucher, VoucherBatch
from patron.vouchers.schemas import MAX_CODES_AT_ONCE, BatchRead

log = logging.getLogger("patron.vouchers")

CHUNK = 10_000
MAX_BATCH = 10_000_000
STALE_AFTER = timedelta(seconds=60)
Progress = Callable[[int, int], None]


class _Overtaken(Exception):
    """Another runner moved the batch first."""


def start_batch(session: Session, *, actor: Principal, offer_id: uuid.UUID, count: int,
                max_redemptions: int | None) -> VoucherBatch:
    """Record a batch of bearer codes to generate (more than fit in one answer)."""
    offer = offers.visible_offer(session, actor, offer_id)
    uses = service.check_code_request(session, offer=offer, count=count, member_id=None,
                                      max_redemptions=max_redemptions)
    if not MAX_CODES_AT_ONCE < count <= MAX_BATCH:
        raise InvalidCodeRequest(f"a batch makes {MAX_CODES_AT_ONCE + 1} to {MAX_BATCH} codes",
                                 field="count")
    now = utcnow()
    batch = VoucherBatch(id=uuid.uuid4(), offer_id=offer.id, merchant_id=offer.merchant_id,
                         requested=count, generated=0, max_redemptions=uses,
                         status=BatchStatus.running.value, created_at=now, updated_at=now)
    session.add(batch)
    session.flush()
    return batch


def _chunk(database: Database, batch_id: uuid.UUID) -> tuple[int, int] | None:
    """One chunk; (generated, requested) after it, or None when nothing is left to do."""
    with database.session_scope() as session:
        batch = session.get(VoucherBatch, batch_id)
        if batch is None or batch.status != BatchStatus.running.value:
            return None
        left = batch.requested - batch.generated
        if left <= 0:
            return None
        offer = session.get(Offer, batch.offer_id)
        assert offer is not None
        size = min(CHUNK, left)
        before, requested = batch.generated, batch.requested
        now = utcnow()
        service.insert_codes(session, offer=offer, count=size, member_id=None,
                             max_redemptions=batch.max_redemptions, source="batch",
                             batch_id=batch.id, now=now)
        done = before + size >= requested
        moved = session.execute(update(VoucherBatch).where(
            VoucherBatch.id == batch.id, VoucherBatch.generated == before,
            VoucherBatch.status == BatchStatus.running.value).values(
            generated=VoucherBatch.generated + size, updated_at=now,
            status=BatchStatus.done.value if done else BatchStatus.running.value,
            finished_at=now if done else None))
        if not rowcount(moved):
            raise _Overtaken
        return before + size, requested


def run_batch(database: Database, batch_id: uuid.UUID, *, progress: Progress | None = None,
              stop: threading.Event | None = None) -> None:
    """Generate the batch's remaining codes, chunk by chunk, until done or stopped. A
    failure is logged and recorded on the batch (`failed`, with the error)."""
    try:
        while stop is None or not stop.is_set():
            step = _chunk(database, batch_id)
            if step is None:
                return
            if progress is not None:
                progress(*step)
    except _Overtaken:
        log.info("code batch %s: another runner is on it", batch_id)
    except Exception as exc:
        log.exception("code batch %s failed", batch_id)
        with database.session_scope() as session:
            session.execute(update(VoucherBatch).where(
                VoucherBatch.id == batch_id, VoucherBatch.status == BatchStatus.running.value)
                .values(status=BatchStatus.failed.value, error=str(exc)[:1000],
                        finished_at=utcnow()))


def run_in_background(database: Database, batch_id: uuid.UUID) -> threading.Thread:
    thread = threading.Thread(target=run_batch, args=(database, batch_id),
                              name=f"code-batch-{batch_id}", daemon=True)
    thread.start()
    return thread


def resume_stale(database: Database, now: datetime, *,
                 stop: threading.Event | None = None) -> int:
    """The job: finish running batches whose runner stopped (a restart, a crash)."""
    with database.session_scope() as session:
        stale = list(session.scalars(select(VoucherBatch.id).where(
            VoucherBatch.status == BatchStatus.running.value,
            VoucherBatch.updated_at < now - STALE_AFTER).order_by(VoucherBatch.created_at)))
    for batch_id in stale:
        if stop is not None and stop.is_set():
            break
        run_batch(database, batch_id, stop=stop)
    return len(stale)


def _visible(session: Session, actor: Principal, batch_id: uuid.UUID) -> VoucherBatch:
    batch = session.get(VoucherBatch, batch_id)
    if batch is None or not actor.holds(batch.merchant_id):
        raise BatchNotFound("no such code batch")
    actor.require(Role.operator, Role.merchant)
    return batch


def batch_read(batch: VoucherBatch) -> BatchRead:
    return BatchRead(id=batch.id, offer_id=batch.offer_id, requested=batch.requested,
                     generated=batch.generated, status=batch.status, error=batch.error,
                     created_at=batch.created_at, finished_at=batch.finished_at)


def get_batch(session: Session, *, actor: Principal, batch_id: uuid.UUID) -> BatchRead:
    return batch_read(_visible(session, actor, batch_id))


def csv_lines(database: Database, *, actor: Principal, batch_id: uuid.UUID,
              page: int = CHUNK) -> Iterator[str]:
    """The batch's codes as CSV (code, numeric barcode form), a page per transaction so an
    export of millions of codes holds no long transaction."""
    with database.session_scope() as session:
        batch = _visible(session, actor, batch_id)
        number = service.merchant_number(session, batch.merchant_id)
    yield "code,barcode\r\n"
    after = ""
    while True:
        with database.session_scope() as session:
            chunk = list(session.scalars(
                select(Voucher.code).where(Voucher.batch_id == batch_id, Voucher.code > after)
                .order_by(Voucher.code).limit(page)))
        if not chunk:
            return
        yield "".join(f"{codes.display(code)},{codes.barcode_number(number, code)}\r\n"
                      for code in chunk)
        after = chunk[-1]
