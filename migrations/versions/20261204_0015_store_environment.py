"""campaigns: the stores' weather and stock, for campaign conditions

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 19:05:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('store_weather',
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('condition', sa.String(length=16), nullable=False),
    sa.Column('temperature_c', sa.Float(), nullable=True),
    sa.Column('observed_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('updated_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'],
                            name=op.f('fk_store_weather_store_id_stores')),
    sa.PrimaryKeyConstraint('store_id', name=op.f('pk_store_weather'))
    )
    op.create_table('store_stock',
    sa.Column('store_id', sa.Uuid(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.BigInteger(), nullable=False),
    sa.Column('overstock', sa.Boolean(), nullable=False),
    sa.Column('updated_at', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'],
                            name=op.f('fk_store_stock_store_id_stores')),
    sa.PrimaryKeyConstraint('store_id', 'sku', name=op.f('pk_store_stock'))
    )


def downgrade() -> None:
    op.drop_table('store_stock')
    op.drop_table('store_weather')
