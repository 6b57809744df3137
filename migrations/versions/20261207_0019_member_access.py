"""member access: verification codes and the export record

A till changes what identifies a member only with the member present, proving it with
their PIN or a one-time code sent to their phone or e-mail (kept as a keyed hash, used
once). Every export of a member's personal data is recorded: who, when, which member.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 04:47:06.948840
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db


revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('data_exports',
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('actor_role', sa.String(length=16), nullable=False),
    sa.Column('actor_key_id', sa.Uuid(), nullable=True),
    sa.Column('actor_merchant_id', sa.Uuid(), nullable=True),
    sa.Column('exported_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_data_exports_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_data_exports_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', 'id', name=op.f('pk_data_exports'))
    )
    with op.batch_alter_table('data_exports', schema=None) as batch_op:
        batch_op.create_index('ix_data_exports_exported_at', ['exported_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_data_exports_member_id'), ['member_id'], unique=False)

    op.create_table('member_verifications',
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('requested_by_merchant_id', sa.Uuid(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('consumed_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_verifications_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_member_verifications_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['requested_by_merchant_id'], ['merchants.id'], name=op.f('fk_member_verifications_requested_by_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', 'id', name=op.f('pk_member_verifications'))
    )
    with op.batch_alter_table('member_verifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_verifications_member_id'), ['member_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('member_verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_verifications_member_id'))

    op.drop_table('member_verifications')
    with op.batch_alter_table('data_exports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_data_exports_member_id'))
        batch_op.drop_index('ix_data_exports_exported_at')

    op.drop_table('data_exports')
