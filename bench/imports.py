"""History import: ``patron import members`` then ``patron import purchases``, as a merchant
moving to Patron runs them, on SQLite and on PostgreSQL.

Acceptance (issue 15, item 15): 70,000 purchases of 24,000 members (18 months) imported in
<= 30 s on each backend, under 300 MB peak memory; a second run imports nothing; then
`patron jobs scores` stores P(alive) and CLV for every member with repeat purchases.

What one run does, per backend: a fresh database with one merchant and its stores (not
timed); a generated history written to CSV files (``patron.imports.sample``, not timed);
then the two commands run as a user runs them, each its own process, and timed from start
to exit (Python's start-up included). Printed: rows, the wall time and rate of each
command, their sum against the target, the peak resident memory of the command
processes, the second run (every member and purchase ``already there``), and the members
``patron jobs scores`` then scored against those with purchases on two days or more. The same is
done with a file a tenth the size: the peak memory should not follow the file's size.

    python -m bench imports [--members 24000] [--purchases 70000] [--postgres-url URL]
                            [--no-postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.environment import BENCH_SECRET_KEY, describe_machine, fresh_database, verdict
from bench.servers import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV, postgres_database
from patron.db import Database
from patron.imports.sample import write_history
from patron.scores.models import MemberPurchaseDay, MemberScore
from patron.tenancy.schemas import MerchantCreate, StoreCreate
from patron.tenancy.service import SYSTEM, create_merchant, create_store

TARGET_SECONDS = 30.0
TARGET_PEAK_MB = 300.0
MERCHANT_NUMBER = 24_000
STORES = ("downtown", "harbour", "station", "mall")
_PATRON = ("-c", "from patron.cli.main import app; app()")


@dataclass(frozen=True)
class Command:
    seconds: float
    output: str
    peak_mb: float


def _patron(url: str, *args: str) -> Command:
    """Run ``patron ARGS`` as its own process; its wall time, output and peak memory."""
    env = {**os.environ, "PATRON_DATABASE_URL": url, "PATRON_SECRET_KEY": BENCH_SECRET_KEY,
           "COLUMNS": "200"}
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen([sys.executable, *_PATRON, *args], env=env,
                                   stdout=subprocess.DEVNULL, stderr=errors)
        # The child's own resource use (its peak resident memory), as it exits.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        errors.seek(0)
        output = errors.read()
    if process.returncode != 0:
        raise SystemExit(f"patron {' '.join(args)} failed ({process.returncode}):\n"
                         f"{output[-2000:]}")
    return Command(seconds=seconds, output=" ".join(output.split()),
                   peak_mb=usage.ru_maxrss / 1024)


def _count(output: str, what: str) -> int:
    found = re.search(rf"([\d,]+) {what}", output)
    return int(found.group(1).replace(",", "")) if found else -1


@contextmanager
def _backend(name: str, postgres_url: str) -> Iterator[str]:
    if name == "PostgreSQL":
        with postgres_database(postgres_url) as url:
            yield url
    else:
        with fresh_database(None) as database:
            url = database.url
            database.dispose()
            yield url


def _merchant(url: str) -> None:
    database = Database(url)
    try:
        with database.session_scope() as session:
            merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
                number=MERCHANT_NUMBER, name="Moving shop", currency="USD",
                timezone="America/Chicago", country="US"))
            for code in STORES:
                create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code=code, name=code.title()))
    finally:
        database.dispose()


def _files(folder: Path, *, members: int, purchases: int) -> tuple[Path, Path, int, int]:
    people, bought = folder / f"members-{members}.csv", folder / f"purchases-{purchases}.csv"
    end = datetime.now(UTC) - timedelta(days=1)
    with people.open("w", newline="") as m, bought.open("w", newline="") as p:
        history = write_history(m, p, members=members, purchases=purchases,
                                start=end - timedelta(days=548), end=end,
                                store_codes=list(STORES), currency="USD", minor_units=2)
    with bought.open() as file:
        rows = sum(1 for _ in file) - 1
    return people, bought, history.purchases, rows


def _run(backend: str, url: str, folder: Path, *, members: int,
         purchases: int) -> tuple[bool, float, float]:
    people, bought, receipts, rows = _files(folder, members=members, purchases=purchases)
    number = str(MERCHANT_NUMBER)
    first_members = _patron(url, "import", "members", str(people), "--merchant-number", number)
    first_purchases = _patron(url, "import", "purchases", str(bought), "--merchant-number",
                              number)
    again_members = _patron(url, "import", "members", str(people), "--merchant-number", number)
    again_purchases = _patron(url, "import", "purchases", str(bought), "--merchant-number",
                              number)
    total = first_members.seconds + first_purchases.seconds
    peak = max(first_members.peak_mb, first_purchases.peak_mb)
    imported = (_count(first_members.output, "members imported"),
                _count(first_purchases.output, "purchases imported"))
    again = (_count(again_members.output, "members imported"),
             _count(again_purchases.output, "purchases imported"))
    print(f"  {backend}: {members:,} members, {receipts:,} purchases ({rows:,} rows)")
    print(f"    import members    {first_members.seconds:6.1f} s  "
          f"{members / first_members.seconds:8,.0f} members/s")
    print(f"    import purchases  {first_purchases.seconds:6.1f} s  "
          f"{receipts / first_purchases.seconds:8,.0f} purchases/s "
          f"({rows / first_purchases.seconds:,.0f} rows/s)")
    print(f"    both              {total:6.1f} s  peak memory {peak:,.0f} MB")
    print(f"    imported {imported[0]:,} members and {imported[1]:,} purchases; run again: "
          f"{again[0]:,} and {again[1]:,} imported in "
          f"{again_members.seconds + again_purchases.seconds:.1f} s")
    refit = _patron(url, "jobs", "scores")
    repeaters, scored_repeaters, scored = _scored(url)
    print(f"    patron jobs scores {refit.seconds:5.1f} s  P(alive) and CLV stored for "
          f"{scored:,} members; {repeaters:,} have purchases on two days or more, "
          f"{scored_repeaters:,} of them scored")
    return (imported == (members, receipts) and again == (0, 0)
            and scored_repeaters == repeaters > 0, total, peak)


def _scored(url: str) -> tuple[int, int, int]:
    """Members with purchases on two days or more; those of them with a stored P(alive)
    and CLV; and every member with them."""
    repeat = (select(MemberPurchaseDay.member_id).group_by(MemberPurchaseDay.member_id)
              .having(func.count() >= 2).subquery())
    has_scores = (MemberScore.p_alive.is_not(None), MemberScore.clv_90d_minor.is_not(None))
    database = Database(url)
    try:
        with database.session_scope() as session:
            repeaters = session.scalar(select(func.count()).select_from(repeat)) or 0
            scored_repeaters = session.scalar(
                select(func.count()).select_from(repeat).join(
                    MemberScore, MemberScore.member_id == repeat.c.member_id).where(
                    *has_scores)) or 0
            scored = session.scalar(select(func.count()).select_from(MemberScore).where(
                *has_scores)) or 0
    finally:
        database.dispose()
    return repeaters, scored_repeaters, scored


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench imports", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=24_000)
    parser.add_argument("--purchases", type=int, default=70_000)
    parser.add_argument("--postgres-url", default=os.environ.get(
        POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL.replace("patron_bench", "patron_bench_import")))
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    print(f"command: python -m bench imports {' '.join(sys.argv[2:] if argv is None else argv)}")
    print(f"machine: {describe_machine()}")
    backends = ["SQLite"] + ([] if args.no_postgres else ["PostgreSQL"])
    passed = True
    with tempfile.TemporaryDirectory(prefix="patron-bench-import-") as name:
        folder = Path(name)
        for backend in backends:
            for scale in (10, 1):
                with _backend(backend, args.postgres_url) as url:
                    _merchant(url)
                    good, seconds, peak = _run(backend, url, folder,
                                               members=args.members // scale,
                                               purchases=args.purchases // scale)
                if scale == 1:
                    ok = good and seconds <= TARGET_SECONDS and peak <= TARGET_PEAK_MB
                    passed = passed and ok
                    print(f"    target: <= {TARGET_SECONDS:.0f} s and <= "
                          f"{TARGET_PEAK_MB:.0f} MB: {verdict(ok)}")
    print(f"  history import: {verdict(passed)}")
