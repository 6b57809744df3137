"""The `patron` command."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from patron.cli.imports import import_app
from patron.cli.pos import pos_app
from patron.cli.staff import staff_app
from patron.cli.vouchers import vouchers_app
from patron.config import DEV_SECRET_KEY, Settings, get_settings
from patron.db import Database
from patron.kit.clock import utcnow
from patron.tenancy.models import Role

app = typer.Typer(help="Patron loyalty platform", no_args_is_help=True,
                  pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema", no_args_is_help=True)
keys_app = typer.Typer(help="API keys", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
jobs_app = typer.Typer(help="Scheduled jobs (patron serve also runs them on a schedule)",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
app.add_typer(pos_app, name="pos")
app.add_typer(import_app, name="import")
app.add_typer(vouchers_app, name="vouchers")
app.add_typer(staff_app, name="staff")
console = Console(stderr=True)


def _migrations_dir() -> Path:
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (base / "migrations" / "env.py").exists():
            return base / "migrations"
    raise typer.BadParameter("cannot find the migrations folder")


def upgrade_database(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_migrations_dir()))
    config.attributes["database_url"] = url
    command.upgrade(config, "heads")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all migrations to PATRON_DATABASE_URL."""
    url = get_settings().database_url
    upgrade_database(url)
    console.print(f"[green]database is at the latest schema[/] ({url.split('@')[-1]})")


def _expiry(value: str | None) -> datetime | None:
    """``--expires``: ``90d`` (days from now) or an ISO 8601 time with its offset."""
    from pydantic import TypeAdapter, ValidationError

    from patron.kit.validation import Instant

    if value is None:
        return None
    days = value.strip().lower().removesuffix("d")
    if days.isdigit() and value.strip().lower().endswith("d"):
        if not 1 <= int(days) <= 36_500:
            raise typer.BadParameter("give 1d to 36500d", param_hint="--expires")
        return utcnow() + timedelta(days=int(days))
    try:
        expires_at: datetime = TypeAdapter(Instant).validate_python(value)
    except ValidationError as exc:
        raise typer.BadParameter("give a number of days such as 90d, or an ISO 8601 time "
                                 "with its offset such as 2027-03-31T23:59:59+09:00",
                                 param_hint="--expires") from exc
    return expires_at


@keys_app.command("create")
def keys_create(
    role: Annotated[Role, typer.Option(help="operator, merchant, terminal or sales_rep")],
    merchant_id: Annotated[str | None, typer.Option(help="Merchant the key acts for")] = None,
    merchant_number: Annotated[int | None, typer.Option(help="…or its 5-digit number")] = None,
    terminal_id: Annotated[str | None, typer.Option(help="Terminal (terminal keys)")] = None,
    label: Annotated[str | None, typer.Option(help="A note to recognise the key")] = None,
    expires: Annotated[str | None, typer.Option(
        help="When the key stops working: a number of days (90d) or an ISO 8601 time with "
             "its offset (2027-03-31T23:59:59+09:00); default: never")] = None,
) -> None:
    """Create an API key; the key is printed alone on the last line (shown only once)."""
    from patron.tenancy.service import SYSTEM, ensure_operator, issue_key, merchant_by_number

    database = Database(get_settings().database_url)
    try:
        with database.session_scope() as session:
            ensure_operator(session)
            merchant_uuid = _uuid(merchant_id, "merchant-id")
            if merchant_number is not None:
                merchant_uuid = merchant_by_number(session, actor=SYSTEM,
                                                   number=merchant_number).id
            api_key, secret = issue_key(session, role=role, merchant_id=merchant_uuid,
                                        terminal_id=_uuid(terminal_id, "terminal-id"),
                                        label=label, expires_at=_expiry(expires))
            console.print(f"created {role.value} key {api_key.prefix}… (id {api_key.id}); "
                          "it is shown once:")
    except Exception as exc:
        from patron.errors import PatronError

        if isinstance(exc, PatronError):
            console.print(f"[red]{exc.detail}[/]")
            raise typer.Exit(2) from exc
        raise
    finally:
        database.dispose()
    print(secret)


