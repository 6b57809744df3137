"""Identification latency by member number, by rotating QR token and by screenshot.

Acceptance (issue): p50 / p99 over 10,000 identifications by number and by QR token,
target p99 <= 2 ms for the in-process service call, and by image (a 1280x720 screenshot),
target p99 <= 30 ms.

What is timed is what one request does after authentication: open a session scope (one
transaction), call ``patron.identity.service.identify``, commit. Building the request
(and, for images, painting and base64-encoding the screenshot) happens before the clock
starts. An identification that raises or finds the wrong member is counted as a failure,
never as a fast success; any failure makes that row FAIL.

    python -m bench.identify [--database-url URL] [--members N] [--count N] [--images N]
"""

from __future__ import annotations

import argparse
import base64
import itertools
import math
import random
import statistics
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from bench.environment import (
    add_database_option,
    describe_database,
    describe_machine,
    fresh_database,
)
from bench.screenshots import HEIGHT, WIDTH, ScreenshotPainter
from patron.db import Database
from patron.errors import PatronError
from patron.identity.schemas import IdentifyRequest
from patron.identity.service import current_qr_token, identify
from patron.members.models import Member
from patron.members.schemas import MemberCreate
from patron.members.service import enrol
from patron.tenancy.models import Role, TerminalKind
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    Principal,
    create_merchant,
    create_store,
    create_terminal,
)

MERCHANT_NAME = "Bench Coffee"
ENROL_BATCH = 500
WARMUP = 200
IMAGE_WARMUP = 20
QR_ON_EVERY_NTH_IMAGE = 3
NUMBER_TARGET_MS = 2.0
IMAGE_TARGET_MS = 30.0
SHOWN_FAILURES = 5
SEED = 20261122


@dataclass(frozen=True, slots=True)
class Tenant:
    terminal: Principal
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Case:
    """One identification to make and the member it must find."""

    request: IdentifyRequest
    member_number: str


@dataclass(slots=True)
class Measurement:
    method: str
    target_ms: float
    latencies_ns: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.latencies_ns) + len(self.failures)


# --- data -----------------------------------------------------------------------------

def populate(database: Database, *, member_count: int) -> Tenant:
    """One merchant with a store, a POS terminal and ``member_count`` members."""
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=10001, name=MERCHANT_NAME, currency="JPY", timezone="Asia/Tokyo",
            country="JP"))
        store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code="main", name="Main store"))
        terminal, _secret = create_terminal(session, actor=SYSTEM, store_id=store.id,
                                            data=TerminalCreate(code="pos-1",
                                                                kind=TerminalKind.pos))
        merchant_id = merchant.id
        actor = Principal(key_id=None, role=Role.terminal, merchant_id=merchant_id,
                          terminal_id=terminal.id, store_id=store.id)
    members: list[Member] = []
    while len(members) < member_count:
        batch = min(ENROL_BATCH, member_count - len(members))
        members.extend(_enrol(database, merchant_id=merchant_id, count=batch))
    return Tenant(terminal=actor, members=tuple(members))


def _enrol(database: Database, *, merchant_id: uuid.UUID, count: int) -> list[Member]:
    data = MemberCreate(merchant_id=merchant_id, source="bench")
    with database.session_scope() as session:
        return [enrol(session, actor=SYSTEM, data=data) for _ in range(count)]


# --- what to identify -------------------------------------------------------------------

def by_number(members: Sequence[Member], rng: random.Random) -> Iterator[Case]:
    while True:
        member = rng.choice(members)
        yield Case(IdentifyRequest(barcode=member.member_number), member.member_number)


def by_qr_token(members: Sequence[Member], rng: random.Random) -> Iterator[Case]:
    # Made just before its identification, as the app shows a live code: tokens expire.
    while True:
        member = rng.choice(members)
        yield Case(IdentifyRequest(qr=current_qr_token(member).token), member.member_number)


def by_image(members: Sequence[Member], rng: random.Random,
             painter: ScreenshotPainter) -> Iterator[Case]:
    for index in itertools.count():
        member = rng.choice(members)
        with_qr = index % QR_ON_EVERY_NTH_IMAGE == 0
        token = current_qr_token(member).token if with_qr else None
        png = painter.png(member_number=member.member_number, qr_token=token)
        image = base64.b64encode(png).decode("ascii")
        yield Case(IdentifyRequest(image=image), member.member_number)


# --- timing ---------------------------------------------------------------------------

def identify_once(database: Database, actor: Principal, case: Case) -> tuple[int, str | None]:
    """Nanoseconds taken, and why it failed (None when the right member was found)."""
    started = time.perf_counter_ns()
    try:
        with database.session_scope() as session:
            result = identify(session, actor=actor, request=case.request)
    except PatronError as exc:
        return time.perf_counter_ns() - started, f"{exc.code}: {exc.detail}"
    elapsed = time.perf_counter_ns() - started
    if result.member_number != case.member_number:
        return elapsed, f"found {result.member_number}, expected {case.member_number}"
    return elapsed, None


