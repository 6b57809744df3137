"""campaigns

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 19:00:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('trigger', sa.String(length=24), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('conditions', sa.JSON(), nullable=False),
    sa.Column('actions', sa.JSON(), nullable=False),
    sa.Column('store_ids', sa.JSON(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('exclusive', sa.Boolean(), nullable=False),
    sa.Column('per_member_count', sa.Integer(), nullable=True),
    sa.Column('per_member_days', sa.Integer(), nullable=True),
    sa.Column('max_outcomes', sa.BigInteger(), nullable=True),
    sa.Column('outcomes_count', sa.BigInteger(), nullable=False),
    sa.Column('control_share_bp', sa.Integer(), nullable=False),
    sa.Column('valid_from', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('valid_until', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                            name=op.f('fk_campaigns_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns'))
    )
    op.create_index('ix_campaigns_merchant_trigger', 'campaigns', ['merchant_id', 'trigger'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_campaigns_merchant_trigger', table_name='campaigns')
    op.drop_table('campaigns')
