"""What the scheduled jobs record of their runs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime


class JobRun(Base):
    """Each job's last run (one row per job, replaced at every run): when it started and
    ended, how it went and what it said, and when it last ran without a failure. The
    operator's console shows it (docs/architecture.md, "Scheduled jobs")."""

    __tablename__ = "job_runs"
    __table_args__ = (CheckConstraint("outcome IN ('ok', 'partial', 'failed')",
                                      name="outcome_known"),
                      CheckConstraint("runs >= 1", name="runs_positive"))

    job: Mapped[str] = mapped_column(String(64), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(8))
    summary: Mapped[str] = mapped_column(String(500))
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    runs: Mapped[int] = mapped_column(Integer, default=1)
