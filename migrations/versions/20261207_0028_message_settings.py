"""message settings: a merchant's sender, quiet hours and weekly cap; a member's quiet
hours; the marketing messages the cap counts; when an event was streamed to the broker

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0028'
down_revision: str | None = '0027'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('streamed_at', patron.db.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_outbox_events_streamed_created',
                              ['streamed_at', 'created_at'], unique=False)
    op.create_table(
        'message_settings',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('sender_name', sa.String(length=100), nullable=True),
        sa.Column('reply_to', sa.String(length=254), nullable=True),
        sa.Column('quiet_start_minute', sa.Integer(), nullable=True),
        sa.Column('quiet_end_minute', sa.Integer(), nullable=True),
        sa.Column('weekly_cap', sa.Integer(), nullable=True),
        sa.Column('updated_at', patron.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_message_settings_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', name=op.f('pk_message_settings')),
    )
    op.create_table(
        'member_quiet_hours',
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('start_minute', sa.Integer(), nullable=False),
        sa.Column('end_minute', sa.Integer(), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('updated_at', patron.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_member_quiet_hours_member_id_members')),
        sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_quiet_hours')),
    )
    op.create_table(
        'message_sends',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('delivery_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('sent_at', patron.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_message_sends_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_message_sends_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', 'delivery_id', name=op.f('pk_message_sends')),
    )
    op.create_index('ix_message_sends_member_sent', 'message_sends',
                    ['merchant_id', 'member_id', 'sent_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_message_sends_member_sent', table_name='message_sends')
    op.drop_table('message_sends')
    op.drop_table('member_quiet_hours')
    op.drop_table('message_settings')
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_streamed_created')
        batch_op.drop_column('streamed_at')
