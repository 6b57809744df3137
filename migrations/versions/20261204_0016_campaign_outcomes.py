"""campaigns: the outcomes of campaigns at checkouts, control group included

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 19:10:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('campaign_outcomes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('campaign_id', sa.Uuid(), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('transaction_id', sa.Uuid(), nullable=False),
    sa.Column('held_out', sa.Boolean(), nullable=False),
    sa.Column('voucher_id', sa.Uuid(), nullable=True),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'],
                            name=op.f('fk_campaign_outcomes_campaign_id_campaigns')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                            name=op.f('fk_campaign_outcomes_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                            name=op.f('fk_campaign_outcomes_member_id_members')),
    sa.ForeignKeyConstraint(['transaction_id'], ['pos_transactions.id'],
                            name=op.f('fk_campaign_outcomes_transaction_id_pos_transactions')),
    sa.ForeignKeyConstraint(['voucher_id'], ['vouchers.id'],
                            name=op.f('fk_campaign_outcomes_voucher_id_vouchers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaign_outcomes'))
    )
    op.create_index('ix_campaign_outcomes_campaign_member', 'campaign_outcomes',
                    ['campaign_id', 'member_id', 'created_at'], unique=False)
    op.create_index(op.f('ix_campaign_outcomes_merchant_id'), 'campaign_outcomes',
                    ['merchant_id'], unique=False)
    op.create_index('uq_campaign_outcomes_campaign_transaction', 'campaign_outcomes',
                    ['campaign_id', 'transaction_id'], unique=True)


def downgrade() -> None:
    op.drop_index('uq_campaign_outcomes_campaign_transaction', table_name='campaign_outcomes')
    op.drop_index(op.f('ix_campaign_outcomes_merchant_id'), table_name='campaign_outcomes')
    op.drop_index('ix_campaign_outcomes_campaign_member', table_name='campaign_outcomes')
    op.drop_table('campaign_outcomes')
