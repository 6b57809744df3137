"""What can be known of the scheduled jobs without changing how they run (read only).

Nothing records a job's runs: the scheduler keeps the time of each job's last run in the
memory of the process that holds the lease (for ``every``), and writes each run's summary
to the log (logger ``patron.jobs``). What the database does hold is the work some jobs
leave behind, so this reads, per job, its schedule and the newest trace of its own work —
the last time it *did* something, which is not the last time it ran (a run with nothing
to do leaves nothing). A job whose work is also done elsewhere, or leaves no row, has no
trace here. On PostgreSQL it also tells whether some process holds the jobs' lease (the
advisory lock ``patron.jobs.lease`` takes), without taking it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, func, or_, select, text
from sqlalchemy.orm import Session

from patron.campaigns.models import CampaignOutcome, StoreWeather
from patron.jobs.lease import LOCK_KEYS
from patron.jobs.scheduler import JOBS, Job
from patron.ledger.models import EntryKind, JournalEntry
from patron.notify.models import OutboxEvent
from patron.notify.outbox import EventType
from patron.scores.models import ScoreModel

# The newest trace of each job's own work: which trace it is (what the page calls it)
# and the statement that reads its time.
TRACES: dict[str, tuple[str, Callable[[], Select[Any]]]] = {
    "expire-points": ("expiry_entry", lambda: select(func.max(JournalEntry.created_at)).where(
        JournalEntry.kind == EntryKind.expire.value)),
    "expiry-notices": ("expiry_notice", lambda: select(func.max(OutboxEvent.created_at)).where(
        OutboxEvent.type == EventType.points_expiring.value)),
    "refit-scores": ("score_refit", lambda: select(func.max(ScoreModel.fitted_at))),
    "campaign-calendar": ("calendar_outcome", lambda: select(
        func.max(CampaignOutcome.created_at)).where(or_(
            CampaignOutcome.occasion.like("birthday:%"),
            CampaignOutcome.occasion.like("schedule:%")))),
    # Weather a store's system pushes is recorded as "api"; the feed names itself.
    "weather-feed": ("weather_pull", lambda: select(func.max(StoreWeather.updated_at)).where(
        StoreWeather.source != "api")),
}


@dataclass(frozen=True)
class JobStatus:
    name: str
    every: timedelta | None  # None: at every tick of the scheduler
    trace: str | None  # which trace of its work is read; None: it leaves none of its own
    last_trace_at: datetime | None


def job_statuses(session: Session, *, jobs: Sequence[Job] = JOBS) -> list[JobStatus]:
    statuses = []
    for job in jobs:
        trace, statement = TRACES.get(job.name, (None, None))
        statuses.append(JobStatus(
            name=job.name, every=job.every, trace=trace,
            last_trace_at=session.scalar(statement()) if statement is not None else None))
    return statuses


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
