"""The scheduler inside ``patron serve``: due jobs every few minutes, in one process.

A daemon thread started and stopped by the application's lifespan. Every
``PATRON_JOBS_INTERVAL_SECONDS`` it checks the lease (``patron.jobs.lease``): only the
process holding it runs jobs, so ``--workers N`` never runs a job twice at once. It holds
no transaction while it waits — the jobs open one short transaction per batch — and uses
one pooled connection at a time (plus, on PostgreSQL, the lease's own connection, outside
the pool), so requests never wait for it beyond one batch's row locks. On shutdown it
finishes the batch in hand and stops.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from patron.campaigns.occasions import run_calendar
from patron.campaigns.weather_feed import feed_for, pull
from patron.config import Settings, get_settings
from patron.db import Database
from patron.idempotency.service import purge as purge_idempotency_keys
from patron.jobs.background import Background
from patron.jobs.expiry import run_expiry, run_expiry_notices
from patron.jobs.holds import run_hold_release
from patron.jobs.lease import Lease, lease_for
from patron.jobs.status import record_run
from patron.kit.clock import utcnow
from patron.scores.refit import PENALISED, run_refits
from patron.vouchers.batches import resume_stale

log = logging.getLogger("patron.jobs")

JobRun = Callable[[Database, datetime, threading.Event | None], str]


class JobFailed(Exception):
    """A job that went on to the end but failed in part (one merchant of many): its
    message is the job's summary, naming what failed. The run counts as done: the rest
    of its work is in, and repeating it at every tick would only repeat the failure."""


@dataclass(frozen=True)
class Job:
    name: str
    run: JobRun  # returns a one-line summary for the log and the CLI
    # At most this often; None = at every tick of the scheduler.
    every: timedelta | None = None


def _expire_points(database: Database, now: datetime, stop: threading.Event | None) -> str:
    run = run_expiry(database, now, stop=stop)
    return f"lots expired: {run.entries} ({run.points} points)"


def _expiry_notices(database: Database, now: datetime, stop: threading.Event | None) -> str:
    run = run_expiry_notices(database, now, stop=stop)
    return f"new expiry notices: {run.emitted} ({run.groups} member/date groups in the window)"


def _release_holds(database: Database, now: datetime, stop: threading.Event | None) -> str:
    return f"expired voucher holds released: {run_hold_release(database, now, stop=stop)}"


def _refit_scores(database: Database, now: datetime, stop: threading.Event | None) -> str:
    refits = run_refits(database, now, stop=stop)
    fitted = [refit for refit in refits if refit.fitted]
    penalised = sum(1 for refit in fitted if refit.fit_method == PENALISED)
    stale = [refit for refit in refits if not refit.fitted]
    summary = (f"member scores refitted: {len(refits)} merchants, lifetime models for "
               f"{len(fitted)} ({penalised} by the small-merchant fallback), "
               f"{sum(refit.members for refit in refits)} members")
    if stale:
        summary += f"; not recomputed (stale) for {len(stale)}: " + "; ".join(
            f"merchant {refit.merchant_id}: {refit.note}" for refit in stale)
    if any(refit.failed for refit in refits):
        raise JobFailed(summary)
    return summary


def _campaign_calendar(database: Database, now: datetime,
                       stop: threading.Event | None) -> str:
    return run_calendar(database, now)


def _weather_feed(database: Database, now: datetime, stop: threading.Event | None) -> str:
    setting = get_settings().weather_feed
    if not setting:
        return "weather feed: none configured (PATRON_WEATHER_FEED)"
    try:
        feed = feed_for(setting)
    except ValueError as exc:
        return f"weather feed: {exc}"
    return pull(database, feed, now)


def _purge_idempotency_keys(database: Database, now: datetime,
                            stop: threading.Event | None) -> str:
    return f"idempotency keys past their time deleted: {purge_idempotency_keys(database, now)}"


def _resume_batches(database: Database, now: datetime, stop: threading.Event | None) -> str:
    return f"stalled code batches resumed: {resume_stale(database, now, stop=stop)}"


JOBS: tuple[Job, ...] = (
    # Expiry instants are store-local month ends; a tick every few minutes expires points
    # within minutes of local midnight.
    Job("expire-points", _expire_points),
    # Notices are days ahead and the scan covers every lot in the window: hourly is plenty.
    Job("expiry-notices", _expiry_notices, every=timedelta(hours=1)),
    Job("release-voucher-holds", _release_holds),
    Job("resume-code-batches", _resume_batches),
    # RFM boundaries and the lifetime models: daily (the stats themselves are live).
    Job("refit-scores", _refit_scores, every=timedelta(hours=24)),
    # Birthday and schedule campaigns: due by the merchants' local hour, so at every tick
    # (an hour is never skipped); an occasion already given gives nothing again.
    Job("campaign-calendar", _campaign_calendar),
    # Weather counts for three hours; a feed read every tick keeps it fresh.
    Job("weather-feed", _weather_feed),
    # Keys are kept PATRON_IDEMPOTENCY_KEY_HOURS (at least 24); an expired one still in
    # the table is treated as gone, so hourly is enough.
    Job("purge-idempotency-keys", _purge_idempotency_keys, every=timedelta(hours=1)),
)


@dataclass(frozen=True)
class JobReport:
    name: str
    summary: str
    failed: bool


def run_all(database: Database, now: datetime | None = None, *,
            jobs: Sequence[Job] = JOBS) -> list[JobReport]:
    """Run every job once, in order, whatever happens to the others; a report for each."""
    now = now or utcnow()
    reports = []
    for job in jobs:
        started = utcnow()
        try:
            report = JobReport(job.name, job.run(database, now, None), failed=False)
            outcome = "ok"
        except JobFailed as exc:
            report, outcome = JobReport(job.name, str(exc), failed=True), "partial"
        except Exception as exc:
            log.exception("job %s failed", job.name)
            report = JobReport(job.name, f"failed: {type(exc).__name__} (see the log)",
                               failed=True)
            outcome = "failed"
        reports.append(report)
        record_run(database, job=job.name, started_at=started, finished_at=utcnow(),
                   outcome=outcome, summary=report.summary)
    return reports


class Scheduler(Background):
    thread_name = "patron-jobs"
    what = "the job scheduler"

    def __init__(self, database: Database, *, interval: float,
                 jobs: Sequence[Job] = JOBS, lease: Lease | None = None) -> None:
        super().__init__()
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.database = database
        self.interval = interval
        self.jobs = tuple(jobs)
        self.lease = lease if lease is not None else lease_for(database)
        self._last_run: dict[str, float] = {}

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self.tick()
                self._stop.wait(self.interval)
        finally:
            # Given up by the thread itself, so never while one of its jobs still runs.
            try:
                self.lease.release()
            except Exception:
                log.exception("releasing the job lease failed")

    def tick(self) -> bool:
        """Run the due jobs if this process holds the lease; True if it does."""
        try:
            if not self.lease.acquire():
                return False
        except Exception:
            log.exception("could not check the job lease; trying again next time")
            return False
        for job in self.jobs:
            if self._stop.is_set():
                break
            started = time.monotonic()
            last = self._last_run.get(job.name)
            if job.every is not None and last is not None \
                    and started - last < job.every.total_seconds():
                continue
            started_at = utcnow()
            try:
                summary = job.run(self.database, started_at, self._stop)
            except JobFailed as exc:
                self._last_run[job.name] = started
                log.error("job %s failed in part: %s (%.1f s)", job.name, exc,
                          time.monotonic() - started)
                self._record(job, started_at, "partial", str(exc))
                continue
            except Exception as exc:
                # Jobs are safe to repeat: the next tick tries again.
                log.exception("job %s failed", job.name)
                self._record(job, started_at, "failed",
                             f"failed: {type(exc).__name__} (see the log)")
                continue
            self._last_run[job.name] = started
            log.info("job %s: %s (%.1f s)", job.name, summary, time.monotonic() - started)
            self._record(job, started_at, "ok", summary)
        return True

    def _record(self, job: Job, started_at: datetime, outcome: str, summary: str) -> None:
        record_run(self.database, job=job.name, started_at=started_at, finished_at=utcnow(),
                   outcome=outcome, summary=summary)


def start_scheduler(database: Database, settings: Settings) -> Scheduler | None:
    """The running scheduler, or None when ``PATRON_JOBS_INTERVAL_SECONDS`` is 0."""
    if settings.jobs_interval_seconds <= 0:
        return None
    scheduler = Scheduler(database, interval=settings.jobs_interval_seconds)
    scheduler.start()
    return scheduler