def _uuid(value: str | None, name: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--{name} must be a UUID") from exc


NowOption = Annotated[str | None, typer.Option(
    help="Run as of this time (ISO 8601 with a UTC offset, e.g. 2026-04-01T00:00:00+09:00); "
         "default: now")]


def _as_of(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"--now {value!r} is not an ISO 8601 time, e.g. "
                                 "2026-04-01T00:00:00+09:00") from exc
    if moment.tzinfo is None:
        raise typer.BadParameter(f"--now {value!r} needs a UTC offset, e.g. "
                                 "2026-04-01T00:00:00+09:00 or …Z")
    return moment


@jobs_app.command("expire")
def jobs_expire(now: NowOption = None) -> None:
    """Expire every point lot whose date has passed. Safe to repeat and to run while
    `patron serve` runs the same job."""
    from patron.jobs.expiry import run_expiry

    as_of = _as_of(now)
    database = Database(get_settings().database_url)
    try:
        run = run_expiry(database, as_of)
    finally:
        database.dispose()
    console.print(f"lots expired: {run.entries} ({run.points} points)")


@jobs_app.command("scores")
def jobs_scores(now: NowOption = None) -> None:
    """Refit every merchant's scoring models (RFM boundaries, BG/NBD and Gamma-Gamma) and
    store its members' lifetime scores. `patron serve` does it daily. Exits 1 when some
    merchant's refit failed (the others are refitted all the same)."""
    from patron.scores.refit import run_refits

    as_of = _as_of(now)
    database = Database(get_settings().database_url)
    try:
        refits = run_refits(database, as_of or utcnow())
    finally:
        database.dispose()
    for refit in refits:
        if refit.failed:
            console.print(f"merchant {refit.merchant_id}: FAILED, its lifetime scores are "
                          f"stale: {refit.note}")
            continue
        state = (f"lifetime models fitted ({refit.fit_method})" if refit.fitted
                 else f"lifetime scores not recomputed (stale): {refit.note}")
        console.print(f"merchant {refit.merchant_id}: {refit.members} members, "
                      f"{refit.repeat_members} repeat; {state}")
    if not refits:
        console.print("no merchant has member purchases yet: nothing to refit")
    failed = [refit for refit in refits if refit.failed]
    if failed:
        console.print(f"{len(failed)} of {len(refits)} merchants failed")
        raise typer.Exit(1)


@jobs_app.command("run")
def jobs_run(now: NowOption = None) -> None:
    """Run every scheduled job once (points expiry, expiry notices, voucher holds, code
    batches, score refits, campaign calendar, weather feed). A job that fails does not
    stop the others; the command then exits 1 and names the failures."""
    from patron.jobs.scheduler import run_all

    as_of = _as_of(now)
    database = Database(get_settings().database_url)
    try:
        reports = run_all(database, as_of)
    finally:
        database.dispose()
    for report in reports:
        console.print(f"{report.name}: {report.summary}")
    failed = [report for report in reports if report.failed]
    if failed:
        console.print(f"{len(failed)} of {len(reports)} jobs failed: "
                      f"{', '.join(report.name for report in failed)}")
        raise typer.Exit(1)


@app.command()
def demo(
    members: Annotated[int, typer.Option(
        min=0, max=100_000, help="Members in all, the 6 sample members included")] = 2000,
    if_empty: Annotated[bool, typer.Option(
        help="If merchants exist, add nothing and print the demo's keys and sample members "
             "again")] = False,
    seed: Annotated[int, typer.Option(help="The same seed draws the same demo data")] = 7,
) -> None:
    """Fill an empty database with a demo coalition (stores, terminals, members, four weeks
    of register events, running campaigns) and print its URLs, API keys, sample members and
    a request to try. The keys are kept in a file beside the database (mode 0600), so a
    later run with --if-empty prints them again (docs/demo.md)."""
    from patron.cli.demo import build_demo

    database = Database(get_settings().database_url)
    try:
        build_demo(database, members=members, if_empty=if_empty, seed=seed, console=console)
    finally:
        database.dispose()


@app.command()
def worker(
    once: Annotated[bool, typer.Option(
        "--once", help="Dispatch and send what is due now, print the counts and stop")] = False,
) -> None:
    """Run the delivery worker in the foreground: outbox events become webhooks and member
    messages (docs/notify.md). `patron serve` runs one too unless
    PATRON_DELIVERIES_IN_SERVE=false; with both, the lease lets one of them work."""
    import signal

    from patron.jobs.deliveries import DeliveryWorker
    from patron.notify.worker import Deliverer

    settings = get_settings()
    database = Database(settings.database_url)
    try:
        if once:
            deliverer = Deliverer(database, settings)
            try:
                done = deliverer.run_once()
            finally:
                deliverer.close()
            sent = done.sent
            console.print(f"events dispatched: {done.dispatched}; deliveries delivered: "
                          f"{sent.delivered}, to retry: {sent.retried}, failed: "
                          f"{sent.failed}, suppressed: {sent.suppressed}")
            return
        runner = DeliveryWorker(database, settings)
        signal.signal(signal.SIGTERM, lambda *_: runner.stop(timeout=0))
        console.print("delivery worker running (Ctrl-C stops it)")
        try:
            runner.run_forever()
        except KeyboardInterrupt:
            runner.stop(timeout=0)
    finally:
        database.dispose()


@app.command("push-keys")
def push_keys() -> None:
    """Make a VAPID key pair for web push and print the settings that use it (the private
    key is a secret: keep it with PATRON_SECRET_KEY; a new one invalidates every browser's
    subscription)."""
    from patron.notify.webpush import VapidKey

    key = VapidKey.generate()
    print(f"PATRON_VAPID_PRIVATE_KEY={key.private_text}")
    print(f"# public key (GET /v1/push/vapid-key answers it): {key.public_text}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    access_log: Annotated[bool | None, typer.Option(
        "--access-log/--no-access-log",
        help="a log line per request (default: PATRON_ACCESS_LOG, off)")] = None,
) -> None:
    """Run the HTTP API."""
    import uvicorn

    settings = get_settings()
    if settings.secret_key == DEV_SECRET_KEY:
        console.print("[yellow]PATRON_SECRET_KEY is the development default: set your own "
                      "secret before real members enrol[/]")
    _check_connection_budget(settings, workers)
    host = host or settings.host
    port = port or settings.port
    busy = _port_in_use(host, port)
    if busy is not None:
        console.print(f"[red]Cannot listen on {host}:{port}: {busy}. Stop what is using it, "
                      "or choose another port (--port or PATRON_PORT).[/]")
        raise typer.Exit(1)
    console.print(f"Patron on http://{host}:{port}  (API docs: http://{host}:{port}/docs)")
    uvicorn.run("patron.app:server_app", factory=True, host=host, port=port, workers=workers,
                log_level="info", log_config=_log_config(),
                # Patron decides the client address itself (PATRON_TRUSTED_PROXIES);
                # uvicorn's own rewrite would believe any local caller's X-Forwarded-For.
                proxy_headers=False,
                access_log=settings.access_log if access_log is None else access_log)


def _port_in_use(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (the port is taken, the address is
    not this machine's), or None. Bound as uvicorn binds (``SO_REUSEADDR``), then let go."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"the host name does not resolve ({exc.strerror})"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is already in use"
            return exc.strerror or str(exc)
    return None


def _check_connection_budget(settings: Settings, workers: int) -> None:
    """Warn when the worker processes could together ask PostgreSQL for more connections
    than it accepts: under a burst the last ones would be refused (503s)."""
    from patron.app import connections_per_process
    from patron.db import connection_limit

    limit = connection_limit(settings.database_url)
    wanted = workers * connections_per_process(settings)
    if limit is not None and wanted > limit:
        console.print(
            f"[yellow]{workers} worker(s) may open up to {wanted} database connections, and "
            f"PostgreSQL accepts {limit}: lower PATRON_DB_MAX_OVERFLOW or PATRON_DB_POOL_SIZE, "
            "or raise max_connections (docs/configuration.md, \"Connection budget\")[/]")


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus Patron's own loggers (the jobs' summaries, warnings) on the
    same console handler, in every worker process."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["patron"] = {"handlers": ["default"], "level": "INFO",
                                   "propagate": False}
    return config


if __name__ == "__main__":
    app()
