"""The scheduled jobs' runs: each run recorded when it ends (``record_run``, by the
scheduler and by ``patron jobs run``), and what the operator's console reads of them
(``job_statuses``); whether some process holds the jobs' lease (PostgreSQL)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from patron.db import Database, insert_for
from patron.jobs.lease import LOCK_KEYS
from patron.jobs.models import JobRun

if TYPE_CHECKING:
    from patron.jobs.scheduler import Job

log = logging.getLogger("patron.jobs")

OUTCOMES = ("ok", "partial", "failed")
SUMMARY_CHARS = 500


def record_run(database: Database, *, job: str, started_at: datetime, finished_at: datetime,
               outcome: str, summary: str) -> None:
    """Keep a job's run as its last (one statement, in a transaction of its own, after the
    job's): a run is recorded whatever it did, and failing to record it never fails the
    job — it is logged."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown outcome {outcome!r}")
    values = {"job": job, "started_at": started_at, "finished_at": finished_at,
              "outcome": outcome, "summary": summary[:SUMMARY_CHARS],
              "last_ok_at": finished_at if outcome == "ok" else None, "runs": 1}
    try:
        with database.session_scope() as session:
            statement = insert_for(session, JobRun).values(**values)
            session.execute(statement.on_conflict_do_update(
                index_elements=["job"],
                set_={"started_at": statement.excluded.started_at,
                      "finished_at": statement.excluded.finished_at,
                      "outcome": statement.excluded.outcome,
                      "summary": statement.excluded.summary,
                      "last_ok_at": func.coalesce(statement.excluded.last_ok_at,
                                                  JobRun.last_ok_at),
                      "runs": JobRun.runs + 1}))
    except Exception:
        log.exception("could not record the run of job %s", job)


@dataclass(frozen=True)
class JobStatus:
    name: str
    every: timedelta | None  # None: at every tick of the scheduler
    last: JobRun | None  # its last run; None: never ran here


def job_statuses(session: Session, *, jobs: Sequence[Job]) -> list[JobStatus]:
    """Each job, in the order they run, with its last recorded run."""
    runs = {run.job: run for run in session.scalars(select(JobRun))}
    return [JobStatus(name=job.name, every=job.every, last=runs.get(job.name))
            for job in jobs]


def lease_held(session: Session, purpose: str = "jobs") -> bool | None:
    """Whether some process holds the lease of ``purpose`` now (PostgreSQL: its advisory
    lock is granted to a backend); None where it cannot be seen without taking it
    (SQLite's file lock)."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    key = LOCK_KEYS[purpose]
    held = session.scalar(text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND objsubid = 1 AND classid::bigint = :high AND objid::bigint = :low"),
        {"high": key >> 32, "low": key & 0xFFFFFFFF})
    return bool(held)
