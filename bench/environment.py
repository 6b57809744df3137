"""What every benchmark needs: a fresh migrated database and a description of the machine."""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from sqlalchemy import text

from patron.cli.main import upgrade_database
from patron.config import get_settings
from patron.db import Database

DATABASE_URL_ENV = "PATRON_BENCH_DATABASE_URL"
BENCH_SECRET_KEY = "patron-bench-secret-key-not-for-production"


def add_database_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url", default=os.environ.get(DATABASE_URL_ENV),
        help=f"run against this database instead of a fresh SQLite file (env {DATABASE_URL_ENV})"
             "; on PostgreSQL the schema 'public' is DROPPED and recreated first")


@contextmanager
def fresh_database(url: str | None) -> Iterator[Database]:
    """A migrated, empty database: a new SQLite file in a temporary folder unless ``url``."""
    with tempfile.TemporaryDirectory(prefix="patron-bench-") as folder:
        resolved = url or f"sqlite:///{Path(folder) / 'bench.db'}"
        _point_settings_at(resolved)
        if is_postgres(resolved):
            _reset_postgres_schema(resolved)
        upgrade_database(resolved)
        database = Database(resolved)
        try:
            yield database
        finally:
            database.dispose()


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


def _point_settings_at(url: str) -> None:
    os.environ["PATRON_DATABASE_URL"] = url
    os.environ["PATRON_SECRET_KEY"] = BENCH_SECRET_KEY
    # Nothing in patron reads the settings at import time, but they are cached on first
    # use: start from the environment just set, whatever ran before.
    get_settings.cache_clear()


def _reset_postgres_schema(url: str) -> None:
    database = Database(url)
    try:
        with database.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    finally:
        database.dispose()


def describe_database(database: Database) -> str:
    url = database.engine.url
    with database.engine.connect() as conn:
        if is_postgres(database.url):
            version = conn.exec_driver_sql("SHOW server_version").scalar_one()
            return f"PostgreSQL {version} at {url.host}:{url.port or 5432}/{url.database}"
        version = conn.exec_driver_sql("SELECT sqlite_version()").scalar_one()
        return f"SQLite {version}, fresh file {url.database} (WAL, synchronous=FULL)"


def describe_machine() -> str:
    cpu = _cpu_model() or platform.processor() or platform.machine()
    # Other work on the machine shows in the tail latencies: say how busy it was.
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"Python {platform.python_version()} ({platform.python_implementation()}) on "
            f"{platform.system()} {platform.release()}; {os.cpu_count()} CPUs ({cpu}); "
            f"load average {load}")


def _cpu_model() -> str | None:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


# --- what the benchmarks' command lines share ----------------------------------------------

def say(text: str) -> None:
    """Print at once: a long run shows its progress as it goes."""
    print(text, flush=True)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def numbers(text: str) -> list[int]:
    """An argparse type: numbers separated by commas (``_`` allowed), each 1 or more; none
    at all is allowed too."""
    try:
        values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas: {text}") \
            from exc
    if any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("every number must be 1 or more")
    return values


def some_numbers(text: str) -> list[int]:
    """``numbers``, at least one."""
    values = numbers(text)
    if not values:
        raise argparse.ArgumentTypeError("every number must be 1 or more")
    return values


def stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    """A SIGTERM handler: stop as Ctrl-C would, so that the servers and databases a
    benchmark started are stopped and dropped on the way out."""
    raise SystemExit(143)
