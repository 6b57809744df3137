"""counted failures: each security event names the limit it counts towards, and a client
address is counted within one merchant

Only what could be guessing counts (an unknown, malformed or another merchant's code; no
member found); business refusals are recorded without a throttle. The throttle's indexes
lead with it, and the address index with the merchant, so a count reads only counted
events of one subject.

Revision ID: 0020
Revises: 0023
Create Date: 2026-12-07 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0020'
down_revision: str | None = '0023'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_VOUCHER_KINDS = ("voucher_validation", "voucher_reservation", "voucher_redemption",
                  "voucher_lookup", "pos_quote", "pos_commit")


def upgrade() -> None:
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('throttle', sa.String(length=16), nullable=True))
        batch_op.drop_index('ix_security_events_terminal_occurred')
        batch_op.drop_index('ix_security_events_address_occurred')
        batch_op.drop_index('ix_security_events_member_occurred')
        batch_op.create_index('ix_security_events_terminal_occurred',
                              ['throttle', 'terminal_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_security_events_address_occurred',
                              ['throttle', 'merchant_id', 'client_address', 'occurred_at'],
                              unique=False)
        batch_op.create_index('ix_security_events_member_occurred',
                              ['throttle', 'member_id', 'occurred_at'], unique=False)
    # The events recorded so far that were guesses count from now on as they would have.
    events = sa.table('security_events', sa.column('kind', sa.String),
                      sa.column('refusal', sa.String), sa.column('throttle', sa.String))
    op.execute(events.update()
               .where(events.c.kind.in_(_VOUCHER_KINDS),
                      events.c.refusal.in_(("not_found", "invalid_voucher_code")))
               .values(throttle="voucher"))


def downgrade() -> None:
    with op.batch_alter_table('security_events', schema=None) as batch_op:
        batch_op.drop_index('ix_security_events_member_occurred')
        batch_op.drop_index('ix_security_events_address_occurred')
        batch_op.drop_index('ix_security_events_terminal_occurred')
        batch_op.create_index('ix_security_events_terminal_occurred',
                              ['terminal_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_security_events_address_occurred',
                              ['client_address', 'occurred_at'], unique=False)
        batch_op.create_index('ix_security_events_member_occurred',
                              ['member_id', 'occurred_at'], unique=False)
        batch_op.drop_column('throttle')
