"""vouchers: the offer, merchant and batch references checked once per statement; two
indexes fewer for bearer codes

On PostgreSQL a code's ``offer_id``, ``merchant_id`` and ``batch_id`` were foreign keys,
checked row by row: three trigger queries per stored code, about half of the database's
work in a million-code batch (docs/benchmarks.md, "Voucher codes"). They are now checked
by one trigger per statement (``AFTER INSERT … FOR EACH STATEMENT`` over the inserted
rows: one join for a whole ``COPY``), which is stricter than the foreign keys were: the
code's merchant must be its offer's. A code's references never change afterwards (a row
trigger refuses it). Merchants, offers and batches are never deleted (they are revoked or
kept as history), so the other direction needs no guard. A violation is still a
``foreign_key_violation`` (SQLSTATE 23503). SQLite keeps the foreign keys (its bulk path
is not the one that needs the speed). The models keep declaring the three keys, marked
``patron.db.STATEMENT_CHECKED``: the schema comparison knows PostgreSQL checks them this
way.

Two indexes cost every stored code without serving it: ``ix_vouchers_merchant_id`` (no
query looks codes up by merchant alone; it served the foreign key) is dropped, and
``ix_vouchers_member_offer`` (the wallet) holds personal codes only, so bearer codes, the
bulk ones, are not written to it. Both backends.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22 19:40:00.000000

Written by hand.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FOREIGN_KEYS = (
    ('fk_vouchers_merchant_id_merchants', 'merchant_id', 'merchants'),
    ('fk_vouchers_offer_id_offers', 'offer_id', 'offers'),
    ('fk_vouchers_batch_id_voucher_batches', 'batch_id', 'voucher_batches'),
)

PERSONAL = sa.text('member_id IS NOT NULL')

POSTGRES_UP = """
CREATE FUNCTION vouchers_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.code, n.offer_id, n.merchant_id, n.batch_id INTO bad
    FROM new_vouchers n
    LEFT JOIN offers o ON o.id = n.offer_id
    LEFT JOIN voucher_batches b ON b.id = n.batch_id
    WHERE o.id IS NULL
       OR o.merchant_id IS DISTINCT FROM n.merchant_id
       OR (n.batch_id IS NOT NULL AND b.id IS NULL)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'insert on table "vouchers" violates its references: code % names '
                        'offer %, merchant %, batch %', bad.code, bad.offer_id,
                        bad.merchant_id, bad.batch_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER vouchers_check_references
    AFTER INSERT ON vouchers REFERENCING NEW TABLE AS new_vouchers
    FOR EACH STATEMENT EXECUTE FUNCTION vouchers_check_references();

CREATE FUNCTION vouchers_references_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a code''s offer, merchant and batch do not change (code %)', OLD.code
        USING ERRCODE = 'foreign_key_violation';
END
$$;

CREATE TRIGGER vouchers_references_fixed
    BEFORE UPDATE ON vouchers FOR EACH ROW
    WHEN (OLD.offer_id IS DISTINCT FROM NEW.offer_id
          OR OLD.merchant_id IS DISTINCT FROM NEW.merchant_id
          OR OLD.batch_id IS DISTINCT FROM NEW.batch_id)
    EXECUTE FUNCTION vouchers_references_fixed();
"""

POSTGRES_DOWN = """
DROP TRIGGER vouchers_references_fixed ON vouchers;
DROP FUNCTION vouchers_references_fixed();
DROP TRIGGER vouchers_check_references ON vouchers;
DROP FUNCTION vouchers_check_references();
"""


def upgrade() -> None:
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_index('ix_vouchers_merchant_id')
        batch_op.drop_index('ix_vouchers_member_offer')
        batch_op.create_index('ix_vouchers_member_offer', ['member_id', 'offer_id'],
                              unique=False, postgresql_where=PERSONAL, sqlite_where=PERSONAL)
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name, _column, _table in FOREIGN_KEYS:
        op.drop_constraint(name, 'vouchers', type_='foreignkey')
    op.execute(POSTGRES_UP)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(POSTGRES_DOWN)
        for name, column, table in FOREIGN_KEYS:
            op.create_foreign_key(name, 'vouchers', table, [column], ['id'])
    with op.batch_alter_table('vouchers', schema=None) as batch_op:
        batch_op.drop_index('ix_vouchers_member_offer')
        batch_op.create_index('ix_vouchers_member_offer', ['member_id', 'offer_id'],
                              unique=False)
        batch_op.create_index('ix_vouchers_merchant_id', ['merchant_id'], unique=False)
