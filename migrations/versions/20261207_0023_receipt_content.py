"""tenancy: the receipt content a reader shows (facility information, a questionnaire
link, a consent prompt), per store and per reader

Revision ID: 0023
Revises: 0024
Create Date: 2026-12-07 05:20:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0023'
down_revision: str | None = '0024'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (('receipt_facility_info', 1000), ('receipt_questionnaire_url', 500),
           ('receipt_consent_prompt', 500))


def upgrade() -> None:
    for table in ('stores', 'terminals'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, length in COLUMNS:
                batch_op.add_column(sa.Column(name, sa.String(length=length), nullable=True))


def downgrade() -> None:
    for table in ('terminals', 'stores'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in reversed(COLUMNS):
                batch_op.drop_column(name)
