"""Merchants and members for ledger tests, made through the real services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from patron.db import Database
from patron.ledger import service
from patron.ledger.models import JournalEntry, LedgerAccount, PointLot, PointLotDraw, Posting
from patron.members.schemas import MemberCreate
from patron.members.service import enrol
from patron.tenancy.schemas import MerchantCreate
from patron.tenancy.service import SYSTEM, create_merchant
from tests.conftest import SUMMARY_SUM

ZONES = ("Asia/Tokyo", "America/Los_Angeles", "Europe/London")

# Each shard's line template and figures (test_stateful.py, the random ledger walks), run
# by this process: the terminal summary prints their total over all shards and workers.
WALK_REPORTS: list[tuple[str, dict[str, float]]] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """The walks' figures go with the test's report to the run's terminal summary (also
    from an xdist worker), summed over the shards: ``tests.conftest.SUMMARY_SUM``."""
    report = yield
    if call.when == "call":
        report.user_properties.extend((SUMMARY_SUM, part) for part in WALK_REPORTS)
        WALK_REPORTS.clear()
    return report


@dataclass(frozen=True)
class Cast:
    merchants: list[uuid.UUID]
    members: list[uuid.UUID]


def make_cast(database: Database, *, merchants: int = 1, members: int = 1) -> Cast:
    with database.session_scope() as session:
        made = [create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=10001 + index, name=f"Shop {index}", currency="JPY",
            timezone=ZONES[index % len(ZONES)], country="JP")).id
            for index in range(merchants)]
        people = [enrol(session, actor=SYSTEM, data=MemberCreate(merchant_id=made[0])).id
                  for _ in range(members)]
    return Cast(merchants=made, members=people)


@pytest.fixture
def cast(database: Database) -> Cast:
    return make_cast(database, merchants=2, members=2)


def snapshot(database: Database) -> dict[str, object]:
    """Everything the ledger holds, for 'nothing changed' assertions."""
    with database.session_scope() as session:
        return {
            "accounts": sorted(session.execute(
                select(LedgerAccount.key, LedgerAccount.balance)).all()),
            "entries": sorted(session.scalars(select(JournalEntry.idempotency_key)).all()),
            "postings": session.scalar(select(Posting.id).order_by(Posting.id.desc())
                                       .limit(1)),
            "lots": sorted(session.execute(
                select(PointLot.id, PointLot.remaining)).all()),
            "draws": session.scalar(select(PointLotDraw.id).order_by(PointLotDraw.id.desc())
                                    .limit(1)),
        }


def invariants(database: Database) -> list[str]:
    with database.session_scope() as session:
        return service.check_invariants(session)
