"""offline register: signed allowances, replayed entries, exceptions

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22 16:00:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'offline_allowances',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('terminal_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('burn_limit', sa.BigInteger(), nullable=False),
        sa.Column('burned', sa.BigInteger(), nullable=False),
        sa.Column('issued_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('expires_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('document', sa.Text(), nullable=False),
        sa.CheckConstraint('burn_limit >= 0 AND burned >= 0 AND burned <= burn_limit',
                           name=op.f('ck_offline_allowances_burned_within_limit')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_offline_allowances_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_offline_allowances_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'],
                                name=op.f('fk_offline_allowances_terminal_id_terminals')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_offline_allowances')),
    )
    with op.batch_alter_table('offline_allowances', schema=None) as batch_op:
        batch_op.create_index('ix_offline_allowances_member_expires',
                              ['merchant_id', 'member_id', 'expires_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_offline_allowances_terminal_id'),
                              ['terminal_id'], unique=False)

    op.create_table(
        'offline_entries',
        sa.Column('terminal_id', sa.Uuid(), nullable=False),
        sa.Column('receipt_no', sa.String(length=64), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('allowance_id', sa.Uuid(), nullable=True),
        sa.Column('entry_hash', sa.String(length=64), nullable=False),
        sa.Column('result_json', sa.Text(), nullable=False),
        sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['allowance_id'], ['offline_allowances.id'],
                                name=op.f('fk_offline_entries_allowance_id_offline_allowances')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_offline_entries_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'],
                                name=op.f('fk_offline_entries_terminal_id_terminals')),
        sa.ForeignKeyConstraint(['transaction_id'], ['pos_transactions.id'],
                                name=op.f('fk_offline_entries_transaction_id_pos_transactions')),
        sa.PrimaryKeyConstraint('terminal_id', 'receipt_no', name=op.f('pk_offline_entries')),
    )
    with op.batch_alter_table('offline_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_offline_entries_merchant_id'), ['merchant_id'],
                              unique=False)

    op.create_table(
        'offline_exceptions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('terminal_id', sa.Uuid(), nullable=False),
        sa.Column('receipt_no', sa.String(length=64), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=True),
        sa.Column('allowance_id', sa.Uuid(), nullable=True),
        sa.Column('transaction_id', sa.Uuid(), nullable=True),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('voucher_code', sa.String(length=64), nullable=True),
        sa.Column('facts', sa.JSON(), nullable=False),
        sa.Column('fingerprint', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('resolved_at', patron.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('resolution_note', sa.Text(), nullable=True),
        sa.CheckConstraint("kind IN ('voucher_refused', 'allowance_exceeded', "
                           "'points_shortfall', 'member_refused', 'refused_entry')",
                           name=op.f('ck_offline_exceptions_kind_known')),
        sa.CheckConstraint("status IN ('open', 'resolved')",
                           name=op.f('ck_offline_exceptions_status_known')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_offline_exceptions_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_offline_exceptions_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'],
                                name=op.f('fk_offline_exceptions_terminal_id_terminals')),
        sa.ForeignKeyConstraint(
            ['transaction_id'], ['pos_transactions.id'],
            name=op.f('fk_offline_exceptions_transaction_id_pos_transactions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_offline_exceptions')),
        sa.UniqueConstraint('fingerprint', name=op.f('uq_offline_exceptions_fingerprint')),
    )
    with op.batch_alter_table('offline_exceptions', schema=None) as batch_op:
        batch_op.create_index('ix_offline_exceptions_merchant_status_created',
                              ['merchant_id', 'status', 'created_at'], unique=False)


def downgrade() -> None:
    op.drop_table('offline_exceptions')
    op.drop_table('offline_entries')
    op.drop_table('offline_allowances')
