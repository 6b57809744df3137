"""Checkout throughput and latency over HTTP, against a raw-SQL baseline, as data grows.

Acceptance (issue): the server in its production configuration (``patron serve --workers
N``, one uvicorn worker per core) on PostgreSQL, driven over HTTP by a separate load
process with realistic baskets (5-30 lines; 30 % identified members burning points, 10 %
anonymous, the rest identified members earning), prints checkouts/s, p50 and p99 at the
maximum rate and at 70 % of it; in the same run the same database writes issued as plain
SQL through psycopg from one process (the raw baseline) and the ratio HTTP rate / raw
rate. Targets on a 2-core machine: >= 500 checkouts/s, p99 <= 50 ms at 70 % load,
ratio >= 0.5. The same benchmark on SQLite prints its figures too. Growth: with 10,000
members and with 1,000,000 members and 10,000,000 postings, p50 differs by at most 25 %.

How each case runs (see docs/benchmarks.md):
1. a new database (PostgreSQL: created, and dropped at the end; SQLite: a temporary
   file), migrated; the shop made through the services; members and their points history
   loaded in bulk with a progress bar (``bench.shop``);
2. the server started as ``patron serve --workers N``; the load generator process
   (``bench.loadgen``) warms up, probes the closed-loop concurrencies and keeps the best
   for the **maximum rate** (closed loop), then offers **70 %** of that rate on a Poisson
   schedule (open loop, latency from the scheduled time);
3. the server stopped, the **raw baseline** (``bench.rawsql``) writes checkouts of the
   same mix one after another from this process, one transaction each;
4. at small sizes, the ledger invariants are checked over everything written.

Campaigns (issue 5: "the checkout benchmark of the ledger issue with those 100 campaigns
active, at most 15 % below the figure without campaigns"): at the first PostgreSQL size,
after the figures above (measured without campaigns), the rules benchmark's 100 campaigns
are written for the shop's merchant through the service (``bench.campaigns``), and the
same server configuration is started again and measured the same way (same closed-loop
concurrency, then 70 %% of its maximum); both figures, their ratio, PASS / FAIL (with >=
85 %% of without) and the outcomes the campaigns wrote during the phase are printed.
``--campaigns 0`` leaves it out.

    python -m bench checkout [--sizes 10000,1000000] [--sqlite-members 10000] [...]
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bench.baskets import Kind, PurchaseMaker
from bench.campaigns import Outcomes, create_campaigns, outcomes_since
from bench.capture import capture_raw, capture_real, compare, sample_purchases
from bench.diagnostics import Waits
from bench.environment import describe_machine, numbers, say, stop_on_sigterm, verdict
from bench.loadgen import Checkouts, LoadGenerator, Phase, PhaseResult
from bench.rawsql import RawResult, run_baseline
from bench.servers import (
    DEFAULT_POSTGRES_URL,
    POSTGRES_URL_ENV,
    BenchSetupError,
    Server,
    postgres_database,
    running_server,
    sqlite_database,
)
from bench.shop import Shop, build_shop, load_members
from patron.db import Database
from patron.ledger.service import check_invariants

TARGET_RATE = 500.0
TARGET_P99_MS = 50.0
TARGET_RATIO = 0.5
GROWTH_P50 = 0.25
LOAD_SHARE = 0.70
SEED = 20261122
# With the campaigns active the maximum rate stays within 15 % of the rate without.
CAMPAIGNS_SHARE = 0.85


@dataclass
class Http:
    workers: int
    concurrency: int
    probes: list[PhaseResult]
    maximum: PhaseResult
    seventy: PhaseResult | None = None
    waits: Waits | None = None


@dataclass
class WithCampaigns:
    """The same server measured again with ``count`` campaigns active."""

    count: int
    without: Http
    http: Http
    outcomes: Outcomes
    setup_seconds: float
    scored_members: int

    @property
    def ratio(self) -> float:
        before = self.without.maximum.rate
        return self.http.maximum.rate / before if before else float("nan")


@dataclass
class Case:
    backend: str
    members: int
    postings: int
    http: Http | None = None
    raw: RawResult | None = None
    note: str = ""
    # SQLite: the maximum rate with each number of workers tried.
    tried_workers: list[Http] = field(default_factory=list)
    ledger: str = ""
    campaigns: WithCampaigns | None = None

    @property
    def ratio(self) -> float:
        if self.http is None or self.raw is None or not self.raw.rate:
            return float("nan")
        return self.http.maximum.rate / self.raw.rate


# --- one case ---------------------------------------------------------------------------

def _phase_line(result: PhaseResult) -> str:
    line = (f"{result.rate:7.1f}/s  p50 {result.percentile(0.5):7.1f} ms  "
            f"p99 {result.percentile(0.99):7.1f} ms  ({result.ok:,} ok")
    if result.failed:
        line += f", {result.failed:,} FAILED: {'; '.join(result.errors)}"
    return line + ")"


def _load(url: str, shop: Shop, members: int) -> LoadGenerator:
    return LoadGenerator(url, Checkouts(keys=tuple(till.key for till in shop.tills),
                                        merchant_number=shop.merchant_number,
                                        members=members, currency=shop.currency, seed=SEED),
                         seed=SEED)


def measure_http(database_url: str, shop: Shop, *, members: int, workers: int,
                 args: argparse.Namespace,
                 seventy: Callable[[Http], bool] = lambda _http: True,
                 concurrency: int | None = None) -> Http:
    """Warm up, probe the concurrencies (or take ``concurrency``), measure the maximum
    rate, and 70 % of it when ``seventy`` says so (given the maximum)."""
    with running_server(database_url, workers=workers) as server, \
            _load(server.url, shop, members) as load:
        say(f"  server: patron serve --workers {workers}; warming up "
            f"{args.warmup_seconds:g} s")
        load.run(Phase("warm-up", args.warmup_seconds,
                       concurrency=concurrency or max(args.concurrency)))
        if concurrency is None:
            probes, best = load.probe(
                args.concurrency, args.probe_seconds,
                lambda probe: say(f"  probe, closed loop x{probe.concurrency:<3} "
                                  f"{_phase_line(probe)}"))
        else:
            probes, best = [], concurrency
        maximum, waits = load.run_measured(Phase("maximum", args.seconds, concurrency=best),
                                           server_pid=server.pid, database_url=database_url)
        say(f"  maximum, closed loop x{best:<3} {_phase_line(maximum)}")
        say(f"    {_cpu_line(maximum)}")
        if waits is not None:
            say(f"    PostgreSQL sessions in a transaction: {waits.shares()}")
        http = Http(workers=workers, concurrency=best, probes=probes, maximum=maximum,
                    waits=waits)
        if seventy(http):
            http.seventy = _open_loop(server, database_url, load, maximum.rate, args)
    return http


def _cpu_line(result: PhaseResult) -> str:
    if result.cpu is None or not result.ok:
        return "CPU per checkout: not measured"
    server, database = result.cpu.per_checkout_ms(result.ok)
    line = f"CPU per checkout: server {server:.1f} ms"
    if database is not None:
        line += f", PostgreSQL {database:.1f} ms"
    line += f", load generator {result.client_cpu / result.ok * 1000:.1f} ms"
    return line


def _open_loop(server: Server, database_url: str, load: LoadGenerator, maximum_rate: float,
               args: argparse.Namespace) -> PhaseResult:
    rate = max(LOAD_SHARE * maximum_rate, 1.0)
    result, _ = load.run_measured(Phase("70 %", args.seconds, rate=rate),
                                  server_pid=server.pid, database_url=database_url)
    say(f"  70 %, open loop {rate:6.1f}/s offered: {_phase_line(result)}")
    say(f"    {_cpu_line(result)}")
    return result


def measure_seventy(database_url: str, shop: Shop, *, members: int, http: Http,
                    args: argparse.Namespace) -> None:
    """70 % of an earlier maximum, on a server started afresh (SQLite's best workers)."""
    with running_server(database_url, workers=http.workers) as server, \
            _load(server.url, shop, members) as load:
        say(f"  server: patron serve --workers {http.workers}; warming up "
            f"{args.warmup_seconds:g} s")
        load.run(Phase("warm-up", args.warmup_seconds, concurrency=http.concurrency))
        http.seventy = _open_loop(server, database_url, load, http.maximum.rate, args)


def prepare(database_url: str, *, members: int, args: argparse.Namespace) -> tuple[Shop, int]:
    database = Database(database_url)
    try:
        shop = build_shop(database, stores=args.stores, tills_per_store=args.tills)
        report = load_members(database, shop, members=members,
                              postings_per_member=args.postings_per_member, seed=SEED)
    finally:
        database.dispose()
    say(f"  loaded {report.summary()}")
    return shop, report.postings


def measure_campaigns(database_url: str, shop: Shop, *, members: int, without: Http,
                      args: argparse.Namespace) -> WithCampaigns:
    """The rules benchmark's campaigns written for the shop, then the same server
    configuration measured again at the concurrency found without them."""
    say(f"  campaigns: writing {args.campaigns} active checkout campaigns for merchant "
        f"{shop.merchant_number} (bench.campaigns), the stores' weather and stock, the "
        f"members' scores")
    started = time.perf_counter()
    database = Database(database_url)
    try:
        made = create_campaigns(database, shop, count=args.campaigns, seed=SEED)
    finally:
        database.dispose()
    setup = time.perf_counter() - started
    say(f"  campaigns written in {setup:.1f} s ({made.scored_members:,} members scored); "
        f"measuring again with them active")
    http = measure_http(database_url, shop, members=members, workers=without.workers,
                        args=args, concurrency=without.concurrency)
    database = Database(database_url)
    try:
        outcomes = outcomes_since(database, shop, made.created_at)
    finally:
        database.dispose()
    say(f"  {outcomes.line()}")
    return WithCampaigns(count=len(made.ids), without=without, http=http, outcomes=outcomes,
                         setup_seconds=setup, scored_members=made.scored_members)


def finish(case: Case, database_url: str, shop: Shop, args: argparse.Namespace) -> None:
    """The raw baseline, then (small sizes) the ledger invariants over everything."""
    say(f"  raw baseline: {args.raw_seconds:g} s of checkouts from one process")
    case.raw = run_baseline(database_url, shop, members=case.members,
                            seconds=args.raw_seconds, seed=SEED + 7)
    raw = case.raw
    say(f"  raw baseline {raw.rate:7.1f}/s  p50 {_pct(raw.latencies_ms, 0.5):7.2f} ms  "
        f"p99 {_pct(raw.latencies_ms, 0.99):7.2f} ms  ({len(raw.latencies_ms):,} checkouts"
        f"{f', {raw.refused} refused' if raw.refused else ''})")
    say(f"    {raw.cpu_line()}")
    if case.members <= args.check_ledger_up_to:
        database = Database(database_url)
        try:
            with database.session_scope() as session:
                problems = check_invariants(session)
        finally:
            database.dispose()
        case.ledger = "sound" if not problems else f"{len(problems)} PROBLEMS: {problems[:3]}"
        say(f"  ledger invariants after the run: {case.ledger}")


def run_postgres(url: str, members: int, args: argparse.Namespace, *,
                 campaigns: bool = False) -> Case:
    """One PostgreSQL case; ``campaigns``: then measured again with the campaigns active
    (before the raw baseline, so that the ledger check covers their points too)."""
    say(f"\n--- PostgreSQL, {members:,} members ---")
    started = time.perf_counter()
    with postgres_database(url) as database_url:
        shop, postings = prepare(database_url, members=members, args=args)
        case = Case(backend="PostgreSQL", members=members, postings=postings)
        case.http = measure_http(database_url, shop, members=members, workers=args.workers,
                                 args=args)
        if campaigns and args.campaigns:
            case.campaigns = measure_campaigns(database_url, shop, members=members,
                                               without=case.http, args=args)
        finish(case, database_url, shop, args)
    say(f"  case finished in {time.perf_counter() - started:.0f} s (database dropped)")
    return case


def run_sqlite(members: int, args: argparse.Namespace) -> Case:
    say(f"\n--- SQLite, {members:,} members ---")
    started = time.perf_counter()
    with sqlite_database() as database_url:
        shop, postings = prepare(database_url, members=members, args=args)
        case = Case(backend="SQLite", members=members, postings=postings)
        choices = args.sqlite_workers
        for index, workers in enumerate(choices):
            # The last server tried goes on to the 70 % phase if it is the best so far;
            # otherwise the best one is started again for it.
            last = index == len(choices) - 1

            def best_so_far(http: Http, last: bool = last) -> bool:
                return last and all(http.maximum.rate >= tried.maximum.rate
                                    for tried in case.tried_workers)

            case.tried_workers.append(measure_http(database_url, shop, members=members,
                                                   workers=workers, args=args,
                                                   seventy=best_so_far))
        best = max(case.tried_workers, key=lambda http: http.maximum.rate)
        tried = ", ".join(f"{http.workers}: {http.maximum.rate:.0f}/s"
                          for http in case.tried_workers)
        case.note = f"workers tried {tried}; best {best.workers}"
        say(f"  {case.note}")
        if best.seventy is None:
            measure_seventy(database_url, shop, members=members, http=best, args=args)
        case.http = best
        finish(case, database_url, shop, args)
    say(f"  case finished in {time.perf_counter() - started:.0f} s")
    return case


# --- report -----------------------------------------------------------------------------

def _pct(values: Sequence[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


def table(cases: Sequence[Case]) -> list[str]:
    header = (f"{'backend':<11}{'members':>10}{'postings':>12}{'workers':>8}{'conc':>5} |"
              f"{'max/s':>8}{'p50 ms':>8}{'p99 ms':>8} |{'70%/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
              f" |{'raw/s':>8}{'ratio':>7}")
    lines = [header, "-" * len(header)]
    for case in cases:
        head = f"{case.backend:<11}{case.members:>10,}{case.postings:>12,}"
        if case.http is None:
            lines.append(f"{head}  {case.note}")
            continue
        http = case.http
        maximum, seventy = http.maximum, http.seventy
        row = (f"{head}{http.workers:>8}{http.concurrency:>5} |{maximum.rate:>8.1f}"
               f"{maximum.percentile(0.5):>8.1f}{maximum.percentile(0.99):>8.1f} |")
        if seventy is not None:
            row += (f"{seventy.rate:>8.1f}{seventy.percentile(0.5):>8.1f}"
                    f"{seventy.percentile(0.99):>8.1f} |")
        else:
            row += f"{'-':>8}{'-':>8}{'-':>8} |"
        raw_rate = case.raw.rate if case.raw is not None else float("nan")
        row += f"{raw_rate:>8.1f}{case.ratio:>7.2f}"
        lines.append(row)
    return lines


def targets(cases: Sequence[Case]) -> list[str]:
    lines = []
    for case in cases:
        if case.http is None:
            continue
        http = case.http
        failed = http.maximum.failed + (http.seventy.failed if http.seventy else 0)
        seventy_p99 = http.seventy.percentile(0.99) if http.seventy else float("nan")
        label = f"{case.backend}, {case.members:,} members"
        if case.backend != "PostgreSQL":
            lines.append(f"{label}: figures only, no targets ({case.note})")
            continue
        checks = [
            f">= {TARGET_RATE:g} checkouts/s {verdict(http.maximum.rate >= TARGET_RATE)} "
            f"({http.maximum.rate:.0f}/s)",
            f"p99 <= {TARGET_P99_MS:g} ms at 70 % {verdict(seventy_p99 <= TARGET_P99_MS)} "
            f"({seventy_p99:.1f} ms)",
            f"ratio >= {TARGET_RATIO:g} {verdict(case.ratio >= TARGET_RATIO)} "
            f"({case.ratio:.2f})",
        ]
        if failed:
            checks.append(f"FAIL: {failed} checkouts refused or lost")
        if case.ledger and case.ledger != "sound":
            checks.append(f"FAIL: ledger {case.ledger}")
        lines.append(f"{label}: " + "; ".join(checks))
    return lines


def growth(cases: Sequence[Case]) -> list[str]:
    """p50 of the smallest PostgreSQL case against the largest, at both loads."""
    measured = [case for case in cases if case.backend == "PostgreSQL" and case.http]
    if len(measured) < 2:
        return []
    small, large = measured[0], measured[-1]
    assert small.http is not None and large.http is not None
    lines = []
    pairs = [("maximum rate", small.http.maximum, large.http.maximum)]
    if small.http.seventy is not None and large.http.seventy is not None:
        pairs.append(("70 % load", small.http.seventy, large.http.seventy))
    for name, before, after in pairs:
        p50_small, p50_large = before.percentile(0.5), after.percentile(0.5)
        change = (p50_large - p50_small) / p50_small if p50_small else float("nan")
        lines.append(
            f"growth, p50 at {name}: {small.members:,} members {p50_small:.1f} ms, "
            f"{large.members:,} members / {large.postings:,} postings {p50_large:.1f} ms "
            f"({change:+.0%}); differs by <= {GROWTH_P50:.0%} "
            f"{verdict(abs(change) <= GROWTH_P50)}")
    # Latency moves with whatever else the machine runs; the work per checkout does not.
    before_cpu, after_cpu = small.http.maximum.cpu, large.http.maximum.cpu
    if before_cpu is not None and after_cpu is not None:
        parts = []
        for name, old, new in (("server", before_cpu.server, after_cpu.server),
                               ("PostgreSQL", before_cpu.database, after_cpu.database)):
            if old is None or new is None:
                continue
            old_ms = old / small.http.maximum.ok * 1000
            new_ms = new / large.http.maximum.ok * 1000
            parts.append(f"{name} {old_ms:.1f} -> {new_ms:.1f} ms "
                         f"({(new_ms - old_ms) / old_ms:+.0%})")
        lines.append("growth, CPU per checkout at the maximum rate (not a target): "
                     + ", ".join(parts))
    return lines


def campaign_lines(cases: Sequence[Case]) -> list[str]:
    """Without and with the campaigns, on the same server configuration, and the
    verdict: the rate with them >= 85 % of the rate without."""
    lines = []
    for case in cases:
        compared = case.campaigns
        if compared is None:
            continue
        lines.append(f"{case.backend}, {case.members:,} members, {compared.http.workers} "
                     f"workers, closed loop x{compared.http.concurrency}, without and with "
                     f"{compared.count} active campaigns:")
        for name, http in (("without campaigns", compared.without),
                           (f"with {compared.count} campaigns", compared.http)):
            maximum, seventy = http.maximum, http.seventy
            row = (f"  {name:<18} max {maximum.rate:7.1f}/s p50 {maximum.percentile(0.5):7.1f}"
                   f" ms p99 {maximum.percentile(0.99):7.1f} ms")
            if seventy is not None:
                row += (f" | 70 % {seventy.rate:7.1f}/s p50 {seventy.percentile(0.5):7.1f} ms"
                        f" p99 {seventy.percentile(0.99):7.1f} ms")
            failed = maximum.failed + (seventy.failed if seventy else 0)
            if failed:
                row += f" | {failed} FAILED"
            lines.append(row)
        failed = compared.http.maximum.failed + (
            compared.http.seventy.failed if compared.http.seventy else 0)
        passed = compared.ratio >= CAMPAIGNS_SHARE and not failed
        lines.append(f"  ratio with / without {compared.ratio:.2f}; with campaigns >= "
                     f"{CAMPAIGNS_SHARE:.0%} of without {verdict(passed)}")
        lines.append(f"  {compared.outcomes.line()}")
    return lines


# --- statements -------------------------------------------------------------------------

def show_statements(args: argparse.Namespace) -> int:
    """Print what one real commit of each kind runs and what the baseline runs."""
    exit_code = 0
    with sqlite_database() as database_url:
        database = Database(database_url)
        try:
            shop = build_shop(database, stores=1, tills_per_store=1)
            load_members(database, shop, members=20, postings_per_member=10, seed=SEED)
            maker = PurchaseMaker(members=20, seed=SEED)
            samples = sample_purchases([maker.next() for _ in range(200)])
            for kind in (Kind.anonymous, Kind.earn, Kind.burn):
                purchase = samples[kind]
                real = capture_real(database, shop, purchase, receipt_no=f"SHOW-{kind}")
                raw = capture_raw(database_url, shop, purchase, receipt_no=f"SHOW-RAW-{kind}")
                say(f"\n=== {kind} purchase: real commit, {len(real.statements)} statements")
                for statement in real.statements:
                    say(f"  {statement[:150]}")
                say(f"=== {kind} purchase: raw baseline, {len(raw.statements)} statements")
                for statement in raw.statements:
                    say(f"  {statement[:150]}")
                differences = compare(real, raw)
                say("=== writes compared: " + ("in step" if not differences else
                                                "DIFFERENT:\n  " + "\n  ".join(differences)))
                exit_code = exit_code or bool(differences)
        finally:
            database.dispose()
    return exit_code


# --- entry point ------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench checkout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres-url",
                        default=os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL),
                        help=f"the benchmark's own PostgreSQL database, created and dropped "
                             f"(env {POSTGRES_URL_ENV}; default {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--sizes", type=numbers, default=[10_000, 1_000_000],
                        help="PostgreSQL cases: members, comma-separated "
                             "(default 10000,1000000)")
    parser.add_argument("--postings-per-member", type=int, default=10,
                        help="ledger history per loaded member (default 10: 1,000,000 "
                             "members come with 10,000,000 postings)")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--sqlite-members", type=int, default=10_000,
                        help="members in the SQLite case; 0 skips it (default 10000)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="PostgreSQL server workers (default: one per core)")
    parser.add_argument("--sqlite-workers", type=numbers, default=[1, 2],
                        help="SQLite server workers to try; the best is kept (default 1,2)")
    parser.add_argument("--concurrency", type=numbers, default=[4, 8, 16, 32],
                        help="closed-loop concurrencies probed for the maximum rate")
    parser.add_argument("--probe-seconds", type=float, default=4.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="length of the maximum-rate and of the 70 %% phase")
    parser.add_argument("--raw-seconds", type=float, default=10.0,
                        help="writing time of the raw baseline")
    parser.add_argument("--stores", type=int, default=10)
    parser.add_argument("--tills", type=int, default=4, help="POS tills per store")
    parser.add_argument("--check-ledger-up-to", type=int, default=100_000,
                        help="check the ledger invariants after cases up to this many "
                             "members (a full scan)")
    parser.add_argument("--campaigns", type=int, default=100,
                        help="at the first PostgreSQL size, measure again with this many "
                             "active campaigns (the rules benchmark's); 0 skips it "
                             "(default 100)")
    parser.add_argument("--show-statements", action="store_true",
                        help="print the statements of one real commit per kind of purchase "
                             "and of the raw baseline, compare their writes, and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    if args.show_statements:
        raise SystemExit(show_statements(args))
    started = time.perf_counter()
    say(f"machine:  {describe_machine()}")
    cases: list[Case] = []
    if not args.no_postgres:
        case_args = args
        for members in args.sizes:
            try:
                cases.append(run_postgres(args.postgres_url, members, case_args,
                                          campaigns=not cases))
                first = cases[0].http
                if first is not None and case_args is args:
                    # The larger sizes run the closed loop at the first size's concurrency:
                    # at another concurrency the p50s would not compare (growth).
                    case_args = argparse.Namespace(**{**vars(args),
                                                      "concurrency": [first.concurrency]})
            except BenchSetupError as exc:
                say(f"  PostgreSQL skipped: {exc}")
                cases.append(Case(backend="PostgreSQL", members=members, postings=0,
                                  note=f"skipped: {str(exc).splitlines()[0]}"))
                break
    if args.sqlite_members:
        cases.append(run_sqlite(args.sqlite_members, args))
    print()
    print("Checkouts over HTTP: POST /v1/pos/transactions, baskets of 5-30 lines, 10 % "
          "anonymous,")
    print("30 % burning 100-1,000 points, 60 % earning; max = closed loop at the best "
          "concurrency,")
    print("70 % = Poisson arrivals at 0.7 x max, latency from the scheduled send time. "
          f"{args.seconds:g} s each.")
    print("raw = the same writes as plain SQL from one process, one transaction per "
          "checkout;")
    print("ratio = max / raw.")
    print()
    print("\n".join(table(cases)))
    print()
    print("\n".join(targets(cases) + growth(cases)))
    compared = campaign_lines(cases)
    if compared:
        print()
        print("Campaigns: the first PostgreSQL size measured again, same server "
              "configuration and")
        print("concurrency, with the rules benchmark's campaigns active for the merchant "
              "(bench/campaigns.py).")
        print("\n".join(compared))
    say(f"\nmachine after: {describe_machine()}")
    say(f"checkout benchmark finished in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
