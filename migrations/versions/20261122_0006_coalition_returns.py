"""coalition rates, miles on purchases, returns

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 13:10:00.000000

Written by hand. The new CHECK on pos_transactions (the miles discount is part of the
total) replaces the old one; on SQLite that means copying the table (batch mode).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ZERO = sa.text("0")


def upgrade() -> None:
    op.create_table(
        'coalition_rates',
        sa.Column('currency', sa.String(length=3), nullable=False),
        sa.Column('spend_per_mile', sa.BigInteger(), nullable=False),
        sa.Column('mile_value_milli', sa.BigInteger(), nullable=False),
        sa.Column('updated_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint('spend_per_mile >= 1',
                           name=op.f('ck_coalition_rates_spend_per_mile_positive')),
        sa.CheckConstraint('mile_value_milli >= 1',
                           name=op.f('ck_coalition_rates_mile_value_positive')),
        sa.PrimaryKeyConstraint('currency', name=op.f('pk_coalition_rates')),
    )
    with op.batch_alter_table('pos_transactions', schema=None) as batch_op:
        for name in ('miles_discount', 'miles_earned', 'miles_burned'):
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False,
                                          server_default=_ZERO))
        for name in ('miles_earn_entry_id', 'miles_burn_entry_id'):
            batch_op.add_column(sa.Column(name, sa.Uuid(), nullable=True))
            batch_op.create_foreign_key(
                batch_op.f(f'fk_pos_transactions_{name}_journal_entries'),
                'journal_entries', [name], ['id'])
        batch_op.drop_constraint(op.f('ck_pos_transactions_totals_consistent'), type_='check')
        batch_op.create_check_constraint(
            'totals_add_up', 'subtotal >= 0 AND points_discount >= 0 AND miles_discount >= 0 '
            'AND total >= 0 AND total = subtotal - points_discount - miles_discount')
        batch_op.create_check_constraint(
            'miles_non_negative', 'miles_earned >= 0 AND miles_burned >= 0')
    with op.batch_alter_table('pos_transaction_lines', schema=None) as batch_op:
        for name in ('points_burned', 'miles_discount', 'miles_earned', 'miles_burned',
                     'returned_quantity'):
            batch_op.add_column(sa.Column(name, sa.BigInteger(), nullable=False,
                                          server_default=_ZERO))
        batch_op.create_check_constraint(
            'shares_non_negative', 'points_burned >= 0 AND miles_discount >= 0 '
            'AND miles_earned >= 0 AND miles_burned >= 0')
        batch_op.create_check_constraint(
            'returned_quantity_in_range',
            'returned_quantity >= 0 AND returned_quantity <= quantity')

    op.create_table(
        'pos_returns',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('terminal_id', sa.Uuid(), nullable=False),
        sa.Column('return_no', sa.String(length=64), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=True),
        sa.Column('refund_amount', sa.BigInteger(), nullable=False),
        sa.Column('points_clawed_back', sa.BigInteger(), nullable=False),
        sa.Column('points_restored', sa.BigInteger(), nullable=False),
        sa.Column('miles_clawed_back', sa.BigInteger(), nullable=False),
        sa.Column('miles_uncollected', sa.BigInteger(), nullable=False),
        sa.Column('miles_restored', sa.BigInteger(), nullable=False),
        sa.Column('occurred_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('request_hash', sa.String(length=64), nullable=False),
        sa.Column('response_json', sa.Text(), nullable=True),
        sa.CheckConstraint(
            'refund_amount >= 0 AND points_clawed_back >= 0 AND points_restored >= 0 AND '
            'miles_clawed_back >= 0 AND miles_uncollected >= 0 AND miles_restored >= 0',
            name=op.f('ck_pos_returns_values_non_negative')),
        sa.ForeignKeyConstraint(['transaction_id'], ['pos_transactions.id'],
                                name=op.f('fk_pos_returns_transaction_id_pos_transactions')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_pos_returns_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['terminal_id'], ['terminals.id'],
                                name=op.f('fk_pos_returns_terminal_id_terminals')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_pos_returns_member_id_members')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_pos_returns')),
    )
    with op.batch_alter_table('pos_returns', schema=None) as batch_op:
        batch_op.create_index('uq_pos_returns_transaction_return_no',
                              ['transaction_id', 'return_no'], unique=True)
        batch_op.create_index(batch_op.f('ix_pos_returns_merchant_id'), ['merchant_id'],
                              unique=False)

    op.create_table(
        'pos_return_lines',
        sa.Column('return_id', sa.Uuid(), nullable=False),
        sa.Column('line_no', sa.Integer(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('quantity', sa.BigInteger(), nullable=False),
        sa.Column('refund_amount', sa.BigInteger(), nullable=False),
        sa.Column('points_clawed_back', sa.BigInteger(), nullable=False),
        sa.Column('points_restored', sa.BigInteger(), nullable=False),
        sa.Column('miles_clawed_back', sa.BigInteger(), nullable=False),
        sa.Column('miles_restored', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('quantity >= 1', name=op.f('ck_pos_return_lines_quantity_positive')),
        sa.CheckConstraint(
            'refund_amount >= 0 AND points_clawed_back >= 0 AND points_restored >= 0 AND '
            'miles_clawed_back >= 0 AND miles_restored >= 0',
            name=op.f('ck_pos_return_lines_values_non_negative')),
        sa.ForeignKeyConstraint(['return_id'], ['pos_returns.id'],
                                name=op.f('fk_pos_return_lines_return_id_pos_returns')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_pos_return_lines_merchant_id_merchants')),
        sa.PrimaryKeyConstraint('return_id', 'line_no', name=op.f('pk_pos_return_lines')),
    )
    with op.batch_alter_table('pos_return_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pos_return_lines_merchant_id'), ['merchant_id'],
                              unique=False)


def downgrade() -> None:
    op.drop_table('pos_return_lines')
    op.drop_table('pos_returns')
    with op.batch_alter_table('pos_transaction_lines', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_pos_transaction_lines_returned_quantity_in_range'),
                                 type_='check')
        batch_op.drop_constraint(op.f('ck_pos_transaction_lines_shares_non_negative'),
                                 type_='check')
        for name in ('returned_quantity', 'miles_burned', 'miles_earned', 'miles_discount',
                     'points_burned'):
            batch_op.drop_column(name)
    with op.batch_alter_table('pos_transactions', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_pos_transactions_miles_non_negative'), type_='check')
        batch_op.drop_constraint(op.f('ck_pos_transactions_totals_add_up'), type_='check')
        batch_op.create_check_constraint(
            'totals_consistent', 'subtotal >= 0 AND points_discount >= 0 AND total >= 0 '
            'AND total = subtotal - points_discount')
        for name in ('miles_burn_entry_id', 'miles_earn_entry_id'):
            batch_op.drop_constraint(op.f(f'fk_pos_transactions_{name}_journal_entries'),
                                     type_='foreignkey')
            batch_op.drop_column(name)
        for name in ('miles_burned', 'miles_earned', 'miles_discount'):
            batch_op.drop_column(name)
    op.drop_table('coalition_rates')
