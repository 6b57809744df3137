"""Voucher redemption latency over HTTP under load, on PostgreSQL.

Acceptance (issue 4): ``make bench`` prints redemption latency p50 / p99 over HTTP under
load; targets on PostgreSQL: p50 <= 5 ms, p99 <= 25 ms.

How it runs (see docs/benchmarks.md):
1. a new database (``patron_bench_vouchers``: created here, dropped at the end), migrated;
   the checkout benchmark's shop (``bench.shop.build_shop``: a merchant, stores, tills with
   their API keys) and two amount-off offers made through the services: a **plain** one
   (no cap: a redemption updates the code's row only) and a **capped** one (a total
   redemption cap and a money budget, both out of reach: every redemption also updates
   the offer's row, the hot row all its redemptions share); single-use codes of each,
   inserted in bulk (``vouchers.service.insert_codes``), enough for the run;
2. the server in its production configuration, ``patron serve --workers N``;
3. a load process (spawned; aiohttp with keep-alive connections, like the checkout
   benchmark's) redeems each code once, ``POST /v1/vouchers/{code}/redeem`` with a random
   till's key, plain and capped codes alternating; phases: a warm-up, **unloaded** (one
   request at a time), the **maximum** rate (closed loop at the best of the probed
   concurrencies), then **under load**: Poisson arrivals at 70 % of the maximum, latency
   measured from each request's scheduled send time (a server that falls behind is
   charged for its queue). The targets are checked on the phase under load;
4. afterwards the database is checked against the answers: one redemption row per 200,
   every redeemed code counted once, the capped offer's counters equal to its redemptions;
5. the floor, not a target: the same three phases (unloaded, maximum, 70 %) for a POST to
   a path no route matches, against the same server — what the HTTP stack and the
   machine's queueing cost with no redemption work at all.

    python -m bench vouchers [--workers N] [--concurrency 4,8,16] [--seconds 15] [...]
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select

from bench.environment import describe_machine, say, some_numbers, stop_on_sigterm, verdict
from bench.loadgen import (
    LoadGenerator,
    OutOfRequests,
    Phase,
    PhaseResult,
    Request,
    RequestSource,
)
from bench.servers import BenchSetupError, Server, postgres_database, running_server
from bench.shop import Shop, build_shop
from patron.db import Database
from patron.tenancy.service import SYSTEM
from patron.vouchers.codes import display
from patron.vouchers.models import Offer, OfferKind, Voucher, VoucherRedemption
from patron.vouchers.offers import create_offer
from patron.vouchers.schemas import OfferWrite
from patron.vouchers.service import insert_codes

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/patron_bench_vouchers"
URL_ENV = "PATRON_BENCH_VOUCHERS_URL"
TARGET_P50_MS = 5.0
TARGET_P99_MS = 25.0
LOAD_SHARE = 0.70
VALUE = 100  # yen off per redemption
KINDS = ("plain", "capped")
CODES_PER_INSERT = 10_000
SEED = 20261122


# --- the load process ----------------------------------------------------------------------

class Redemptions(RequestSource):
    """The next code to redeem (plain and capped in turn) with a random till's key; each
    code once."""

    ok_status = 200
    error_chars = 160

    def __init__(self, *, keys: tuple[str, ...], codes: dict[str, tuple[str, ...]],
                 seed: int) -> None:
        self.rng = random.Random(seed)
        self.headers = [{"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
                        for key in keys]
        self.codes = codes
        self.used = dict.fromkeys(KINDS, 0)
        self.turns = 0

    def next(self) -> Request:
        kind = KINDS[self.turns % len(KINDS)]
        self.turns += 1
        index = self.used[kind]
        if index >= len(self.codes[kind]):
            raise OutOfRequests("out of codes: issue more with --codes")
        self.used[kind] = index + 1
        return Request(f"/v1/vouchers/{self.codes[kind][index]}/redeem",
                       self.rng.choice(self.headers), b"{}", kind)


class Floor(RequestSource):
    """The same POST to a path no route matches: the answer (404) is routing only — no key
    read, no database. What the server and the machine cost before any redemption work."""

    ok_status = 404
    error_chars = 160

    def next(self) -> Request:
        return Request("/v1/no-such-endpoint", {"Content-Type": "application/json"}, b"{}",
                       "floor")


class RedemptionsFailed(Exception):
    """The server refuses the benchmark's redemptions: there is nothing to time."""


