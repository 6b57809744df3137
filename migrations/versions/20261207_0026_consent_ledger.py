"""consent ledger: consent per member x scope (a merchant, or the coalition) x channel x
purpose, and its current state

``consent_events`` becomes the append-only ledger: ``merchant_id`` NULL is the coalition's
scope; ``purpose`` (``marketing`` or ``transactional``), ``policy_version`` and
``evidence`` are new. The rows already there were marketing consents recorded for their
merchant, so they become purpose ``marketing``. ``consent_states`` holds the current state
per member x scope x channel x purpose, the latest ledger row of each (``event_id``), built
here from the rows already there; the application keeps it in the transaction of every
ledger row. ``members.consent_sms``/``consent_email``/``consent_push`` are dropped: they
cached the last change by anyone, which the ledger holds (docs/privacy.md, "Consent").

Members erased or withdrawn before this revision get a revocation row for each marketing
consent still granted (source ``erasure`` or ``withdrawal``), as the application now records
at erasure and withdrawal.

Downgrade: the flags come back as the last marketing change of any scope per channel (what
they cached); coalition-scoped rows go back to the member's enrolling merchant (where the
operator's changes were recorded before); transactional rows, which the old schema cannot
hold, are deleted.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import patron.db

revision: str = '0026'
down_revision: str | None = '0025'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNELS = ('sms', 'email', 'push')


def _merchant_scope(column: str) -> str:
    """SQL for a merchant's scope key, ``str(uuid)`` as the application writes it: SQLite
    stores a uuid as its 32 hex digits, PostgreSQL as a uuid."""
    if op.get_bind().dialect.name == 'postgresql':
        return f'CAST({column} AS VARCHAR)'
    parts = ' || \'-\' || '.join(f'substr({column}, {start}, {length})' for start, length in (
        (1, 8), (9, 4), (13, 4), (17, 4), (21, 12)))
    return f'lower({parts})'


def upgrade() -> None:
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purpose', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('policy_version', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('evidence', sa.String(length=500), nullable=True))
    op.execute("UPDATE consent_events SET purpose = 'marketing'")
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.alter_column('purpose', existing_type=sa.String(length=16), nullable=False)
        batch_op.alter_column('merchant_id', existing_type=sa.Uuid(), nullable=True)
        batch_op.create_check_constraint('channel', "channel IN ('sms', 'email', 'push')")
        batch_op.create_check_constraint('purpose',
                                         "purpose IN ('marketing', 'transactional')")

    op.create_table('consent_states',
    sa.Column('member_id', sa.Uuid(), nullable=False),
    sa.Column('scope', sa.String(length=36), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('purpose', sa.String(length=16), nullable=False),
    sa.Column('merchant_id', sa.Uuid(), nullable=True),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('policy_version', sa.String(length=32), nullable=True),
    sa.Column('since', patron.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.CheckConstraint("channel IN ('sms', 'email', 'push')",
                       name=op.f('ck_consent_states_channel')),
    sa.CheckConstraint("purpose IN ('marketing', 'transactional')",
                       name=op.f('ck_consent_states_purpose')),
    sa.CheckConstraint("(merchant_id IS NULL AND scope = 'coalition') OR "
                       "(merchant_id IS NOT NULL AND scope <> 'coalition')",
                       name=op.f('ck_consent_states_scope_of_merchant')),
    sa.ForeignKeyConstraint(['event_id'], ['consent_events.id'],
                            name=op.f('fk_consent_states_event_id_consent_events')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                            name=op.f('fk_consent_states_member_id_members')),
    sa.ForeignKeyConstraint(['merchant_id'], ['merchants.id'],
                            name=op.f('fk_consent_states_merchant_id_merchants')),
    sa.PrimaryKeyConstraint('member_id', 'scope', 'channel', 'purpose',
                            name=op.f('pk_consent_states'))
    )
    with op.batch_alter_table('consent_states', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_states_merchant_id'), ['merchant_id'],
                              unique=False)

    # Erasure and withdrawal set no ledger row before: a member no longer active whose
    # latest marketing consent for a merchant is a grant gets its revocation now, dated when
    # the member left (the application records these itself from now on).
    op.execute(
        'INSERT INTO consent_events (member_id, merchant_id, channel, purpose, granted, '
        'source, occurred_at) '
        "SELECT e.member_id, e.merchant_id, e.channel, e.purpose, false, CASE m.status "
        "WHEN 'erased' THEN 'erasure' ELSE 'withdrawal' END, "
        'COALESCE(m.erased_at, m.withdrawn_at, m.updated_at) '
        'FROM consent_events e JOIN members m ON m.id = e.member_id '
        "WHERE m.status <> 'active' AND e.granted = true AND e.id = ("
        'SELECT max(later.id) FROM consent_events later '
        'WHERE later.member_id = e.member_id AND later.merchant_id = e.merchant_id '
        'AND later.channel = e.channel AND later.purpose = e.purpose) ORDER BY e.id')

    # Every row so far has a merchant: the state of each key is its latest row.
    scope = _merchant_scope('e.merchant_id')
    op.execute(
        'INSERT INTO consent_states (member_id, scope, channel, purpose, merchant_id, '  # noqa: S608
        'granted, source, policy_version, since, event_id) '
        f'SELECT e.member_id, {scope}, e.channel, e.purpose, e.merchant_id, e.granted, '
        'e.source, e.policy_version, e.occurred_at, e.id FROM consent_events e '
        'WHERE e.id = (SELECT max(later.id) FROM consent_events later '
        'WHERE later.member_id = e.member_id AND later.merchant_id = e.merchant_id '
        'AND later.channel = e.channel AND later.purpose = e.purpose)')

    # The flags cached the last change by anyone; the ledger and its state replace them.
    # They are plain columns (no index, key or check), which SQLite drops in place.
    for channel in CHANNELS:
        op.drop_column('members', f'consent_{channel}')


def downgrade() -> None:
    # Added in place with a default (SQLite adds a NOT NULL column only so); the default
    # stays, as removing it would copy the members table on SQLite.
    for channel in CHANNELS:
        op.add_column('members', sa.Column(f'consent_{channel}', sa.Boolean(), nullable=False,
                                           server_default=sa.false()))
        op.execute(
            f'UPDATE members SET consent_{channel} = COALESCE((SELECT e.granted '  # noqa: S608
            'FROM consent_events e WHERE e.member_id = members.id '
            f"AND e.channel = '{channel}' AND e.purpose = 'marketing' "
            'ORDER BY e.id DESC LIMIT 1), false)')

    with op.batch_alter_table('consent_states', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_states_merchant_id'))
    op.drop_table('consent_states')

    op.execute("DELETE FROM consent_events WHERE purpose <> 'marketing'")
    op.execute('UPDATE consent_events SET merchant_id = (SELECT m.merchant_id FROM members m '
               'WHERE m.id = consent_events.member_id) WHERE merchant_id IS NULL')
    with op.batch_alter_table('consent_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_consent_events_purpose'), type_='check')
        batch_op.drop_constraint(op.f('ck_consent_events_channel'), type_='check')
        batch_op.alter_column('merchant_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column('evidence')
        batch_op.drop_column('policy_version')
        batch_op.drop_column('purpose')
