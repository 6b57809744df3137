"""member external reference: the id a member had in the merchant's previous system

Set by the history import (``patron import members``); unique per merchant, shown in the
member's read to the data controller and usable to look the member up.

Revision ID: 0025
Revises: 0022
Create Date: 2026-12-07 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0025'
down_revision: str | None = '0022'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('external_ref', sa.String(length=64), nullable=True))
        batch_op.create_index('uq_members_merchant_external_ref',
                              ['merchant_id', 'external_ref'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_index('uq_members_merchant_external_ref')
        batch_op.drop_column('external_ref')
