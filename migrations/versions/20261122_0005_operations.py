"""register operation events, reader visits and tap grants

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 11:40:00.000000

Written by hand so that it holds only these tables.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0005'
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('register_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('terminal_id', sa.Uuid(), nullable=False),
    sa.Column('type', sa.SmallInteger(), nullable=False),
    sa.Column('occurred_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=True),
    sa.Column('detail', sa.String(length=200), nullable=True),
    sa.CheckConstraint('type >= 1 AND type <= 7', name=op.f('ck_register_events_type_known')),
    sa.CheckConstraint('seq IS NULL OR seq >= 0', name=op.f('ck_register_events_seq_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_register_events'))
    )
    with op.batch_alter_table('register_events', schema=None) as batch_op:
        batch_op.create_index('ix_register_events_store_occurred', ['store_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_register_events_terminal_occurred', ['terminal_id', 'occurred_at'], unique=False)
        batch_op.create_index('uq_register_events_terminal_seq', ['terminal_id', 'seq'], unique=True)

    op.create_table('visits',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('terminal_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('occurred_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('received_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('points_granted', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=True),
    sa.Column('tap_id', sa.String(length=64), nullable=True),
    sa.CheckConstraint('points_granted >= 0', name=op.f('ck_visits_points_granted_non_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_visits_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_visits_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_visits_store_id_stores')),
    sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'], name=op.f('fk_visits_terminal_id_terminals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_visits'))
    )
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_visits_merchant_id'), ['merchant_id'], unique=False)
        batch_op.create_index('ix_visits_member_occurred', ['member_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_visits_store_occurred', ['store_id', 'occurred_at'], unique=False)
        batch_op.create_index('uq_visits_terminal_tap_id', ['terminal_id', 'tap_id'], unique=True)

    op.create_table('tap_grants',
    sa.Column('terminal_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('last_granted_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_tap_grants_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_tap_grants_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'], name=op.f('fk_tap_grants_terminal_id_terminals')),
    sa.PrimaryKeyConstraint('terminal_id', 'member_id', name=op.f('pk_tap_grants'))
    )
    with op.batch_alter_table('tap_grants', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tap_grants_merchant_id'), ['merchant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tap_grants', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tap_grants_merchant_id'))

    op.drop_table('tap_grants')
    with op.batch_alter_table('visits', schema=None) as batch_op:
        batch_op.drop_index('uq_visits_terminal_tap_id')
        batch_op.drop_index('ix_visits_store_occurred')
        batch_op.drop_index('ix_visits_member_occurred')
        batch_op.drop_index(batch_op.f('ix_visits_merchant_id'))

    op.drop_table('visits')
    with op.batch_alter_table('register_events', schema=None) as batch_op:
        batch_op.drop_index('uq_register_events_terminal_seq')
        batch_op.drop_index('ix_register_events_terminal_occurred')
        batch_op.drop_index('ix_register_events_store_occurred')

    op.drop_table('register_events')
