"""Program service: defaults, full replacement, validation, tiers from real ledger entries."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select

from patron.db import Database
from patron.errors import Forbidden, NotFound
from patron.ledger import service as ledger
from patron.programs import service
from patron.programs.errors import InvalidProgram
from patron.programs.models import Program, ProgramCategory, ProgramTier
from patron.programs.rules import DEFAULT_PROGRAM, Rounding, TierView
from patron.programs.schemas import ProgramWrite
from patron.tenancy.models import Role
from patron.tenancy.service import SYSTEM, Principal

from .conftest import Shop

NOW = datetime(2026, 6, 15, 3, 0, tzinfo=UTC)
GOLD_PROGRAM: dict[str, Any] = {
    "earn_points": 1, "earn_per_amount": 100, "rounding": "round_half_up",
    "category_multipliers_bp": {"Coffee": 20_000}, "excluded_categories": ["tobacco"],
    "point_value_minor": 1, "min_burn": 100, "expiry_months": 12,
    "tiers": [{"name": "Blue", "threshold_points": 0},
              {"name": "Silver", "threshold_points": 1000, "earn_multiplier_bp": 12_500},
              {"name": "Gold", "threshold_points": 5000, "earn_multiplier_bp": 15_000}],
}


def merchant_key(merchant_id: uuid.UUID) -> Principal:
    return Principal(key_id=None, role=Role.merchant, merchant_id=merchant_id)


def put(database: Database, merchant_id: uuid.UUID, body: dict[str, Any],
        actor: Principal = SYSTEM) -> service.MerchantProgram:
    with database.session_scope() as session:
        return service.put_program(session, actor=actor, merchant_id=merchant_id,
                                   data=ProgramWrite.model_validate(body))


def rows(database: Database) -> tuple[int, int, int]:
    with database.session_scope() as session:
        return tuple(session.scalar(select(func.count()).select_from(model))  # type: ignore[return-value]
                     for model in (Program, ProgramCategory, ProgramTier))


def test_default_program_when_none_is_configured(database: Database, shop: Shop) -> None:
    with database.session_scope() as session:
        program = service.get_program(session, merchant_id=shop.other_merchant_id)
    assert program.configured is False
    assert program.rules == DEFAULT_PROGRAM
    assert (program.currency, program.currency_minor_units) == ("USD", 2)
    assert program.updated_at is None
    assert rows(database) == (0, 0, 0)


def test_unknown_merchant_is_not_found(database: Database) -> None:
    with database.session_scope() as session, pytest.raises(NotFound):
        service.get_program(session, merchant_id=uuid.uuid4())


def test_put_then_get_round_trips_with_normalised_categories(database: Database,
                                                             shop: Shop) -> None:
    put(database, shop.merchant_id, GOLD_PROGRAM, actor=merchant_key(shop.merchant_id))
    with database.session_scope() as session:
        program = service.get_program(session, merchant_id=shop.merchant_id)
    assert program.configured is True
    assert program.rules.rounding == Rounding.round_half_up
    assert program.rules.category_multipliers_bp == {"coffee": 20_000}
    assert program.rules.excluded_categories == frozenset({"tobacco"})
    assert (program.rules.min_burn, program.rules.expiry_months) == (100, 12)
    assert program.rules.tiers == (TierView("Blue", 0, 10_000), TierView("Silver", 1000, 12_500),
                                   TierView("Gold", 5000, 15_000))
    assert rows(database) == (1, 2, 3)


def test_put_replaces_everything_including_tiers(database: Database, shop: Shop) -> None:
    put(database, shop.merchant_id, GOLD_PROGRAM)
    smaller = {"earn_points": 2, "earn_per_amount": 300, "point_value_minor": 2,
               "expiry_months": None, "tiers": [{"name": "Members", "threshold_points": 0}]}
    program = put(database, shop.merchant_id, smaller)
    assert program.rules == DEFAULT_PROGRAM.__class__(
        earn_points=2, earn_per_amount=300, rounding=Rounding.floor, point_value_minor=2,
        min_burn=1, expiry_months=None, tiers=(TierView("Members", 0),))
    assert rows(database) == (1, 0, 1)
    # a tier may keep its name with a new threshold (no unique clash inside one replace)
    again = dict(GOLD_PROGRAM, tiers=[{"name": "Blue", "threshold_points": 0},
                                      {"name": "Gold", "threshold_points": 1000}])
    assert [t.threshold_points for t in put(database, shop.merchant_id, again).rules.tiers] == [
        0, 1000]


def test_programs_are_per_merchant(database: Database, shop: Shop) -> None:
    put(database, shop.merchant_id, GOLD_PROGRAM)
    with database.session_scope() as session:
        other = service.get_program(session, merchant_id=shop.other_merchant_id)
    assert other.configured is False


def test_another_merchants_key_gets_not_found_and_nothing_changes(database: Database,
                                                                  shop: Shop) -> None:
    with pytest.raises(NotFound):
        put(database, shop.merchant_id, GOLD_PROGRAM,
            actor=merchant_key(shop.other_merchant_id))
    terminal = Principal(key_id=None, role=Role.terminal, merchant_id=shop.merchant_id)
    with pytest.raises(Forbidden):
        put(database, shop.merchant_id, GOLD_PROGRAM, actor=terminal)
    assert rows(database) == (0, 0, 0)


@pytest.mark.parametrize(("change", "code", "field"), [
    ({"tiers": [{"name": "Silver", "threshold_points": 100}]},
     "base_tier_threshold_not_zero", "tiers[0].threshold_points"),
    ({"tiers": [{"name": "A", "threshold_points": 0}, {"name": "B", "threshold_points": 500},
                {"name": "C", "threshold_points": 500}]},
     "tiers_not_increasing", "tiers[2].threshold_points"),
    ({"tiers": [{"name": "A", "threshold_points": 0}, {"name": "B", "threshold_points": 500},
                {"name": "C", "threshold_points": 400}]},
     "tiers_not_increasing", "tiers[2].threshold_points"),
    ({"tiers": [{"name": "Gold", "threshold_points": 0},
                {"name": "gold", "threshold_points": 10}]},
     "duplicate_tier_name", "tiers[1].name"),
    ({"category_multipliers_bp": {"coffee": 20_000, "COFFEE": 15_000}},
     "duplicate_category", "category_multipliers_bp.COFFEE"),
    ({"excluded_categories": ["tobacco", "Tobacco"]},
     "duplicate_category", "excluded_categories[1]"),
    ({"category_multipliers_bp": {"coffee": 20_000}, "excluded_categories": ["Coffee"]},
     "category_multiplied_and_excluded", "excluded_categories[0]"),
])
def test_inconsistent_programs_are_refused_with_the_field(database: Database, shop: Shop,
                                                          change: dict[str, Any], code: str,
                                                          field: str) -> None:
    put(database, shop.merchant_id, GOLD_PROGRAM)
    before = rows(database)
    with pytest.raises(InvalidProgram) as caught:
        put(database, shop.merchant_id, {**GOLD_PROGRAM, **change})
    assert (caught.value.status, caught.value.code, caught.value.extra["field"]) == (
        422, code, field)
    assert rows(database) == before
    with database.session_scope() as session:
        assert service.get_program(session, merchant_id=shop.merchant_id).rules.tiers[2].name \
            == "Gold"


# --- points earned in 12 months, from the ledger --------------------------------------------

def earn(session: Any, shop: Shop, points: int, at: datetime, *, key: str,
         member: uuid.UUID | None = None, merchant: uuid.UUID | None = None,
         kind: ledger.EntryKind = ledger.EntryKind.earn) -> uuid.UUID:
    return ledger.earn(session, merchant_id=merchant or shop.merchant_id,
                       member_id=member or shop.member_id, points=points, expires_at=None,
                       idempotency_key=key, source="test", occurred_at=at, kind=kind).id


def earned(database: Database, shop: Shop, now: datetime = NOW, **kw: Any) -> int:
    with database.session_scope() as session:
        return service.points_earned_12m(session, merchant_id=kw.get("merchant",
                                                                     shop.merchant_id),
                                         member_id=kw.get("member", shop.member_id), now=now)


def test_points_earned_is_zero_without_an_account(database: Database, shop: Shop) -> None:
    assert earned(database, shop) == 0


def test_points_earned_counts_earns_and_taps_in_the_last_365_days(database: Database,
                                                                  shop: Shop) -> None:
    with database.session_scope() as session:
        earn(session, shop, 100, NOW - timedelta(days=365), key="a")        # just out
        earn(session, shop, 200, NOW - timedelta(days=365) + timedelta(seconds=1), key="b")
        earn(session, shop, 40, NOW - timedelta(days=3), key="c", kind=ledger.EntryKind.tap)
        earn(session, shop, 8, NOW, key="d")                                # now is in
        earn(session, shop, 1000, NOW + timedelta(seconds=1), key="e")      # future: out
        # other members and merchants never count
        earn(session, shop, 5000, NOW - timedelta(days=1), key="f", member=shop.other_member_id)
        earn(session, shop, 7000, NOW - timedelta(days=1), key="g",
             merchant=shop.other_merchant_id)
    assert earned(database, shop) == 248
    assert earned(database, shop, member=shop.other_member_id) == 5000
    assert earned(database, shop, merchant=shop.other_merchant_id) == 7000


def test_burns_expiry_and_adjustments_never_lower_points_earned(database: Database,
                                                                shop: Shop) -> None:
    with database.session_scope() as session:
        earn(session, shop, 1000, NOW - timedelta(days=30), key="earn")
        ledger.burn(session, merchant_id=shop.merchant_id, member_id=shop.member_id,
                    points=900, idempotency_key="burn", source="test",
                    occurred_at=NOW - timedelta(days=20))
        ledger.adjust(session, merchant_id=shop.merchant_id, member_id=shop.member_id,
                      points=-50, reason="correction", idempotency_key="adj", source="test",
                      occurred_at=NOW - timedelta(days=10))
        ledger.adjust(session, merchant_id=shop.merchant_id, member_id=shop.member_id,
                      points=5000, reason="goodwill", idempotency_key="adj2", source="test",
                      occurred_at=NOW - timedelta(days=10))
        assert ledger.points_balance(session, merchant_id=shop.merchant_id,
                                     member_id=shop.member_id) == 5050
    assert earned(database, shop) == 1000


def test_claw_backs_reduce_the_earn_they_reverse_within_its_window(database: Database,
                                                                   shop: Shop) -> None:
    with database.session_scope() as session:
        recent = earn(session, shop, 1000, NOW - timedelta(days=100), key="recent")
        old = earn(session, shop, 600, NOW - timedelta(days=400), key="old")
        ledger.claw_back(session, earn_entry_id=recent, points=300, idempotency_key="r1",
                         source="test", occurred_at=NOW - timedelta(days=50))
        # a return today of a purchase from 400 days ago: not in this year's total at all
        ledger.claw_back(session, earn_entry_id=old, points=600, idempotency_key="r2",
                         source="test", occurred_at=NOW - timedelta(days=1))
        # a return after "now" is not counted yet
        ledger.claw_back(session, earn_entry_id=recent, points=100, idempotency_key="r3",
                         source="test", occurred_at=NOW + timedelta(days=1))
    assert earned(database, shop) == 700
    assert earned(database, shop, now=NOW + timedelta(days=2)) == 600


def test_restored_burns_are_not_earnings(database: Database, shop: Shop) -> None:
    with database.session_scope() as session:
        earn(session, shop, 500, NOW - timedelta(days=10), key="earn")
        burn = ledger.burn(session, merchant_id=shop.merchant_id, member_id=shop.member_id,
                           points=400, idempotency_key="burn", source="test",
                           occurred_at=NOW - timedelta(days=9))
        ledger.restore_burn(session, burn_entry_id=burn.id, points=400,
                            idempotency_key="restore", source="test",
                            occurred_at=NOW - timedelta(days=8))
    assert earned(database, shop) == 500


def test_member_tier_from_real_ledger_entries(database: Database, shop: Shop) -> None:
    put(database, shop.merchant_id, GOLD_PROGRAM)
    with database.session_scope() as session:
        first = earn(session, shop, 800, NOW - timedelta(days=200), key="p1")
        earn(session, shop, 300, NOW - timedelta(days=20), key="p2")
    with database.session_scope() as session:
        tier = service.member_tier(session, merchant_id=shop.merchant_id,
                                   member_id=shop.member_id, now=NOW)
    assert tier.points_earned_12m == 1100
    assert tier.current is not None and tier.current.name == "Silver"
    assert tier.next is not None and tier.next.name == "Gold"
    assert (tier.points_to_next, tier.progress_bp) == (3900, 250)
    with database.session_scope() as session:
        ledger.claw_back(session, earn_entry_id=first, points=101, idempotency_key="ret",
                         source="test", occurred_at=NOW - timedelta(days=1))
        tier = service.member_tier(session, merchant_id=shop.merchant_id,
                                   member_id=shop.member_id, now=NOW)
    assert tier.current is not None and tier.current.name == "Blue"
    assert (tier.points_earned_12m, tier.points_to_next) == (999, 1)
    # 200 days on, the first purchase has left the window
    with database.session_scope() as session:
        later = service.member_tier(session, merchant_id=shop.merchant_id,
                                    member_id=shop.member_id, now=NOW + timedelta(days=170))
    assert later.points_earned_12m == 300


def test_member_tier_without_tiers(database: Database, shop: Shop) -> None:
    with database.session_scope() as session:
        earn(session, shop, 50, NOW - timedelta(days=1), key="x")
        tier = service.member_tier(session, merchant_id=shop.merchant_id,
                                   member_id=shop.member_id, now=NOW)
    assert (tier.points_earned_12m, tier.current, tier.next) == (50, None, None)


def test_concurrent_puts_leave_one_whole_program(database: Database, shop: Shop) -> None:
    """Real threads, each its own transaction: the first PUTs race on the unique
    merchant_id, later ones on the row lock; every PUT succeeds and the result is exactly
    one of the bodies, never a mix of two."""
    count = 10
    barrier = threading.Barrier(count)

    def body(index: int) -> dict[str, Any]:
        return {**GOLD_PROGRAM, "earn_points": index + 1,
                "tiers": [{"name": "Base", "threshold_points": 0},
                          {"name": f"Top {index}", "threshold_points": 100 * (index + 1)}]}

    def run(index: int) -> int:
        barrier.wait()
        return put(database, shop.merchant_id, body(index)).rules.earn_points

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(run, range(count)))
    assert sorted(results) == list(range(1, count + 1))
    assert rows(database) == (1, 2, 2)
    with database.session_scope() as session:
        final = service.get_program(session, merchant_id=shop.merchant_id).rules
    winner = final.earn_points - 1
    assert [(t.name, t.threshold_points) for t in final.tiers] == [
        ("Base", 0), (f"Top {winner}", 100 * (winner + 1))]


def _tables_read(database: Database, merchant_id: uuid.UUID) -> tuple[service.MerchantProgram,
                                                                     set[str]]:
    """The program as a new transaction reads it, and the program tables it queried."""
    read: set[str] = set()

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        for table in ("program_categories", "program_tiers", "programs"):
            if f"FROM {table}" in statement:
                read.add(table)

    event.listen(database.engine, "before_cursor_execute", seen)
    try:
        with database.session_scope() as session:
            program = service.get_program(session, merchant_id=merchant_id)
    finally:
        event.remove(database.engine, "before_cursor_execute", seen)
    return program, read


def test_a_programs_categories_and_tiers_are_read_once_per_version(
        database: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    put(database, shop.merchant_id, GOLD_PROGRAM)
    monkeypatch.setattr(service, "_program_parts", service._ProgramParts())  # a new process
    first, read = _tables_read(database, shop.merchant_id)
    assert [tier.name for tier in first.rules.tiers] == ["Blue", "Silver", "Gold"]
    assert read == {"programs", "program_categories", "program_tiers"}
    again, read = _tables_read(database, shop.merchant_id)
    assert again == first
    assert read == {"programs"}  # the version is known: its parts are not read again
    # Another process changes the program: a new version (every change moves updated_at),
    # which this process reads whole the next time.
    reader = service._program_parts
    monkeypatch.setattr(service, "_program_parts", service._ProgramParts())
    changed = {**GOLD_PROGRAM, "category_multipliers_bp": {"Tea": 15_000},
               "tiers": [{"name": "Blue", "threshold_points": 0},
                         {"name": "Platinum", "threshold_points": 9000,
                          "earn_multiplier_bp": 20_000}]}
    put(database, shop.merchant_id, changed)
    monkeypatch.setattr(service, "_program_parts", reader)
    after, read = _tables_read(database, shop.merchant_id)
    assert read == {"programs", "program_categories", "program_tiers"}
    assert [tier.name for tier in after.rules.tiers] == ["Blue", "Platinum"]
    assert after.rules.category_multipliers_bp == {"tea": 15_000}
    assert after.updated_at is not None and first.updated_at is not None
    assert after.updated_at > first.updated_at