# --- set-up, phases, check -------------------------------------------------------------------

@dataclass(frozen=True)
class Offers:
    plain: str
    capped: str
    codes: dict[str, tuple[str, ...]]


def prepare(database: Database, shop: Shop, *, codes_per_kind: int) -> Offers:
    """The two offers and their codes, issued in bulk."""
    started = time.perf_counter()
    issued: dict[str, list[str]] = {kind: [] for kind in KINDS}
    ids = {}
    for kind in KINDS:
        capped = kind == "capped"
        with database.session_scope() as session:
            offer = create_offer(session, actor=SYSTEM, data=OfferWrite(
                name=f"Bench {kind}", kind=OfferKind.amount_off, value=VALUE,
                merchant_id=shop.merchant_id,
                # Out of reach, but checked and counted on every redemption.
                max_redemptions=10**9 if capped else None,
                budget=10**12 if capped else None))
            ids[kind] = str(offer.id)
        while len(issued[kind]) < codes_per_kind:
            count = min(CODES_PER_INSERT, codes_per_kind - len(issued[kind]))
            with database.session_scope() as session:
                row = session.get(Offer, uuid.UUID(ids[kind]))
                assert row is not None
                issued[kind] += [display(code) for code in insert_codes(
                    session, offer=row, count=count, member_id=None, max_redemptions=1,
                    source="bench")]
    seconds = time.perf_counter() - started
    say(f"  issued 2 offers, {2 * codes_per_kind:,} single-use codes in {seconds:.1f} s")
    return Offers(plain=ids["plain"], capped=ids["capped"],
                  codes={kind: tuple(codes) for kind, codes in issued.items()})


def _line(result: PhaseResult, done: str = "redeemed") -> str:
    line = (f"{result.rate:7.1f}/s  p50 {result.percentile(0.5):6.1f} ms  "
            f"p99 {result.percentile(0.99):6.1f} ms  ({result.requests:,} requests, "
            f"{result.ok:,} {done}")
    if result.failed:
        line += f", {result.failed:,} FAILED: {'; '.join(result.errors)}"
    return line + ")"


def _kinds(result: PhaseResult) -> str:
    return "; ".join(f"{kind} offer p50 {result.percentile(0.5, kind):.1f} ms, p99 "
                     f"{result.percentile(0.99, kind):.1f} ms" for kind in KINDS)


def _measured(server: Server, database_url: str, load: LoadGenerator,
              phase: Phase) -> PhaseResult:
    result, waits = load.run_measured(phase, server_pid=server.pid, database_url=database_url)
    if result.cpu is not None and result.ok:
        server_ms, database_ms = result.cpu.per_checkout_ms(result.ok)
        say(f"    CPU per redemption: server {server_ms:.2f} ms"
            + (f", PostgreSQL {database_ms:.2f} ms" if database_ms is not None else ""))
    if waits is not None:
        say(f"    PostgreSQL sessions in a transaction: {waits.shares()}")
    return result


@dataclass
class Run:
    warm_up: PhaseResult
    unloaded: PhaseResult
    probes: list[PhaseResult]
    maximum: PhaseResult
    loaded: PhaseResult
    floor: list[PhaseResult] = field(default_factory=list)  # unloaded, maximum, under load

    @property
    def phases(self) -> list[PhaseResult]:
        return [self.warm_up, self.unloaded, *self.probes, self.maximum, self.loaded]


