"""purchase days: a member's purchases per store-local day, the lifetime models' transactions

The lifetime models (BG/NBD, Gamma-Gamma) take a member's purchases on one store-local
day as one transaction. ``member_purchase_days`` holds, per merchant, member and day, the
purchases and what they paid less refunds; it is filled from the purchases already
recorded (each in its store's time zone, less what its returns refunded).
``score_models.fit_method`` says how the lifetime models were fitted.

Revision ID: 0024
Revises: 0019
Create Date: 2026-12-07 05:00:00.000000

Written by hand.
"""

from collections.abc import Sequence
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0024'
down_revision: str | None = '0019'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5_000


def upgrade() -> None:
    days = op.create_table('member_purchase_days',
    sa.Column('merchant_id', sa.Uuid(), nullable=False),
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('purchase_count', sa.BigInteger(), nullable=False),
    sa.Column('spend_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                            name=op.f('fk_member_purchase_days_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                            name=op.f('fk_member_purchase_days_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('merchant_id', 'member_id', 'day',
                            name=op.f('pk_member_purchase_days'))
    )
    with op.batch_alter_table('score_models') as batch:
        batch.add_column(sa.Column('fit_method', sa.String(length=32), nullable=True))
    _fill(days)


def _fill(days: sa.Table) -> None:
    transactions = sa.table('pos_transactions', sa.column('id', sa.Uuid()),
                            sa.column('merchant_id', sa.Uuid()),
                            sa.column('store_id', sa.Uuid()),
                            sa.column('member_id', sa.Uuid()),
                            sa.column('total', sa.BigInteger()),
                            sa.column('response_json', sa.Text()),
                            sa.column('occurred_at', patron.db.UTCDateTime(timezone=True)))
    returns = sa.table('pos_returns', sa.column('transaction_id', sa.Uuid()),
                       sa.column('refund_amount', sa.BigInteger()))
    stores = sa.table('stores', sa.column('id', sa.Uuid()),
                      sa.column('timezone', sa.String()))
    refunded = (sa.select(returns.c.transaction_id,
                          sa.func.sum(returns.c.refund_amount).label('refunded'))
                .group_by(returns.c.transaction_id).subquery())
    # Committed purchases of members (a refused offline sale has no answer and no stats).
    query = (sa.select(transactions.c.merchant_id, transactions.c.member_id,
                       transactions.c.occurred_at, stores.c.timezone,
                       (transactions.c.total - sa.func.coalesce(refunded.c.refunded, 0))
                       .label('kept'))
             .join(stores, stores.c.id == transactions.c.store_id)
             .outerjoin(refunded, refunded.c.transaction_id == transactions.c.id)
             .where(transactions.c.member_id.is_not(None),
                    transactions.c.response_json.is_not(None)))
    totals: dict[tuple[object, object, object], list[int]] = {}
    zones: dict[str, ZoneInfo] = {}
    for merchant_id, member_id, occurred_at, timezone, kept in op.get_bind().execute(query):
        zone = zones.setdefault(timezone, ZoneInfo(timezone))
        key = (merchant_id, member_id, occurred_at.astimezone(zone).date())
        row = totals.setdefault(key, [0, 0])
        row[0] += 1
        row[1] += int(kept)
    rows = [{'merchant_id': merchant_id, 'member_id': member_id, 'day': day,
             'purchase_count': count, 'spend_minor': spend}
            for (merchant_id, member_id, day), (count, spend) in totals.items()]
    for start in range(0, len(rows), BATCH):
        op.bulk_insert(days, rows[start:start + BATCH])


def downgrade() -> None:
    with op.batch_alter_table('score_models') as batch:
        batch.drop_column('fit_method')
    op.drop_table('member_purchase_days')
