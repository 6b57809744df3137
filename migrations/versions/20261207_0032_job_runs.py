"""job runs

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-08 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0032'
down_revision: str | None = '0031'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('job_runs',
    sa.Column('job', sa.String(length=64), nullable=False),
    sa.Column('started_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('outcome', sa.String(length=8), nullable=False),
    sa.Column('summary', sa.String(length=500), nullable=False),
    sa.Column('last_ok_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('runs', sa.Integer(), nullable=False),
    sa.CheckConstraint("outcome IN ('ok', 'partial', 'failed')", name=op.f('ck_job_runs_outcome_known')),
    sa.CheckConstraint('runs >= 1', name=op.f('ck_job_runs_runs_positive')),
    sa.PrimaryKeyConstraint('job', name=op.f('pk_job_runs'))
    )


def downgrade() -> None:
    op.drop_table('job_runs')
