"""`patron import members|purchases`, as a merchant moving to Patron runs it, then the
lifetime scores refitted on the imported history."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from patron.db import Database
from patron.imports.sample import write_history
from patron.scores.models import MemberPurchaseDay, MemberScore, ScoreModel
from patron.tenancy.schemas import MerchantCreate, StoreCreate
from patron.tenancy.service import SYSTEM, create_merchant, create_store
from tests.cli.test_cli import db_url, patron  # noqa: F401 - db_url is a fixture
from tests.conftest import IS_POSTGRES

pytestmark = pytest.mark.skipif(IS_POSTGRES, reason="CLI runs against its own SQLite file")


def said(result) -> str:
    """What the command printed, its lines joined (the console wraps long ones)."""
    return " ".join(result.stderr.split())


@pytest.fixture
def history(db_url, tmp_path):  # noqa: F811
    database = Database(db_url)
    try:
        with database.session_scope() as session:
            merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
                number=24680, name="Moving shop", currency="USD", timezone="America/Chicago",
                country="US"))
            for code in ("north", "south"):
                create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code=code, name=code.title()))
    finally:
        database.dispose()
    members, purchases = tmp_path / "members.csv", tmp_path / "purchases.csv"
    end = datetime.now(UTC) - timedelta(days=2)
    with members.open("w", newline="") as m, purchases.open("w", newline="") as p:
        made = write_history(m, p, members=400, purchases=1600, start=end - timedelta(days=548),
                             end=end, store_codes=["north", "south"], currency="USD",
                             minor_units=2)
    with purchases.open("a", newline="") as p:
        writer = csv.writer(p)
        writer.writerow(["M9999999", "BAD-1", end.isoformat(), "1.00", "USD", "north", "", "",
                         "1"])
        writer.writerow(["M0000001", "BAD-2", end.isoformat(), "1.001", "USD", "north", "",
                         "", "1"])
    lines = sum(1 for _ in purchases.open())
    return db_url, members, purchases, made, lines


def test_a_history_imports_once_reports_bad_rows_and_feeds_the_scores(history):
    url, members, purchases, made, lines = history
    first = patron(url, "import", "members", str(members), "--merchant-number", "24680")
    assert "400 members imported, 0 already there, 0 refused" in said(first)
    assert not members.with_name("members.refused.csv").exists()
    again = patron(url, "import", "members", str(members), "--merchant-number", "24680")
    assert "0 members imported, 400 already there" in said(again)

    bought = patron(url, "import", "purchases", str(purchases), "--merchant-number", "24680",
                    check=False)
    assert bought.returncode == 1, bought.stderr  # some rows were refused
    assert f"{made.purchases:,} purchases imported, 0 already there, 2 refused" in said(bought)
    refused = purchases.with_name("purchases.refused.csv")
    with refused.open() as file:
        rows = list(csv.DictReader(file))
    assert [(int(row["line"]), row["code"]) for row in rows] == [
        (lines - 1, "import_member_unknown"), (lines, "import_amount_precision")]
    again = patron(url, "import", "purchases", str(purchases), "--merchant-number", "24680",
                   check=False)
    assert f"0 purchases imported, {made.purchases:,} already there, 2 refused" in said(again)

    scores = patron(url, "jobs", "scores")
    assert "lifetime models fitted" in said(scores), scores.stderr
    database = Database(url)
    try:
        with database.session_scope() as session:
            repeat = set(session.scalars(
                select(MemberPurchaseDay.member_id).group_by(MemberPurchaseDay.member_id)
                .having(func.count() > 1)))
            assert len(repeat) > 100
            stored = {row.member_id: row for row in session.scalars(select(MemberScore))}
            model = session.scalars(select(ScoreModel)).one()
            assert model.bgnbd is not None and model.repeat_members == len(repeat)
    finally:
        database.dispose()
    assert repeat <= set(stored)
    assert all(0 <= stored[member].p_alive <= 1 and stored[member].clv_90d_minor >= 0
               for member in repeat)


def test_an_unknown_merchant_or_a_bad_file_changes_nothing(history):
    url, members, purchases, _, _ = history
    unknown = patron(url, "import", "members", str(members), "--merchant-number", "11111",
                     check=False)
    assert unknown.returncode == 2 and "no merchant number 11111" in said(unknown)
    wrong = patron(url, "import", "members", str(purchases), "--merchant-number", "24680",
                   check=False)
    assert wrong.returncode == 2 and "unknown 'receipt_no'" in said(wrong)
    assert not purchases.with_name("purchases.refused.csv").exists()
    again = patron(url, "import", "members", str(members), "--merchant-number", "24680")
    assert "400 members imported" in said(again)  # nothing was written before