def measure(database_url: str, shop: Shop, offers: Offers, args: argparse.Namespace) -> Run:
    keys = tuple(till.key for till in shop.tills)
    with running_server(database_url, workers=args.workers) as server, \
            LoadGenerator(server.url, Redemptions(keys=keys, codes=offers.codes, seed=SEED),
                          seed=SEED, name="patron-bench-vouchers-load") as load:
        say(f"  server: patron serve --workers {args.workers}; warming up "
            f"{args.warmup_seconds:g} s")
        warm = load.run(Phase("warm-up", args.warmup_seconds,
                              concurrency=max(args.concurrency)))
        if warm.failed:
            raise RedemptionsFailed(f"the warm-up's redemptions failed: {_line(warm)}")
        unloaded = load.run(Phase("unloaded", args.unloaded_seconds, concurrency=1))
        say(f"  unloaded, one at a time        {_line(unloaded)}")
        probes, best = load.probe(
            args.concurrency, args.probe_seconds,
            lambda probe: say(f"  probe, closed loop x{probe.concurrency:<3}       "
                              f"{_line(probe)}"))
        say(f"  maximum, closed loop x{best} for {args.seconds:g} s:")
        maximum = _measured(server, database_url, load,
                            Phase("maximum", args.seconds, concurrency=best))
        say(f"  maximum, closed loop x{best:<3}     {_line(maximum)}")
        rate = max(LOAD_SHARE * maximum.rate, 1.0)
        say(f"  under load, Poisson arrivals at {rate:.0f}/s ({LOAD_SHARE:.0%} of the "
            f"maximum) for {args.seconds:g} s:")
        loaded = _measured(server, database_url, load,
                           Phase("under load", args.seconds, rate=rate))
        say(f"  under load, open loop {rate:6.1f}/s {_line(loaded)}")
        say(f"    {_kinds(loaded)}")
        floor = measure_floor(server, args, concurrency=best)
    return Run(warm_up=warm, unloaded=unloaded, probes=probes, maximum=maximum,
               loaded=loaded, floor=floor)


def measure_floor(server: Server, args: argparse.Namespace, *,
                  concurrency: int) -> list[PhaseResult]:
    """The same phases for requests that do no work (``Floor``), against the same server
    with the same kind of load process: how much of the figures is the HTTP stack and the
    machine's queueing rather than the redemption."""
    say("  the floor: POST to a path no route matches (404: no key read, no database):")
    with LoadGenerator(server.url, Floor(), seed=SEED, name="patron-bench-floor-load") as load:
        load.run(Phase("floor warm-up", args.warmup_seconds, concurrency=concurrency))
        unloaded = load.run(Phase("floor unloaded", args.unloaded_seconds, concurrency=1))
        say(f"    unloaded, one at a time        {_line(unloaded, 'answered')}")
        maximum = load.run(Phase("floor maximum", args.seconds, concurrency=concurrency))
        say(f"    maximum, closed loop x{concurrency:<3}     {_line(maximum, 'answered')}")
        rate = max(LOAD_SHARE * maximum.rate, 1.0)
        loaded = load.run(Phase("floor under load", args.seconds, rate=rate))
        say(f"    under load, open loop {rate:6.1f}/s {_line(loaded, 'answered')}")
    return [unloaded, maximum, loaded]


def check(database: Database, offers: Offers, run: Run) -> str:
    """What the database holds against what the answers said; empty when they agree."""
    answered = sum(phase.ok for phase in run.phases)
    with database.session_scope() as session:
        rows = session.scalar(select(func.count()).select_from(VoucherRedemption).where(
            VoucherRedemption.status == "redeemed")) or 0
        used = session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.redemptions_count == 1)) or 0
        capped = session.get(Offer, uuid.UUID(offers.capped))
        assert capped is not None
        capped_rows = session.scalar(select(func.count()).select_from(VoucherRedemption)
                                     .where(VoucherRedemption.offer_id == capped.id)) or 0
    problems = []
    if rows != answered or used != answered:
        problems.append(f"{answered:,} answered 200 but {rows:,} redemption rows and "
                        f"{used:,} codes used")
    if (capped.redemptions_count, capped.budget_used) != (capped_rows, capped_rows * VALUE):
        problems.append(f"capped offer counts {capped.redemptions_count:,} uses and "
                        f"{capped.budget_used:,} yen for {capped_rows:,} redemptions")
    return "; ".join(problems)


# --- report --------------------------------------------------------------------------------

