"""The same history imported by several processes at once (an operator's retry while the
first run still goes): every member and receipt once, on each backend with real
concurrent connections."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from patron.imports import runner
from patron.imports.sample import write_history
from patron.members.models import Member
from patron.pos.models import PosTransaction
from patron.scores.models import MemberStats
from patron.tenancy.models import Terminal
from patron.tenancy.schemas import MerchantCreate, StoreCreate
from patron.tenancy.service import SYSTEM, create_merchant, create_store

RUNS = 3


def _at_once(work):
    barrier = threading.Barrier(RUNS)

    def run(_):
        barrier.wait()
        return work()

    with ThreadPoolExecutor(max_workers=RUNS) as pool:
        return list(pool.map(run, range(RUNS)))


def test_one_file_imported_three_times_at_once_adds_each_row_once(database):
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=31313, name="Twice", currency="EUR", timezone="Europe/Paris",
            country="FR"))
        create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                     data=StoreCreate(code="paris", name="Paris"))
        merchant_id = merchant.id
    members, purchases = io.StringIO(), io.StringIO()
    end = datetime.now(UTC) - timedelta(days=1)
    made = write_history(members, purchases, members=300, purchases=900,
                         start=end - timedelta(days=400), end=end, store_codes=["paris"],
                         currency="EUR", minor_units=2)

    def load(kind, text):
        importer = runner.import_members if kind == "members" else runner.import_purchases
        return importer(database.session_scope, actor=SYSTEM, merchant_id=merchant_id,
                        file=io.BytesIO(text.encode()))

    enrolled = _at_once(lambda: load("members", members.getvalue()))
    assert sum(run.imported for run in enrolled) == 300
    assert all(run.imported + run.already_there == 300 and not run.refused
               for run in enrolled), enrolled
    bought = _at_once(lambda: load("purchases", purchases.getvalue()))
    assert sum(run.imported for run in bought) == made.purchases
    assert all(run.imported + run.already_there == made.purchases and not run.refused
               for run in bought), [run.model_dump(exclude={"refused_rows"}) for run in bought]
    with database.session_scope() as session:
        def count(model, *where):
            return session.scalar(select(func.count()).select_from(model).where(*where))

        assert count(Member, Member.merchant_id == merchant_id) == 300
        assert count(PosTransaction) == made.purchases
        assert count(Terminal, Terminal.code == "history-import") == 1
        assert session.scalar(select(func.sum(MemberStats.purchase_count))) == made.purchases