def measure(database: Database, actor: Principal, cases: Iterator[Case], *, method: str,
            target_ms: float, count: int, warmup: int) -> Measurement:
    for case in itertools.islice(cases, warmup):
        identify_once(database, actor, case)
    measurement = Measurement(method=method, target_ms=target_ms)
    for case in itertools.islice(cases, count):
        elapsed, failure = identify_once(database, actor, case)
        if failure is None:
            measurement.latencies_ns.append(elapsed)
        else:
            measurement.failures.append(failure)
    return measurement


# --- report ---------------------------------------------------------------------------

def percentile_ms(sorted_ns: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    rank = max(1, math.ceil(fraction * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1e6


def table(measurements: Sequence[Measurement]) -> list[str]:
    header = (f"{'method':<10}{'n':>8}{'failed':>8}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}"
              f"{'max ms':>9}  {'target':<14}result")
    lines = [header, "-" * len(header)]
    for row in measurements:
        lines.append(_row(row))
    return lines


def _row(row: Measurement) -> str:
    target = f"p99 <= {row.target_ms:g} ms"
    head = f"{row.method:<10}{row.attempts:>8,}{len(row.failures):>8,}"
    if not row.latencies_ns:
        return f"{head}{'-':>9}{'-':>9}{'-':>9}{'-':>9}  {target:<14}FAIL"
    ordered = sorted(row.latencies_ns)
    p50, p99 = percentile_ms(ordered, 0.50), percentile_ms(ordered, 0.99)
    mean, worst = statistics.fmean(ordered) / 1e6, ordered[-1] / 1e6
    passed = not row.failures and p99 <= row.target_ms
    verdict = "PASS" if passed else "FAIL"
    if row.failures:
        verdict += f" ({len(row.failures)} failed)"
    return f"{head}{p50:>9.3f}{p99:>9.3f}{mean:>9.3f}{worst:>9.3f}  {target:<14}{verdict}"


def failure_lines(measurements: Sequence[Measurement]) -> list[str]:
    lines = []
    for row in measurements:
        for failure in row.failures[:SHOWN_FAILURES]:
            lines.append(f"  {row.method}: {failure}")
        if len(row.failures) > SHOWN_FAILURES:
            lines.append(f"  {row.method}: ... and {len(row.failures) - SHOWN_FAILURES} more")
    return lines


# --- entry point ----------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.identify", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_option(parser)
    parser.add_argument("--members", type=int, default=2_000, help="members to enrol")
    parser.add_argument("--count", type=int, default=10_000,
                        help="timed identifications by number and by QR token, each")
    parser.add_argument("--images", type=int, default=2_000,
                        help="timed identifications by screenshot")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"machine:  {describe_machine()}")
    with fresh_database(args.database_url) as database:
        print(f"database: {describe_database(database)}", flush=True)
        started = time.perf_counter()
        tenant = populate(database, member_count=args.members)
        print(f"data:     1 merchant, 1 store, 1 POS terminal, {len(tenant.members):,} members "
              f"(enrolled in {time.perf_counter() - started:.1f} s)", flush=True)
        measurements = run(database, tenant, count=args.count, images=args.images)
    print()
    print("Identification latency: in-process service call, one session scope (transaction)")
    print(f"per identification, as a terminal; warm-up of {WARMUP} ({IMAGE_WARMUP} for images) "
          "not timed.")
    print(f"Images: {args.images:,} timed, not 10,000, to keep the run short (painting a "
          "screenshot takes longer")
    print(f"than identifying it); {WIDTH}x{HEIGHT} PNG screenshots, all with the Code 128 "
          f"barcode, 1 in {QR_ON_EVERY_NTH_IMAGE}")
    print("also with the live QR.")
    print()
    print("\n".join(table(measurements)))
    failures = failure_lines(measurements)
    if failures:
        print("\nfailures (first of each method):")
        print("\n".join(failures))


def run(database: Database, tenant: Tenant, *, count: int, images: int) -> list[Measurement]:
    rng = random.Random(SEED)
    actor, members = tenant.terminal, tenant.members
    painter = ScreenshotPainter(rng, merchant_name=MERCHANT_NAME)
    plan = (
        ("number", by_number(members, rng), NUMBER_TARGET_MS, count, WARMUP),
        ("QR token", by_qr_token(members, rng), NUMBER_TARGET_MS, count, WARMUP),
        ("image", by_image(members, rng, painter), IMAGE_TARGET_MS, images, IMAGE_WARMUP),
    )
    measurements = []
    for method, cases, target_ms, n, warmup in plan:
        started = time.perf_counter()
        measurements.append(measure(database, actor, cases, method=method,
                                    target_ms=target_ms, count=n, warmup=warmup))
        print(f"measured {method}: {n:,} in {time.perf_counter() - started:.1f} s", flush=True)
    return measurements


if __name__ == "__main__":
    main()
