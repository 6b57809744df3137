"""targeted messages: a merchant's message to the members an audience selected, and its
recipients; a merchant's own message templates

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 17:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0029'
down_revision: str | None = '0028'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'targeted_messages',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('audience', sa.JSON(), nullable=False),
        sa.Column('subject', sa.String(length=200), nullable=True),
        sa.Column('text', sa.String(length=1000), nullable=False),
        sa.Column('offer_id', sa.Uuid(), nullable=True),
        sa.Column('selected', sa.Integer(), nullable=False),
        sa.Column('created_at', patron.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_targeted_messages_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['offer_id'], ['offers.id'],
                                name=op.f('fk_targeted_messages_offer_id_offers')),
        sa.PrimaryKeyConstraint('merchant_id', 'id', name=op.f('pk_targeted_messages')),
    )
    op.create_table(
        'targeted_recipients',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('message_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('voucher_id', sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(['event_id'], ['outbox_events.id'],
                                name=op.f('fk_targeted_recipients_event_id_outbox_events')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_targeted_recipients_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id', 'message_id'],
                                ['targeted_messages.merchant_id', 'targeted_messages.id'],
                                name=op.f('fk_targeted_recipients_merchant_id_targeted_messages')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_targeted_recipients_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', 'message_id', 'member_id',
                                name=op.f('pk_targeted_recipients')),
    )
    op.create_index(op.f('ix_targeted_recipients_event_id'), 'targeted_recipients',
                    ['event_id'], unique=False)
    op.create_table(
        'message_templates',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('language', sa.String(length=16), nullable=False),
        sa.Column('subject', sa.String(length=300), nullable=True),
        sa.Column('body', sa.String(length=4000), nullable=False),
        sa.Column('updated_at', patron.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_message_templates_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', 'event_type', 'channel', 'language',
                                name=op.f('pk_message_templates')),
    )


def downgrade() -> None:
    op.drop_table('message_templates')
    op.drop_index(op.f('ix_targeted_recipients_event_id'), table_name='targeted_recipients')
    op.drop_table('targeted_recipients')
    op.drop_table('targeted_messages')
