"""Each job's last run is recorded when it ends — done, done in part, or failed — by the
scheduler and by `patron jobs run`, and recording never fails a job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from patron.db import Database
from patron.jobs.models import JobRun
from patron.jobs.scheduler import Job, JobFailed, Scheduler, run_all
from patron.jobs.status import record_run


class _Lease:
    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def _runs(database: Database) -> dict[str, JobRun]:
    with database.session_scope() as session:
        rows = list(session.scalars(select(JobRun)))
        session.expunge_all()
    return {row.job: row for row in rows}


def test_the_scheduler_records_each_runs_outcome_and_keeps_the_last_success(
        database: Database) -> None:
    calls = {"n": 0}

    def flaky(_database: Database, _now: datetime, _stop: object) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise JobFailed("2 of 3 stores failed")
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return "3 things done"

    scheduler = Scheduler(database, interval=60, jobs=[Job("flaky", flaky)],
                          lease=_Lease())  # type: ignore[arg-type]
    scheduler.tick()
    first = _runs(database)["flaky"]
    assert (first.outcome, first.summary, first.runs) == ("ok", "3 things done", 1)
    assert first.last_ok_at == first.finished_at
    scheduler.tick()
    scheduler.tick()
    last = _runs(database)["flaky"]
    assert (last.outcome, last.runs) == ("failed", 3)
    assert last.summary == "failed: RuntimeError (see the log)"
    assert last.last_ok_at == first.finished_at  # the last success is kept


def test_patron_jobs_run_records_every_job(database: Database) -> None:
    reports = run_all(database, jobs=[Job("a", lambda *_: "nothing to do"),
                                      Job("b", lambda *_: "1 done")])
    assert [report.failed for report in reports] == [False, False]
    assert {name: run.summary for name, run in _runs(database).items()} == {
        "a": "nothing to do", "b": "1 done"}


def test_a_run_that_cannot_be_recorded_is_only_logged(caplog: object) -> None:
    broken = Database("sqlite:////nonexistent-folder/never.db")
    now = datetime.fromisoformat("2026-12-07T00:00:00+00:00")
    record_run(broken, job="x", started_at=now, finished_at=now, outcome="ok", summary="")
    assert "could not record the run of job x" in caplog.text  # type: ignore[attr-defined]
