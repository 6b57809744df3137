"""scores: the first purchase's spend in the member stats; the merchants' scoring models
and the members' lifetime scores

``member_stats.first_spend_minor`` lets the lifetime value model take the mean spend of
the repeat purchases alone. Rows written before it are given their mean spend per
purchase (``spend_minor / purchase_count``), the best estimate the stats hold.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 18:45:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('member_stats') as batch:
        batch.add_column(sa.Column('first_spend_minor', sa.BigInteger(), nullable=True))
    op.execute('UPDATE member_stats SET first_spend_minor = spend_minor / purchase_count')
    with op.batch_alter_table('member_stats') as batch:
        batch.alter_column('first_spend_minor', existing_type=sa.BigInteger(),
                           nullable=False)
    op.create_table('score_models',
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('fitted_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('repeat_members', sa.Integer(), nullable=False),
    sa.Column('rfm_boundaries', sa.JSON(), nullable=False),
    sa.Column('bgnbd', sa.JSON(), nullable=True),
    sa.Column('gamma_gamma', sa.JSON(), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                            name=op.f('fk_score_models_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', name=op.f('pk_score_models'))
    )
    op.create_table('member_scores',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('computed_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('p_alive', sa.Float(), nullable=False),
    sa.Column('expected_purchases_90d', sa.Float(), nullable=False),
    sa.Column('clv_90d_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                            name=op.f('fk_member_scores_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                            name=op.f('fk_member_scores_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('member_id', 'merchant_id', name=op.f('pk_member_scores'))
    )
    op.create_index(op.f('ix_member_scores_merchant_id'), 'member_scores', ['merchant_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_member_scores_merchant_id'), table_name='member_scores')
    op.drop_table('member_scores')
    op.drop_table('score_models')
    with op.batch_alter_table('member_stats') as batch:
        batch.drop_column('first_spend_minor')
