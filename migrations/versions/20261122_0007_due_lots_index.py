"""point lots: a partial index on the lots with points left

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 13:45:00.000000

The expiry job (every few minutes) and the expiry notices look for lots with points left
by expiry date; the plain index on expires_at also walked every spent or expired lot.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_point_lots_expires_at')
        batch_op.create_index('ix_point_lots_due', ['expires_at'], unique=False,
                              postgresql_where=sa.text('remaining > 0'),
                              sqlite_where=sa.text('remaining > 0'))


def downgrade() -> None:
    with op.batch_alter_table('point_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_point_lots_due')
        batch_op.create_index('ix_point_lots_expires_at', ['expires_at'], unique=False)
