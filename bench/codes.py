"""Voucher codes: 1,000,000 unique codes, in memory and through the product's bulk path.

Acceptance (issue 4): ``make bench`` prints the time to generate 1,000,000 unique codes,
target <= 30 s.

1. **Pure generation**: ``patron.vouchers.codes.generate_codes(1_000_000)`` in this
   process, several runs (best and median printed); each run's codes are checked to be
   1,000,000 distinct canonical codes after the clock stops. Not the target: nothing is
   stored.
2. **The product's bulk path** (the target): in a database of its own
   (``patron_bench_codes``, created, migrated with the product's migrations and dropped at
   the end), a merchant and two offers made through the services, and ``--preload`` codes
   of the first offer already stored (written by ``service.insert_codes``, then
   ``VACUUM ANALYZE``; not timed), so the table and its unique index are not new. Timed:
   ``batches.start_batch`` (committed) and ``batches.run_batch`` for ``--count`` bearer
   codes of the second offer — what ``POST /v1/offers/{id}/codes`` and ``patron vouchers
   generate`` run: chunks of ``batches.CHUNK`` codes, each generated, written with one
   ``COPY`` in a savepoint and committed with the batch's progress (a chunk the unique
   index refuses is made again). After the clock stops: the batch is ``done`` with
   ``--count`` generated, the table holds ``--count`` rows of the batch with distinct
   canonical codes of the offer, and ``--preload`` + ``--count`` distinct codes in all.
3. Not in the target: what looking each batch of 1,000 up in the table first
   (``generate_codes(..., existing=...)``) would add, measured on 100,000 codes.

    python -m bench codes [--count 1000000] [--runs 3] [--preload 1000000]
                          [--chunk N] [--postgres-url URL] [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import psycopg
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench.diagnostics import cpu_seconds
from bench.environment import (
    describe_database,
    describe_machine,
    is_postgres,
    say,
    stop_on_sigterm,
    verdict,
)
from bench.servers import (
    DEFAULT_POSTGRES_URL,
    POSTGRES_URL_ENV,
    BenchSetupError,
    postgres_database,
)
from bench.shop import libpq_url
from patron.db import Database
from patron.tenancy import service as tenancy
from patron.tenancy.schemas import MerchantCreate
from patron.tenancy.service import SYSTEM
from patron.vouchers import batches, offers, service
from patron.vouchers.codes import BATCH_SIZE, generate_codes
from patron.vouchers.models import BatchStatus, Offer, OfferKind, Voucher, VoucherBatch
from patron.vouchers.schemas import MAX_CODES_AT_ONCE, OfferWrite

DATABASE_NAME = "patron_bench_codes"
TARGET_SECONDS = 30.0
MERCHANT_NUMBER = 20002
# Codes per transaction while preloading (not timed).
PRELOAD_CHUNK = 100_000
# Codes looked up (generate_codes with existing=) to price the look-ups, not timed.
LOOKUP_SAMPLE = 100_000
CANONICAL = re.compile(r"[0-9A-HJKMNP-TV-Z]{13}")
CANONICAL_SQL = "^[0-9A-HJKMNP-TV-Z]{13}$"


class BenchError(RuntimeError):
    """The benchmark produced a wrong result (codes missing, repeated or malformed)."""



# --- 1. pure generation ---------------------------------------------------------------

def time_generation(count: int, runs: int) -> list[float]:
    """Seconds for each run of ``generate_codes(count)``; its result checked afterwards."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        generated = generate_codes(count)
        seconds.append(time.perf_counter() - started)
        check_codes(generated, count)
    return seconds


def check_codes(generated: Sequence[str], count: int) -> None:
    if len(generated) != count:
        raise BenchError(f"asked for {count:,} codes, got {len(generated):,}")
    if len(set(generated)) != count:
        raise BenchError(f"{count - len(set(generated)):,} codes repeated")
    malformed = [code for code in generated if not CANONICAL.fullmatch(code)]
    if malformed:
        raise BenchError(f"{len(malformed):,} malformed codes, e.g. {malformed[0]!r}")


# --- 2. the product's bulk path -------------------------------------------------------

@dataclass(frozen=True)
class Offers:
    preloaded: uuid.UUID  # holds the codes already stored
    timed: uuid.UUID  # gets the timed batch


def make_offers(database: Database) -> Offers:
    """A merchant and two amount-off offers of it, through the services."""
    with database.session_scope() as session:
        merchant = tenancy.create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=MERCHANT_NUMBER, name="Bench codes", currency="EUR",
            timezone="Europe/Berlin", country="DE"))
        made = [offers.create_offer(session, actor=SYSTEM, data=OfferWrite(
            name=name, kind=OfferKind.amount_off, value=500, merchant_id=merchant.id))
            for name in ("Preloaded", "Bulk")]
        return Offers(preloaded=made[0].id, timed=made[1].id)


