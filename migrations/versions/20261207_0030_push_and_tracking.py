"""web push subscriptions of members; opens and clicks of targeted e-mails

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07 20:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0030'
down_revision: str | None = '0029'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'push_subscriptions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('endpoint', sa.String(length=2048), nullable=False),
        sa.Column('p256dh', sa.LargeBinary(length=65), nullable=False),
        sa.Column('auth', sa.LargeBinary(length=16), nullable=False),
        sa.Column('registered_by', sa.Uuid(), nullable=True),
        sa.Column('created_at', patron.db.UTCDateTime(), nullable=False),
        sa.Column('expires_at', patron.db.UTCDateTime(), nullable=True),
        sa.Column('last_delivered_at', patron.db.UTCDateTime(), nullable=True),
        sa.Column('gone_at', patron.db.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_push_subscriptions_member_id_members')),
        sa.ForeignKeyConstraint(['registered_by'], ['merchants.id'],
                                name=op.f('fk_push_subscriptions_registered_by_merchants')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_push_subscriptions')),
        sa.UniqueConstraint('member_id', 'endpoint',
                            name=op.f('uq_push_subscriptions_member_id_endpoint')),
    )
    op.create_index(op.f('ix_push_subscriptions_member_id'), 'push_subscriptions',
                    ['member_id'], unique=False)
    with op.batch_alter_table('targeted_recipients', schema=None) as batch_op:
        batch_op.add_column(sa.Column('opened_at', patron.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('clicked_at', patron.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('targeted_recipients', schema=None) as batch_op:
        batch_op.drop_column('clicked_at')
        batch_op.drop_column('opened_at')
    op.drop_index(op.f('ix_push_subscriptions_member_id'), table_name='push_subscriptions')
    op.drop_table('push_subscriptions')
