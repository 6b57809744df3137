"""staff users and sessions, wallet devices

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0031'
down_revision: str | None = '0030'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('staff_users',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=True),
    sa.Column('store_id', sa.Uuid(), nullable=True),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('email_enc', sa.LargeBinary(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=True),
    sa.Column('totp_secret_enc', sa.LargeBinary(), nullable=True),
    sa.Column('totp_last_step', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('language', sa.String(length=16), nullable=True),
    sa.Column('failed_logins', sa.Integer(), nullable=False),
    sa.Column('locked_until', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_login_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(role = 'operator' AND merchant_id IS NULL) OR role = 'sales_rep' OR (role <> 'operator' AND merchant_id IS NOT NULL)", name=op.f('ck_staff_users_merchant_of_role')),
    sa.CheckConstraint("role IN ('operator', 'owner', 'manager', 'cashier', 'sales_rep')", name=op.f('ck_staff_users_role')),
    sa.CheckConstraint('failed_logins >= 0', name=op.f('ck_staff_users_failed_logins_non_negative')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_staff_users_merchant_id_merchants')),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_staff_users_store_id_stores')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_users')),
    sa.UniqueConstraint('email_hash', name=op.f('uq_staff_users_email_hash'))
    )
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_users_merchant_id'), ['merchant_id'], unique=False)

    op.create_table('member_devices',
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('label', sa.String(length=100), nullable=True),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_devices_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'], name=op.f('fk_member_devices_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', 'id', name=op.f('pk_member_devices')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_member_devices_token_hash'))
    )
    with op.batch_alter_table('member_devices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_member_devices_member_id'), ['member_id'], unique=False)

    op.create_table('staff_invitations',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_user_id', sa.Uuid(), nullable=False),
    sa.Column('invited_by', sa.Uuid(), nullable=True),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('accepted_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['invited_by'], ['staff_users.id'], name=op.f('fk_staff_invitations_invited_by_staff_users')),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_staff_invitations_staff_user_id_staff_users')),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_staff_invitations'))
    )
    with op.batch_alter_table('staff_invitations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_invitations_staff_user_id'), ['staff_user_id'], unique=False)

    op.create_table('staff_sessions',
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_user_id', sa.Uuid(), nullable=False),
    sa.Column('terminal_id', sa.Uuid(), nullable=True),
    sa.Column('second_factor_at', patron.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['staff_user_id'], ['staff_users.id'], name=op.f('fk_staff_sessions_staff_user_id_staff_users')),
    sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'], name=op.f('fk_staff_sessions_terminal_id_terminals')),
    sa.PrimaryKeyConstraint('token_hash', name=op.f('pk_staff_sessions'))
    )
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_sessions_staff_user_id'), ['staff_user_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('staff_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_sessions_staff_user_id'))

    op.drop_table('staff_sessions')
    with op.batch_alter_table('staff_invitations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_invitations_staff_user_id'))

    op.drop_table('staff_invitations')
    with op.batch_alter_table('member_devices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_member_devices_member_id'))

    op.drop_table('member_devices')
    with op.batch_alter_table('staff_users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_users_merchant_id'))

    op.drop_table('staff_users')