def preload(database: Database, offer_id: uuid.UUID, count: int, *,
            chunk: int = PRELOAD_CHUNK) -> None:
    """``count`` codes of the offer, written by ``service.insert_codes`` (a transaction per
    ``chunk``), then ``VACUUM ANALYZE`` on PostgreSQL: a table that has been in use."""
    for start in range(0, count, chunk):
        with database.session_scope() as session:
            offer = session.get(Offer, offer_id)
            assert offer is not None
            service.insert_codes(session, offer=offer, count=min(chunk, count - start),
                                 member_id=None, max_redemptions=1, source="api")
    if is_postgres(database.url):
        with psycopg.connect(libpq_url(database.url), autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE vouchers")


def _backend_pids(database: Database) -> list[int]:
    with database.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend'"))
        return [int(pid) for (pid,) in rows]


def _backend_cpu(database: Database) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL session on the database (same host)."""
    if not is_postgres(database.url):
        return {}
    used = {pid: cpu_seconds(pid) for pid in _backend_pids(database)}
    return {pid: seconds for pid, seconds in used.items() if seconds is not None}


@dataclass
class Bulk:
    count: int
    chunk: int
    seconds: float = 0.0
    chunk_seconds: list[float] = field(default_factory=list)
    client_cpu: float = 0.0  # this process: generation, formatting, the driver
    database_cpu: float | None = None  # the PostgreSQL sessions (None: not measured)

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds else float("nan")


def time_bulk(database: Database, offer_id: uuid.UUID, count: int) -> tuple[Bulk, uuid.UUID]:
    """Time ``start_batch`` + ``run_batch`` for ``count`` bearer codes of the offer; the
    figures and the batch's id (checked by ``check_stored`` afterwards)."""
    result = Bulk(count=count, chunk=batches.CHUNK)
    backends_before = _backend_cpu(database)
    cpu_before = time.process_time()
    started = last = time.perf_counter()

    def progress(_generated: int, _requested: int) -> None:
        nonlocal last
        now = time.perf_counter()
        result.chunk_seconds.append(now - last)
        last = now

    with database.session_scope() as session:
        batch = batches.start_batch(session, actor=SYSTEM, offer_id=offer_id, count=count,
                                    max_redemptions=None)
        batch_id = batch.id
    batches.run_batch(database, batch_id, progress=progress)
    result.seconds = time.perf_counter() - started
    result.client_cpu = time.process_time() - cpu_before
    if is_postgres(database.url):
        backends_after = _backend_cpu(database)
        result.database_cpu = sum(seconds - backends_before.get(pid, 0.0)
                                  for pid, seconds in backends_after.items())
    return result, batch_id


def check_stored(database: Database, *, batch_id: uuid.UUID, offer_id: uuid.UUID,
                 count: int, total: int) -> None:
    """The batch is done with ``count`` codes of the offer, all distinct and canonical, and
    the table holds ``total`` distinct codes."""
    with database.session_scope() as session:
        batch = session.get(VoucherBatch, batch_id)
        if batch is None or (batch.status, batch.generated) != (BatchStatus.done.value, count):
            state = None if batch is None else (batch.status, batch.generated, batch.error)
            raise BenchError(f"the batch is {state}, expected done with {count:,} codes")
        rows, distinct, foreign = session.execute(select(
            func.count(), func.count(Voucher.code.distinct()),
            func.count().filter((Voucher.offer_id != offer_id) | (Voucher.source != "batch")
                                | Voucher.member_id.is_not(None)))
            .where(Voucher.batch_id == batch_id)).one()
        if (rows, distinct, foreign) != (count, count, 0):
            raise BenchError(f"the batch stored {rows:,} rows, {distinct:,} distinct codes, "
                             f"{foreign:,} not bearer codes of the offer; expected {count:,}")
        malformed = [code for code in session.scalars(select(Voucher.code).where(
            Voucher.batch_id == batch_id)) if not CANONICAL.fullmatch(code)]
        if malformed:
            raise BenchError(f"{len(malformed):,} malformed codes, e.g. {malformed[0]!r}")
        in_table = session.execute(select(func.count(),
                                          func.count(Voucher.code.distinct()))).one()
        if tuple(in_table) != (total, total):
            raise BenchError(f"the table holds {in_table[0]:,} codes, {in_table[1]:,} "
                             f"distinct; expected {total:,}")


def time_lookups(database: Database, count: int) -> float:
    """Seconds the look-ups take while ``generate_codes(count, existing)`` looks each batch
    up in ``vouchers`` (PostgreSQL): what they would add to a bulk job."""
    lookups = 0.0
    with psycopg.connect(libpq_url(database.url)) as conn:

        def existing(batch: list[str]) -> set[str]:
            nonlocal lookups
            started = time.perf_counter()
            rows = conn.execute("SELECT code FROM vouchers WHERE code = ANY(%s)",
                                (batch,)).fetchall()
            lookups += time.perf_counter() - started
            return {str(row[0]) for row in rows}

        generate_codes(count, existing)
    return lookups


def bench_url(url: str | None) -> str:
    """The benchmark's own database on the server of ``url`` (or of the default)."""
    base = url or os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL
    return make_url(base).set(database=DATABASE_NAME).render_as_string(hide_password=False)


@dataclass
class Measured:
    bulk: Bulk
    lookups: float  # seconds the look-ups of ``lookup_count`` codes took
    lookup_count: int
    load_before: float
    load_after: float


def run_postgres(url: str, args: argparse.Namespace) -> Measured:
    with postgres_database(url) as migrated:
        database = Database(migrated)
        try:
            say(f"database: {describe_database(database)} (created and migrated for this "
                 f"run, dropped after it)")
            offers = make_offers(database)
            started = time.perf_counter()
            preload(database, offers.preloaded, args.preload)
            say(f"  preloaded {args.preload:,} codes of another offer through the same "
                 f"path, then VACUUM ANALYZE, in {time.perf_counter() - started:.1f} s "
                 f"(not timed)")
            load_before = os.getloadavg()[0]
            bulk, batch_id = time_bulk(database, offers.timed, args.count)
            load_after = os.getloadavg()[0]
            check_stored(database, batch_id=batch_id, offer_id=offers.timed, count=args.count,
                         total=args.preload + args.count)
            lookup_count = min(args.count, LOOKUP_SAMPLE)
            return Measured(bulk=bulk, lookups=time_lookups(database, lookup_count),
                            lookup_count=lookup_count, load_before=load_before,
                            load_after=load_after)
        finally:
            database.dispose()


# --- entry point ----------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench codes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1_000_000,
                        help="codes to generate (default 1000000)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of the pure generation (default 3)")
    parser.add_argument("--preload", type=int, default=1_000_000,
                        help="codes already in the table before the timed run "
                             "(default 1000000)")
    parser.add_argument("--chunk", type=int, default=batches.CHUNK,
                        help=f"codes per chunk of the batch (default: the product's, "
                             f"{batches.CHUNK})")
    parser.add_argument("--postgres-url", default=None,
                        help=f"a PostgreSQL server; the database is always {DATABASE_NAME} "
                             f"(default: the server of env {POSTGRES_URL_ENV}, else "
                             f"{DEFAULT_POSTGRES_URL})")
    parser.add_argument("--no-postgres", action="store_true",
                        help="pure generation only")
    args = parser.parse_args(argv)
    for option in ("count", "runs", "chunk"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be 1 or more")
    if args.count <= MAX_CODES_AT_ONCE or args.count > batches.MAX_BATCH:
        parser.error(f"--count: a batch makes {MAX_CODES_AT_ONCE + 1} to "
                     f"{batches.MAX_BATCH} codes")
    if args.preload < 0:
        parser.error("--preload cannot be negative")
    return args



def report(measured: Measured, *, product_chunk: int) -> list[str]:
    bulk = measured.bulk
    chunks = len(bulk.chunk_seconds)
    chunk_note = "" if bulk.chunk == product_chunk else \
        f" (--chunk; the product's is {product_chunk:,})"
    database_cpu = "" if bulk.database_cpu is None else \
        f", PostgreSQL sessions {bulk.database_cpu:.1f} s"
    lines = [
        f"bulk generation of {bulk.count:,} unique codes through the product's path "
        f"(start_batch + run_batch, bearer codes, chunks of {bulk.chunk:,}{chunk_note}: "
        f"{chunks} chunks, each one COPY and commit): {bulk.seconds:.1f} s, "
        f"{bulk.per_second:,.0f} codes/s",
        f"  per chunk: median {statistics.median(bulk.chunk_seconds):.2f} s, slowest "
        f"{max(bulk.chunk_seconds):.2f} s; CPU during the run: this process "
        f"{bulk.client_cpu:.1f} s{database_cpu}; load average {measured.load_before:.2f} "
        f"at the start, {measured.load_after:.2f} at the end",
        "  checked after the clock stopped: the batch done, its codes distinct, canonical "
        "and of the offer, every code in the table distinct",
    ]
    per_million = measured.lookups / measured.lookup_count * 1_000_000
    lines.append(f"  not in the target: looking codes up before storing them (generate_codes "
                 f"with existing=, batches of {BATCH_SIZE:,}) would add {per_million:.1f} s "
                 f"per 1,000,000 (measured on {measured.lookup_count:,})")
    lines.append(f"target <= {TARGET_SECONDS:g} s: "
                 f"{verdict(bulk.seconds <= TARGET_SECONDS)}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    say(f"machine:  {describe_machine()}")
    seconds = time_generation(args.count, args.runs)
    best, median = min(seconds), statistics.median(seconds)
    say(f"pure generation of {args.count:,} unique codes, not stored (not the target): "
         f"{best:.2f} s (best of {args.runs}; median {median:.2f} s; "
         f"{args.count / best / 1e6:.2f} million codes/s)")
    if args.no_postgres:
        say(f"target <= {TARGET_SECONDS:g} s: not measured (storage skipped: --no-postgres)")
        return
    product_chunk = batches.CHUNK
    batches.CHUNK = args.chunk
    try:
        measured = run_postgres(bench_url(args.postgres_url), args)
    except BenchSetupError as exc:
        say(f"  PostgreSQL skipped: {exc}")
        say(f"target <= {TARGET_SECONDS:g} s: not measured (no PostgreSQL)")
        return
    finally:
        batches.CHUNK = product_chunk
    for line in report(measured, product_chunk=product_chunk):
        say(line)


if __name__ == "__main__":
    main()
