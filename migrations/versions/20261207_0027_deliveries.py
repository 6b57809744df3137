"""deliveries: webhook endpoints, one delivery per event and destination, every attempt

The delivery worker (``patron.notify.worker``) turns outbox events into deliveries and
sends them; ``outbox_events.delivered_at`` now means "its deliveries are made".

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0027'
down_revision: str | None = '0026'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'webhook_endpoints',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=True),
        sa.Column('url', sa.String(length=2048), nullable=False),
        sa.Column('event_types', sa.JSON(), nullable=False),
        sa.Column('description', sa.String(length=200), nullable=True),
        sa.Column('secret_enc', sa.LargeBinary(), nullable=False),
        sa.Column('previous_secret_enc', sa.LargeBinary(), nullable=True),
        sa.Column('previous_secret_expires_at', patron.db.UTCDateTime(), nullable=True),
        sa.Column('created_at', patron.db.UTCDateTime(), nullable=False),
        sa.Column('updated_at', patron.db.UTCDateTime(), nullable=False),
        sa.Column('failing_since', patron.db.UTCDateTime(), nullable=True),
        sa.Column('disabled_at', patron.db.UTCDateTime(), nullable=True),
        sa.Column('disabled_reason', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_webhook_endpoints_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    )
    op.create_index(op.f('ix_webhook_endpoints_merchant_id'), 'webhook_endpoints',
                    ['merchant_id'], unique=False)
    op.create_table(
        'deliveries',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('event_id', sa.Uuid(), nullable=False),
        sa.Column('event_type', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('endpoint_id', sa.Uuid(), nullable=True),
        sa.Column('member_id', sa.Uuid(), nullable=True),
        sa.Column('purpose', sa.String(length=16), nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=300), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('round_attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', patron.db.UTCDateTime(), nullable=True),
        sa.Column('created_at', patron.db.UTCDateTime(), nullable=False),
        sa.Column('updated_at', patron.db.UTCDateTime(), nullable=False),
        sa.Column('delivered_at', patron.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'],
                                name=op.f('fk_deliveries_endpoint_id_webhook_endpoints')),
        sa.ForeignKeyConstraint(['event_id'], ['outbox_events.id'],
                                name=op.f('fk_deliveries_event_id_outbox_events')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_deliveries_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_deliveries_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', 'id', name=op.f('pk_deliveries')),
    )
    op.create_index(op.f('ix_deliveries_event_id'), 'deliveries', ['event_id'], unique=False)
    op.create_index('ix_deliveries_status_due', 'deliveries', ['status', 'next_attempt_at'],
                    unique=False)
    op.create_index('ix_deliveries_endpoint_created', 'deliveries',
                    ['endpoint_id', 'created_at'], unique=False)
    op.create_index('ix_deliveries_member_created', 'deliveries', ['member_id', 'created_at'],
                    unique=False)
    op.create_index('ix_deliveries_merchant_created', 'deliveries',
                    ['merchant_id', 'created_at'], unique=False)
    op.create_table(
        'delivery_attempts',
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('delivery_id', sa.Uuid(), nullable=False),
        sa.Column('number', sa.Integer(), nullable=False),
        sa.Column('attempted_at', patron.db.UTCDateTime(), nullable=False),
        sa.Column('duration_ms', sa.Integer(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('status_code', sa.Integer(), nullable=True),
        sa.Column('error', sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(['merchant_id', 'delivery_id'],
                                ['deliveries.merchant_id', 'deliveries.id'],
                                name=op.f('fk_delivery_attempts_merchant_id_deliveries')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_delivery_attempts_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('merchant_id', 'delivery_id', 'number',
                                name=op.f('pk_delivery_attempts')),
    )


def downgrade() -> None:
    op.drop_table('delivery_attempts')
    op.drop_index('ix_deliveries_merchant_created', table_name='deliveries')
    op.drop_index('ix_deliveries_member_created', table_name='deliveries')
    op.drop_index('ix_deliveries_endpoint_created', table_name='deliveries')
    op.drop_index('ix_deliveries_status_due', table_name='deliveries')
    op.drop_index(op.f('ix_deliveries_event_id'), table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_index(op.f('ix_webhook_endpoints_merchant_id'), table_name='webhook_endpoints')
    op.drop_table('webhook_endpoints')
