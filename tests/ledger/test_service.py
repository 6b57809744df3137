"""Posting, earning, burning, returns, expiry and corrections against the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from patron.kit.clock import clock
from patron.ledger import service
from patron.ledger.errors import (
    EntryNotFound,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidEntry,
    InvalidPoints,
    ReturnExceedsOriginal,
    UnbalancedEntry,
)
from patron.ledger.models import (
    EntryKind,
    JournalEntry,
    LedgerAccount,
    PointLot,
    PointLotDraw,
    Posting,
)
from tests.ledger.conftest import invariants, snapshot

NOW = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)
SOON = NOW + timedelta(days=20)
LATER = NOW + timedelta(days=60)


@pytest.fixture(autouse=True)
def _frozen():
    clock.freeze(NOW)


def earn(database, cast, points, key, *, expires_at=None, merchant=0, member=0):
    with database.session_scope() as session:
        return service.earn(session, merchant_id=cast.merchants[merchant],
                            member_id=cast.members[member], points=points,
                            expires_at=expires_at, idempotency_key=key, source=f"test:{key}")


def burn(database, cast, points, key, *, merchant=0, member=0):
    with database.session_scope() as session:
        return service.burn(session, merchant_id=cast.merchants[merchant],
                            member_id=cast.members[member], points=points,
                            idempotency_key=key, source=f"test:{key}")


def balance(database, cast, *, merchant=0, member=0):
    with database.session_scope() as session:
        return service.points_balance(session, merchant_id=cast.merchants[merchant],
                                      member_id=cast.members[member])


def account_balance(database, key):
    with database.session_scope() as session:
        return session.scalar(select(LedgerAccount.balance).where(LedgerAccount.key == key))


def lots(database, cast, *, merchant=0, member=0):
    with database.session_scope() as session:
        return session.execute(
            select(PointLot.amount, PointLot.remaining, PointLot.expires_at)
            .where(PointLot.merchant_id == cast.merchants[merchant],
                   PointLot.member_id == cast.members[member])
            .order_by(PointLot.id)).all()


def postings(database, entry_id):
    with database.session_scope() as session:
        return sorted(session.execute(
            select(LedgerAccount.key, Posting.amount, Posting.unit)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(Posting.entry_id == entry_id)).all())


def liability_key(cast, merchant=0):
    return f"merchant_liability:{cast.merchants[merchant]}"


def member_key(cast, merchant=0, member=0):
    return f"member_points:{cast.merchants[merchant]}:{cast.members[member]}"


# --- earn and burn ----------------------------------------------------------------------

def test_earn_posts_both_sides_and_creates_a_lot(database, cast):
    entry = earn(database, cast, 120, "e1", expires_at=SOON)
    assert entry.kind == "earn" and entry.occurred_at == NOW
    assert postings(database, entry.id) == sorted([
        (member_key(cast), 120, "points"), (liability_key(cast), -120, "points")])
    assert balance(database, cast) == 120
    assert account_balance(database, liability_key(cast)) == -120
    assert lots(database, cast) == [(120, 120, SOON)]
    assert invariants(database) == []


def test_balances_are_per_merchant_and_per_member(database, cast):
    earn(database, cast, 10, "a")
    earn(database, cast, 20, "b", merchant=1)
    earn(database, cast, 30, "c", member=1)
    assert [balance(database, cast, merchant=m, member=p) for m, p in
            ((0, 0), (1, 0), (0, 1), (1, 1))] == [10, 20, 30, 0]
    with pytest.raises(InsufficientPoints):
        burn(database, cast, 11, "x")
    assert invariants(database) == []


def test_burn_takes_soonest_expiring_lots_first(database, cast):
    earn(database, cast, 100, "never")
    earn(database, cast, 50, "later", expires_at=LATER)
    earn(database, cast, 30, "soon", expires_at=SOON)
    entry = burn(database, cast, 60, "b1")
    assert postings(database, entry.id) == sorted([
        (member_key(cast), -60, "points"), (liability_key(cast), 60, "points")])
    assert lots(database, cast) == [(100, 100, None), (50, 20, LATER), (30, 0, SOON)]
    assert balance(database, cast) == 120
    assert account_balance(database, liability_key(cast)) == -120
    with database.session_scope() as session:
        draws = session.execute(select(PointLotDraw.amount).where(
            PointLotDraw.entry_id == entry.id).order_by(PointLotDraw.id)).scalars().all()
    assert draws == [30, 30]
    assert invariants(database) == []


def test_a_burn_beyond_the_balance_changes_nothing(database, cast):
    earn(database, cast, 100, "e1", expires_at=SOON)
    before = snapshot(database)
    with pytest.raises(InsufficientPoints) as refused:
        burn(database, cast, 101, "b1")
    assert refused.value.status == 409 and refused.value.code == "insufficient_points"
    assert snapshot(database) == before
    burn(database, cast, 100, "b2")
    assert balance(database, cast) == 0
    assert lots(database, cast) == [(100, 0, SOON)]


def test_a_refusal_inside_a_larger_transaction_leaves_nothing_behind(database, cast):
    earn(database, cast, 10, "e1")
    before = snapshot(database)
    with database.session_scope() as session:
        refused = None
        try:
            service.burn(session, merchant_id=cast.merchants[0], member_id=cast.members[0],
                         points=11, idempotency_key="b1", source="test")
        except InsufficientPoints as error:
            refused = error
        # The caller carries on and commits: the savepoint already undid the refused burn.
    assert refused is not None
    assert snapshot(database) == before
    with database.session_scope() as session:
        assert session.scalar(select(JournalEntry).where(
            JournalEntry.idempotency_key == "b1")) is None


def test_the_same_key_returns_the_first_entry_without_posting_again(database, cast):
    first = earn(database, cast, 100, "e1")
    again = earn(database, cast, 100, "e1")
    assert again.id == first.id
    assert balance(database, cast) == 100
    assert len(lots(database, cast)) == 1
    burned = burn(database, cast, 40, "b1")
    assert burn(database, cast, 40, "b1").id == burned.id
    assert balance(database, cast) == 60
    assert invariants(database) == []


def test_a_reused_key_with_different_content_is_refused(database, cast):
    earn(database, cast, 100, "e1")
    before = snapshot(database)
    with pytest.raises(IdempotencyKeyReused):
        earn(database, cast, 99, "e1")
    with pytest.raises(IdempotencyKeyReused):
        earn(database, cast, 100, "e1", member=1)
    with pytest.raises(IdempotencyKeyReused):
        burn(database, cast, 100, "e1")
    assert snapshot(database) == before


@pytest.mark.parametrize("points", [0, -5, 10**12 + 1, True, 2.5])
def test_points_must_be_a_positive_whole_number(database, cast, points):
    before = snapshot(database)
    with pytest.raises(InvalidPoints) as refused:
        earn(database, cast, points, "e1")
    assert refused.value.status == 422
    with pytest.raises(InvalidPoints):
        burn(database, cast, points, "b1")
    assert snapshot(database) == before


def test_taps_earn_like_purchases(database, cast):
    with database.session_scope() as session:
        entry = service.earn(session, merchant_id=cast.merchants[0],
                             member_id=cast.members[0], points=5, expires_at=None,
                             idempotency_key="tap1", source="reader:1", kind=EntryKind.tap)
        with pytest.raises(InvalidEntry):
            service.earn(session, merchant_id=cast.merchants[0], member_id=cast.members[0],
                         points=5, expires_at=None, idempotency_key="tap2", source="x",
                         kind=EntryKind.burn)
    assert entry.kind == "tap"
    assert balance(database, cast) == 5


# --- post_entry -------------------------------------------------------------------------

def test_post_entry_refuses_unbalanced_postings(database, cast):
    with database.session_scope() as session:
        member = service.member_points_account(session, merchant_id=cast.merchants[0],
                                               member_id=cast.members[0])
        liability = service.liability_account(session, merchant_id=cast.merchants[0])
        miles = service.member_miles_account(session, member_id=cast.members[0])
        pool = service.coalition_pool_account(session)
    before = snapshot(database)
    common = dict(kind=EntryKind.adjust, idempotency_key="k", merchant_id=cast.merchants[0],
                  member_id=cast.members[0], source="test", reason="test", occurred_at=NOW)
    for bad in ([(member, 10), (liability, -9)],
                [(member, 10), (pool, -10)],  # balanced in number, not per unit
                [(member, 10), (miles, -10), (pool, 10), (liability, -10)][:3],
                [(member, 0), (liability, 0)],
                []):
        with database.session_scope() as session, pytest.raises(UnbalancedEntry) as refused:
            service.post_entry(session, postings=bad, **common)
        assert refused.value.status == 500
    assert snapshot(database) == before


def test_post_entry_never_lets_a_member_go_negative(database, cast):
    with database.session_scope() as session:
        member = service.member_points_account(session, merchant_id=cast.merchants[0],
                                               member_id=cast.members[0])
        adjustments = service.adjustments_account(session, merchant_id=cast.merchants[0])
    before = snapshot(database)
    with database.session_scope() as session, pytest.raises(InsufficientPoints):
        service.post_entry(session, kind=EntryKind.adjust, idempotency_key="k",
                           merchant_id=cast.merchants[0], member_id=cast.members[0],
                           source="t", reason="t", occurred_at=NOW,
                           postings=[(member, -1), (adjustments, 1)])
    assert snapshot(database) == before


def test_accounts_are_created_once(database, cast):
    with database.session_scope() as session:
        first = service.liability_account(session, merchant_id=cast.merchants[0])
        second = service.liability_account(session, merchant_id=cast.merchants[0])
        assert first is second
    with database.session_scope() as session:
        third = service.liability_account(session, merchant_id=cast.merchants[0])
        count = len(session.scalars(select(LedgerAccount)).all())
    assert third.id == first.id and count == 1


# --- returns ----------------------------------------------------------------------------

def claw_back(database, entry_id, points, key):
    with database.session_scope() as session:
        return service.claw_back(session, earn_entry_id=entry_id, points=points,
                                 idempotency_key=key, source=f"test:{key}")


def restore(database, entry_id, points, key):
    with database.session_scope() as session:
        return service.restore_burn(session, burn_entry_id=entry_id, points=points,
                                    idempotency_key=key, source=f"test:{key}")


def test_claw_back_takes_the_purchase_s_own_lot_first(database, cast):
    earn(database, cast, 50, "old", expires_at=SOON)
    purchase = earn(database, cast, 30, "purchase", expires_at=LATER)
    entry = claw_back(database, purchase.id, 20, "r1")
    assert entry.kind == "return" and entry.reverses_entry_id == purchase.id
    assert postings(database, entry.id) == sorted([
        (member_key(cast), -20, "points"), (liability_key(cast), 20, "points")])
    assert lots(database, cast) == [(50, 50, SOON), (30, 10, LATER)]
    claw_back(database, purchase.id, 10, "r2")
    assert lots(database, cast) == [(50, 50, SOON), (30, 0, LATER)]
    assert balance(database, cast) == 50
    assert invariants(database) == []


def test_claw_back_of_spent_points_leaves_a_debt_that_the_next_earn_repays(database, cast):
    purchase = earn(database, cast, 100, "purchase", expires_at=SOON)
    burn(database, cast, 80, "spent")
    claw_back(database, purchase.id, 100, "r1")
    assert balance(database, cast) == -80
    assert lots(database, cast) == [(100, 0, SOON)]
    assert invariants(database) == []
    # A burn cannot use a debt.
    before = snapshot(database)
    with pytest.raises(InsufficientPoints):
        burn(database, cast, 1, "b2")
    assert snapshot(database) == before
    # 50 points repay 50 of the 80 owed: no lot.
    earn(database, cast, 50, "e2", expires_at=LATER)
    assert balance(database, cast) == -30
    assert len(lots(database, cast)) == 1
    # 100 more: 30 repay the rest, 70 become a lot.
    earn(database, cast, 100, "e3", expires_at=LATER)
    assert balance(database, cast) == 70
    assert lots(database, cast)[-1] == (70, 70, LATER)
    assert invariants(database) == []


def test_returns_never_take_back_more_than_the_purchase_earned(database, cast):
    purchase = earn(database, cast, 100, "purchase")
    earn(database, cast, 500, "other")
    claw_back(database, purchase.id, 60, "r1")
    before = snapshot(database)
    with pytest.raises(ReturnExceedsOriginal) as refused:
        claw_back(database, purchase.id, 41, "r2")
    assert refused.value.status == 409 and refused.value.code == "return_exceeds_original"
    assert snapshot(database) == before
    claw_back(database, purchase.id, 40, "r3")
    assert balance(database, cast) == 500


def test_only_earns_can_be_clawed_back_and_only_burns_restored(database, cast):
    purchase = earn(database, cast, 100, "purchase")
    spend = burn(database, cast, 10, "spend")
    import uuid

    with pytest.raises(InvalidEntry):
        claw_back(database, spend.id, 5, "r1")
    with pytest.raises(InvalidEntry):
        restore(database, purchase.id, 5, "r2")
    with pytest.raises(EntryNotFound):
        claw_back(database, uuid.uuid4(), 5, "r3")


def test_a_restored_burn_gets_its_points_back_with_their_expiry(database, cast):
    earn(database, cast, 30, "soon", expires_at=SOON)
    earn(database, cast, 50, "later", expires_at=LATER)
    spend = burn(database, cast, 60, "spend")  # 30 from SOON, 30 from LATER
    assert balance(database, cast) == 20
    entry = restore(database, spend.id, 40, "r1")  # the LATER 30 first, then 10 of SOON
    assert entry.kind == "return" and entry.reverses_entry_id == spend.id
    assert postings(database, entry.id) == sorted([
        (member_key(cast), 40, "points"), (liability_key(cast), -40, "points")])
    assert lots(database, cast)[2:] == [(10, 10, SOON), (30, 30, LATER)]
    assert balance(database, cast) == 60
    restore(database, spend.id, 20, "r2")
    assert lots(database, cast)[4:] == [(20, 20, SOON)]
    before = snapshot(database)
    with pytest.raises(ReturnExceedsOriginal):
        restore(database, spend.id, 1, "r3")
    assert snapshot(database) == before
    assert balance(database, cast) == 80
    assert invariants(database) == []


def test_a_restore_repays_a_debt_first(database, cast):
    earn(database, cast, 40, "kept", expires_at=LATER)
    purchase = earn(database, cast, 60, "purchase", expires_at=SOON)
    spend = burn(database, cast, 100, "spend")
    claw_back(database, purchase.id, 60, "r1")
    assert balance(database, cast) == -60
    restore(database, spend.id, 100, "r2")
    assert balance(database, cast) == 40
    # 60 of the restored 100 repaid the debt (the soonest-expiring points went first).
    assert lots(database, cast)[2:] == [(40, 40, LATER)]
    assert invariants(database) == []


# --- expiry -----------------------------------------------------------------------------

def test_expiry_moves_what_is_left_of_each_due_lot(database, cast):
    earn(database, cast, 100, "soon", expires_at=SOON)
    earn(database, cast, 10, "later", expires_at=LATER)
    earn(database, cast, 7, "never")
    earn(database, cast, 40, "elsewhere", expires_at=SOON, merchant=1)
    burn(database, cast, 30, "b1")
    with database.session_scope() as session:
        assert service.expire(session, now=SOON - timedelta(seconds=1)) == []
    with database.session_scope() as session:
        entries = service.expire(session, now=SOON)
        assert [e.kind for e in entries] == ["expire", "expire"]
        assert {e.occurred_at for e in entries} == {SOON}
    assert balance(database, cast) == 17
    assert balance(database, cast, merchant=1) == 0
    assert account_balance(database, f"expired:{cast.merchants[0]}") == 70
    assert account_balance(database, f"expired:{cast.merchants[1]}") == 40
    assert lots(database, cast) == [(100, 0, SOON), (10, 10, LATER), (7, 7, None)]
    with database.session_scope() as session:
        assert service.expire(session, now=SOON) == []  # nothing twice
    with database.session_scope() as session:
        assert len(service.expire(session, now=LATER + timedelta(days=999))) == 1
    assert balance(database, cast) == 7
    assert invariants(database) == []


def test_expiry_runs_in_batches(database, cast):
    for index in range(5):
        earn(database, cast, 1, f"e{index}", expires_at=SOON)
    with database.session_scope() as session:
        assert len(service.expire(session, now=SOON, limit=2)) == 2
    with database.session_scope() as session:
        assert len(service.expire(session, now=SOON, limit=10)) == 3
    assert balance(database, cast) == 0


# --- corrections ------------------------------------------------------------------------

def adjust(database, cast, points, key, reason="goodwill", **extra):
    with database.session_scope() as session:
        return service.adjust(session, merchant_id=cast.merchants[0],
                              member_id=cast.members[0], points=points, reason=reason,
                              idempotency_key=key, source="operator:console", **extra)


def test_adjustments_credit_and_debit_against_the_adjustments_account(database, cast):
    entry = adjust(database, cast, 25, "a1", expires_at=LATER)
    assert entry.reason == "goodwill"
    assert lots(database, cast) == [(25, 25, LATER)]
    adjust(database, cast, -5, "a2", reason="double scan")
    assert balance(database, cast) == 20
    assert account_balance(database, f"adjustments:{cast.merchants[0]}") == -20
    before = snapshot(database)
    with pytest.raises(InsufficientPoints):
        adjust(database, cast, -21, "a3", reason="too much")
    with pytest.raises(InvalidEntry):
        adjust(database, cast, 5, "a4", reason="  ")
    assert snapshot(database) == before
    assert invariants(database) == []


# --- miles ------------------------------------------------------------------------------

def test_miles_move_against_the_coalition_pool(database, cast):
    with database.session_scope() as session:
        service.earn_miles(session, member_id=cast.members[0], miles=500,
                           idempotency_key="m1", source="test",
                           merchant_id=cast.merchants[1])
        service.burn_miles(session, member_id=cast.members[0], miles=200,
                           idempotency_key="m2", source="test")
    before = snapshot(database)
    with database.session_scope() as session, pytest.raises(InsufficientPoints) as refused:
        service.burn_miles(session, member_id=cast.members[0], miles=301,
                           idempotency_key="m3", source="test")
    assert refused.value.extra["unit"] == "miles"
    assert snapshot(database) == before
    with database.session_scope() as session:
        assert service.miles_balance(session, member_id=cast.members[0]) == 300
    assert account_balance(database, "coalition_pool") == -300
    assert invariants(database) == []


# --- the invariant checker finds what it should -----------------------------------------

def test_check_invariants_reports_tampering(database, cast):
    purchase = earn(database, cast, 100, "e1", expires_at=SOON)
    assert invariants(database) == []
    with database.session_scope() as session:
        session.execute(update(LedgerAccount).where(LedgerAccount.key == member_key(cast))
                        .values(balance=LedgerAccount.balance + 1))
        session.execute(update(PointLot).values(remaining=PointLot.remaining - 3))
        session.execute(update(Posting).where(Posting.entry_id == purchase.id,
                                              Posting.amount < 0).values(amount=-99))
    found = invariants(database)
    assert any("postings sum to 1, not 0" in line for line in found), found
    assert any("balance 101 but postings sum to 100" in line for line in found), found
    assert any("balance -100 but postings sum to -99" in line for line in found), found
    assert any("lots hold 97, balance is 101" in line for line in found), found
    assert any("draws total 0" in line for line in found), found


def test_check_invariants_reports_an_unexplained_debt(database, cast):
    earn(database, cast, 10, "e1")
    with database.session_scope() as session:
        member = service.member_points_account(session, merchant_id=cast.merchants[0],
                                               member_id=cast.members[0])
        entry = JournalEntry(kind="adjust", idempotency_key="forged", source="x", reason="x",
                             merchant_id=cast.merchants[0], member_id=cast.members[0],
                             occurred_at=NOW)
        session.add(entry)
        session.flush()
        liability = service.liability_account(session, merchant_id=cast.merchants[0])
        session.add_all([Posting(entry_id=entry.id, account_id=member.id, amount=-15,
                                 unit="points", merchant_id=cast.merchants[0]),
                         Posting(entry_id=entry.id, account_id=liability.id, amount=15,
                                 unit="points", merchant_id=cast.merchants[0])])
        session.execute(update(LedgerAccount).where(LedgerAccount.id == member.id)
                        .values(balance=-5))
        session.execute(update(LedgerAccount).where(LedgerAccount.id == liability.id)
                        .values(balance=5))
        session.execute(update(PointLot).values(remaining=0))
    found = invariants(database)
    assert any("below what returns took back (0)" in line for line in found), found