def report(run: Run, problems: str) -> list[str]:
    loaded = run.loaded
    p50, p99 = loaded.percentile(0.5), loaded.percentile(0.99)
    lines = [
        "Redemption latency over HTTP (POST /v1/vouchers/{code}/redeem, single-use codes, "
        "plain and capped offers alternating):",
        f"{'phase':<28}{'load':>22}{'requests':>10}{'redeemed/s':>12}{'p50 ms':>9}"
        f"{'p99 ms':>9}",
    ]
    for phase in (run.unloaded, run.maximum, run.loaded, *run.floor):
        load = (f"closed loop x{phase.concurrency}" if phase.concurrency
                else f"Poisson {phase.offered_rate:.0f}/s")
        lines.append(f"{phase.name:<28}{load:>22}{phase.requests:>10,}{phase.rate:>12.1f}"
                     f"{phase.percentile(0.5):>9.1f}{phase.percentile(0.99):>9.1f}")
    checks = [f"p50 <= {TARGET_P50_MS:g} ms {verdict(p50 <= TARGET_P50_MS)} ({p50:.1f} ms)",
              f"p99 <= {TARGET_P99_MS:g} ms {verdict(p99 <= TARGET_P99_MS)} ({p99:.1f} ms)"]
    failed = sum(phase.failed for phase in run.phases)
    if failed:
        checks.append(f"FAIL: {failed:,} redemptions refused or lost")
    checks.append(f"database {'agrees' if not problems else 'FAIL: ' + problems}")
    lines.append(f"PostgreSQL, under load ({LOAD_SHARE:.0%} of the maximum, "
                 f"{loaded.offered_rate:.0f}/s, {loaded.requests:,} requests): "
                 + "; ".join(checks))
    if run.floor:
        floor = run.floor[-1]
        lines.append(f"the floor (no work) under load at {LOAD_SHARE:.0%} of its maximum: "
                     f"p50 {floor.percentile(0.5):.1f} ms, p99 {floor.percentile(0.99):.1f} "
                     f"ms — not a target; what any endpoint of this server costs here")
    return lines


# --- entry point ---------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench vouchers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url", default=os.environ.get(URL_ENV, DEFAULT_URL),
                        help=f"the benchmark's own PostgreSQL database, created and dropped "
                             f"(env {URL_ENV}; default {DEFAULT_URL})")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="server workers (default: one per core)")
    parser.add_argument("--concurrency", type=some_numbers, default=[4, 8, 16],
                        help="closed-loop concurrencies probed for the maximum rate "
                             "(default 4,8,16)")
    parser.add_argument("--seconds", type=float, default=15.0,
                        help="length of the maximum-rate phase and of the phase under load")
    parser.add_argument("--unloaded-seconds", type=float, default=5.0)
    parser.add_argument("--probe-seconds", type=float, default=3.0)
    parser.add_argument("--warmup-seconds", type=float, default=3.0)
    parser.add_argument("--codes", type=int, default=50_000,
                        help="single-use codes issued per offer (default 50000)")
    parser.add_argument("--stores", type=int, default=4)
    parser.add_argument("--tills", type=int, default=4, help="POS tills per store")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    given = list(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    say(f"command:  python -m bench vouchers {shlex.join(given)}".rstrip())
    say(f"settings: --workers {args.workers} --concurrency "
        f"{','.join(map(str, args.concurrency))} --seconds {args.seconds:g} "
        f"--unloaded-seconds {args.unloaded_seconds:g} --codes {args.codes} "
        f"--stores {args.stores} --tills {args.tills}")
    say(f"machine:  {describe_machine()}")
    say("\n--- PostgreSQL ---")
    try:
        with postgres_database(args.postgres_url) as database_url:
            database = Database(database_url)
            try:
                shop = build_shop(database, stores=args.stores, tills_per_store=args.tills)
                offers = prepare(database, shop, codes_per_kind=args.codes)
                run = measure(database_url, shop, offers, args)
                problems = check(database, offers, run)
            finally:
                database.dispose()
    except BenchSetupError as exc:
        say(f"  PostgreSQL skipped: {exc}")
        say(f"\nvoucher benchmark: no figures ({str(exc).splitlines()[0]})")
        return
    except RedemptionsFailed as exc:
        say(f"\nvoucher benchmark: FAIL, {exc}")
        return
    say("")
    say("\n".join(report(run, problems)))
    say(f"\nmachine after: {describe_machine()}")
    say(f"voucher benchmark finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
