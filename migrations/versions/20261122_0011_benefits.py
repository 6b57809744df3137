"""threshold benefits and stamp cards: rules, members' counts, what purchases counted,
the benefits issued

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 17:00:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'benefit_rules',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('measure', sa.String(length=16), nullable=False),
        sa.Column('mode', sa.String(length=8), nullable=False),
        sa.Column('threshold', sa.BigInteger(), nullable=False),
        sa.Column('offer_id', sa.Uuid(), nullable=False),
        sa.Column('sku', sa.String(length=64), nullable=True),
        sa.Column('category', sa.String(length=64), nullable=True),
        sa.Column('created_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('deactivated_at', patron.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("measure IN ('points', 'miles', 'purchases', 'items')",
                           name=op.f('ck_benefit_rules_measure_known')),
        sa.CheckConstraint("mode IN ('once', 'every')", name=op.f('ck_benefit_rules_mode_known')),
        sa.CheckConstraint('threshold >= 1', name=op.f('ck_benefit_rules_threshold_positive')),
        sa.CheckConstraint("(measure = 'miles') = (merchant_id IS NULL)",
                           name=op.f('ck_benefit_rules_owner_fits')),
        sa.CheckConstraint("(sku IS NULL AND category IS NULL) OR (measure IN ('purchases', "
                           "'items') AND (sku IS NULL OR category IS NULL))",
                           name=op.f('ck_benefit_rules_filter_fits')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_benefit_rules_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['offer_id'], ['offers.id'],
                                name=op.f('fk_benefit_rules_offer_id_offers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_benefit_rules')),
    )
    with op.batch_alter_table('benefit_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benefit_rules_merchant_id'), ['merchant_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_benefit_rules_offer_id'), ['offer_id'],
                              unique=False)

    op.create_table(
        'benefit_progress',
        sa.Column('rule_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=True),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('count >= 0', name=op.f('ck_benefit_progress_count_non_negative')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_benefit_progress_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_benefit_progress_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['rule_id'], ['benefit_rules.id'],
                                name=op.f('fk_benefit_progress_rule_id_benefit_rules')),
        sa.PrimaryKeyConstraint('rule_id', 'member_id', name=op.f('pk_benefit_progress')),
    )
    with op.batch_alter_table('benefit_progress', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benefit_progress_member_id'), ['member_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_benefit_progress_merchant_id'), ['merchant_id'],
                              unique=False)

    op.create_table(
        'benefit_contributions',
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('rule_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=False),
        sa.Column('counted', sa.BigInteger(), nullable=False),
        sa.Column('taken_back', sa.BigInteger(), nullable=False),
        sa.CheckConstraint('counted >= 1 AND taken_back >= 0 AND taken_back <= counted',
                           name=op.f('ck_benefit_contributions_taken_back_in_range')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_benefit_contributions_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_benefit_contributions_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['rule_id'], ['benefit_rules.id'],
                                name=op.f('fk_benefit_contributions_rule_id_benefit_rules')),
        sa.ForeignKeyConstraint(
            ['transaction_id'], ['pos_transactions.id'],
            name=op.f('fk_benefit_contributions_transaction_id_pos_transactions')),
        sa.PrimaryKeyConstraint('transaction_id', 'rule_id',
                                name=op.f('pk_benefit_contributions')),
    )
    with op.batch_alter_table('benefit_contributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_benefit_contributions_merchant_id'),
                              ['merchant_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_benefit_contributions_rule_id'), ['rule_id'],
                              unique=False)

    op.create_table(
        'issued_benefits',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('rule_id', sa.Uuid(), nullable=False),
        sa.Column('member_id', sa.Uuid(), nullable=False),
        sa.Column('merchant_id', sa.Uuid(), nullable=True),
        sa.Column('crossing', sa.BigInteger(), nullable=False),
        sa.Column('voucher_id', sa.Uuid(), nullable=False),
        sa.Column('transaction_id', sa.Uuid(), nullable=False),
        sa.Column('issued_at', patron.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', patron.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('revoked_by_return_id', sa.Uuid(), nullable=True),
        sa.CheckConstraint('crossing >= 1', name=op.f('ck_issued_benefits_crossing_positive')),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_issued_benefits_member_id_members')),
        sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                                name=op.f('fk_issued_benefits_merchant_id_merchants')),
        sa.ForeignKeyConstraint(['revoked_by_return_id'], ['pos_returns.id'],
                                name=op.f('fk_issued_benefits_revoked_by_return_id_pos_returns')),
        sa.ForeignKeyConstraint(['rule_id'], ['benefit_rules.id'],
                                name=op.f('fk_issued_benefits_rule_id_benefit_rules')),
        sa.ForeignKeyConstraint(['transaction_id'], ['pos_transactions.id'],
                                name=op.f('fk_issued_benefits_transaction_id_pos_transactions')),
        sa.ForeignKeyConstraint(['voucher_id'], ['vouchers.id'],
                                name=op.f('fk_issued_benefits_voucher_id_vouchers')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_issued_benefits')),
        sa.UniqueConstraint('voucher_id', name=op.f('uq_issued_benefits_voucher_id')),
    )
    with op.batch_alter_table('issued_benefits', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_issued_benefits_member_id'), ['member_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_issued_benefits_merchant_id'), ['merchant_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_issued_benefits_rule_id'), ['rule_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_issued_benefits_transaction_id'),
                              ['transaction_id'], unique=False)
        batch_op.create_index('uq_issued_benefits_rule_member_crossing',
                              ['rule_id', 'member_id', 'crossing'], unique=True,
                              postgresql_where=sa.text('revoked_at IS NULL'),
                              sqlite_where=sa.text('revoked_at IS NULL'))


def downgrade() -> None:
    with op.batch_alter_table('issued_benefits', schema=None) as batch_op:
        batch_op.drop_index('uq_issued_benefits_rule_member_crossing',
                            postgresql_where=sa.text('revoked_at IS NULL'),
                            sqlite_where=sa.text('revoked_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_issued_benefits_transaction_id'))
        batch_op.drop_index(batch_op.f('ix_issued_benefits_rule_id'))
        batch_op.drop_index(batch_op.f('ix_issued_benefits_merchant_id'))
        batch_op.drop_index(batch_op.f('ix_issued_benefits_member_id'))
    op.drop_table('issued_benefits')

    with op.batch_alter_table('benefit_contributions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benefit_contributions_rule_id'))
        batch_op.drop_index(batch_op.f('ix_benefit_contributions_merchant_id'))
    op.drop_table('benefit_contributions')

    with op.batch_alter_table('benefit_progress', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benefit_progress_merchant_id'))
        batch_op.drop_index(batch_op.f('ix_benefit_progress_member_id'))
    op.drop_table('benefit_progress')

    with op.batch_alter_table('benefit_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_benefit_rules_offer_id'))
        batch_op.drop_index(batch_op.f('ix_benefit_rules_merchant_id'))
    op.drop_table('benefit_rules')
