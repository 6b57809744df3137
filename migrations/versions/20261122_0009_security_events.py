"""security events: refused voucher attempts, and the throttle's memory

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 16:00:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'security_events',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=True, nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('kind', sa.String(length=40), nullable=False),
        sa.Column('terminal_id', sa.Uuid(), nullable=True),
        sa.Column('client_address', sa.String(length=64), nullable=True),
        sa.Column('member_id', sa.Uuid(), nullable=True),
        sa.Column('code_prefix', sa.String(length=8), nullable=True),
        sa.Column('code_digest', sa.String(length=32), nullable=True),
        sa.Column('refusal', sa.String(length=64), nullable=False),
        sa.Column('detail', sa.String(length=500), nullable=True),
        sa.Column('occurred_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_security_events_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_security_events_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'],
                                name=op.f('fk_security_events_terminal_id_terminals')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_security_events')),
    )
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.create_index('ix_security_events_terminal_occurred',
                              ['terminal_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_security_events_address_occurred',
                              ['client_address', 'occurred_at'], unique=False)
        batch_op.create_index('ix_security_events_member_occurred',
                              ['member_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_security_events_merchant_id', ['merchant_id', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_merchant_id')
        batch_op.drop_index('ix_security_events_member_occurred')
        batch_op.drop_index('ix_security_events_address_occurred')
        batch_op.drop_index('ix_security_events_terminal_occurred')

    op.drop_table('security_events')
