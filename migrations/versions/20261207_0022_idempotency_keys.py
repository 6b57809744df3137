"""idempotency keys: every write of the API may carry an Idempotency-Key

One row per key and API key: the claim while the request runs, then the answer a retry
gets again (encrypted). Keyed by tenant first; expired rows are deleted by a job.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 04:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db


revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'idempotency_keys',
        sa.Column('tenant_id', sa.Uuid(), nullable=False),
        sa.Column('api_key_id', sa.Uuid(), nullable=False),
        sa.Column('key', sa.String(length=255), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('claim', sa.Uuid(), nullable=False),
        sa.Column('work_committed', sa.Boolean(), nullable=False),
        sa.Column('locked_until', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('response_headers', sa.JSON(), nullable=True),
        sa.Column('response_body', sa.LargeBinary(), nullable=True),
        sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("state IN ('running', 'done')",
                           name=op.f('ck_idempotency_keys_state')),
        sa.CheckConstraint("state <> 'done' OR status_code IS NOT NULL",
                           name=op.f('ck_idempotency_keys_done_has_answer')),
        sa.PrimaryKeyConstraint('tenant_id', 'api_key_id', 'key',
                                name=op.f('pk_idempotency_keys')),
    )
    op.create_index('ix_idempotency_keys_expires_at', 'idempotency_keys', ['expires_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_idempotency_keys_expires_at', table_name='idempotency_keys')
    op.drop_table('idempotency_keys')
