"""A random walk through earn / burn / returns / expiry / corrections, checked after every
step against the invariants and against a plain-Python model of the books.

``PATRON_HYPOTHESIS_EXAMPLES`` sets the number of walks (50 by default; CI runs 2000).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select

from patron.db import Database
from patron.kit.clock import clock
from patron.ledger import service
from patron.ledger.errors import InsufficientPoints, ReturnExceedsOriginal
from patron.ledger.models import LedgerAccount, PointLot
from patron.ledger.rules import expiry_at
from tests.conftest import empty_all_tables
from tests.ledger.conftest import ZONES, make_cast

EXAMPLES = int(os.environ.get("PATRON_HYPOTHESIS_EXAMPLES", "50"))
START = datetime(2026, 1, 30, 22, 0, tzinfo=UTC)  # a month end somewhere in the world

merchant_index = st.integers(0, 2)
member_index = st.integers(0, 2)
expiry_months = st.none() | st.integers(0, 3)


@dataclass
class ModelLot:
    account: tuple[int, int]
    remaining: int
    expires_at: datetime | None


@dataclass
class ModelEarn:
    entry_id: object
    account: tuple[int, int]
    points: int
    lot_id: int | None
    clawed: int = 0


@dataclass
class ModelBurn:
    entry_id: object
    account: tuple[int, int]
    draws: list[tuple[int, int]]  # (lot id, amount) in the order taken
    restored: int = 0


@dataclass
class Model:
    balances: dict[tuple[int, int], int] = field(default_factory=dict)
    liability: dict[int, int] = field(default_factory=dict)
    expired: dict[int, int] = field(default_factory=dict)
    adjustments: dict[int, int] = field(default_factory=dict)
    lots: dict[int, ModelLot] = field(default_factory=dict)

    def order(self, account: tuple[int, int]) -> list[int]:
        live = [lot_id for lot_id, lot in self.lots.items()
                if lot.account == account and lot.remaining > 0]
        return sorted(live, key=lambda i: (self.lots[i].expires_at is None,
                                           self.lots[i].expires_at or START, i))

    def take(self, account: tuple[int, int], amount: int,
             first: int | None = None) -> list[tuple[int, int]]:
        order = self.order(account)
        if first in order:
            order.remove(first)
            order.insert(0, first)
        taken = []
        for lot_id in order:
            if amount == 0:
                break
            n = min(amount, self.lots[lot_id].remaining)
            self.lots[lot_id].remaining -= n
            amount -= n
            taken.append((lot_id, n))
        return taken


class LedgerWalk(RuleBasedStateMachine):
    database: Database

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        clock.freeze(self.now)
        cast = make_cast(self.database, merchants=3, members=3)
        self.merchants, self.members = cast.merchants, cast.members
        self.model = Model(
            balances={(m, p): 0 for m in range(3) for p in range(3)},
            liability=dict.fromkeys(range(3), 0), expired=dict.fromkeys(range(3), 0),
            adjustments=dict.fromkeys(range(3), 0))
        self.earns: list[ModelEarn] = []
        self.burns: list[ModelBurn] = []
        self.serial = 0

    def teardown(self) -> None:
        clock.unfreeze()
        empty_all_tables(self.database)

    def key(self) -> str:
        self.serial += 1
        return f"walk:{self.serial}"

    def lots_of(self, entry_id: object) -> list[tuple[int, int, datetime | None]]:
        with self.database.session_scope() as session:
            return [(i, a, e) for i, a, e in session.execute(
                select(PointLot.id, PointLot.amount, PointLot.expires_at)
                .where(PointLot.entry_id == entry_id).order_by(PointLot.id))]

    def credit(self, account: tuple[int, int], entry_id: object,
               pieces: list[tuple[int, datetime | None]]) -> list[int]:
        """Model a credit: repay the debt from the first pieces, the rest become lots."""
        debt = max(0, -self.model.balances[account])
        self.model.balances[account] += sum(amount for amount, _ in pieces)
        expected = []
        for amount, expires_at in pieces:
            repaid = min(debt, amount)
            debt -= repaid
            if amount - repaid:
                expected.append((amount - repaid, expires_at))
        made = self.lots_of(entry_id)
        assert [(a, e) for _, a, e in made] == expected
        for lot_id, amount, expires_at in made:
            self.model.lots[lot_id] = ModelLot(account, amount, expires_at)
        return [lot_id for lot_id, _, _ in made]

    # --- rules ------------------------------------------------------------------------

    @rule(m=merchant_index, p=member_index, points=st.integers(1, 200), months=expiry_months)
    def earn(self, m: int, p: int, points: int, months: int | None) -> None:
        expires_at = None if months is None else expiry_at(self.now, ZONES[m], months)
        with self.database.session_scope() as session:
            entry = service.earn(session, merchant_id=self.merchants[m],
                                 member_id=self.members[p], points=points,
                                 expires_at=expires_at, idempotency_key=self.key(),
                                 source="walk")
        self.model.liability[m] -= points
        made = self.credit((m, p), entry.id, [(points, expires_at)])
        self.earns.append(ModelEarn(entry.id, (m, p), points, made[0] if made else None))

    @rule(m=merchant_index, p=member_index, points=st.integers(1, 300))
    def burn(self, m: int, p: int, points: int) -> None:
        enough = self.model.balances[(m, p)] >= points
        try:
            with self.database.session_scope() as session:
                entry = service.burn(session, merchant_id=self.merchants[m],
                                     member_id=self.members[p], points=points,
                                     idempotency_key=self.key(), source="walk")
        except InsufficientPoints:
            assert not enough
            return
        assert enough
        self.model.balances[(m, p)] -= points
        self.model.liability[m] += points
        self.burns.append(ModelBurn(entry.id, (m, p), self.model.take((m, p), points)))

    @precondition(lambda self: self.earns)
    @rule(data=st.data())
    def claw_back(self, data: st.DataObject) -> None:
        earned = data.draw(st.sampled_from(self.earns))
        points = data.draw(st.integers(1, earned.points - earned.clawed + 5))
        try:
            with self.database.session_scope() as session:
                service.claw_back(session, earn_entry_id=earned.entry_id, points=points,
                                  idempotency_key=self.key(), source="walk")
        except ReturnExceedsOriginal:
            assert earned.clawed + points > earned.points
            return
        assert earned.clawed + points <= earned.points
        earned.clawed += points
        m, _ = earned.account
        self.model.take(earned.account, min(points, max(0, self.model.balances[earned.account])),
                        first=earned.lot_id)
        self.model.balances[earned.account] -= points
        self.model.liability[m] += points

    @precondition(lambda self: self.burns)
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        burned = data.draw(st.sampled_from(self.burns))
        total = sum(amount for _, amount in burned.draws)
        points = data.draw(st.integers(1, total - burned.restored + 5))
        try:
            with self.database.session_scope() as session:
                entry = service.restore_burn(session, burn_entry_id=burned.entry_id,
                                             points=points, idempotency_key=self.key(),
                                             source="walk")
        except ReturnExceedsOriginal:
            assert burned.restored + points > total
            return
        assert burned.restored + points <= total
        # Unwind the draws like a stack, skipping what earlier restores gave back.
        skip, left, pieces = burned.restored, points, []
        for lot_id, amount in reversed(burned.draws):
            skipped = min(skip, amount)
            skip -= skipped
            take = min(left, amount - skipped)
            if take:
                pieces.append((take, self.model.lots[lot_id].expires_at))
                left -= take
        burned.restored += points
        pieces.sort(key=lambda piece: (piece[1] is None, piece[1] or START))
        self.model.liability[burned.account[0]] -= points
        self.credit(burned.account, entry.id, pieces)

    @rule(m=merchant_index, p=member_index,
          points=st.integers(-150, 150).filter(lambda n: n != 0))
    def adjust(self, m: int, p: int, points: int) -> None:
        enough = points > 0 or self.model.balances[(m, p)] >= -points
        try:
            with self.database.session_scope() as session:
                entry = service.adjust(session, merchant_id=self.merchants[m],
                                       member_id=self.members[p], points=points,
                                       reason="walk", idempotency_key=self.key(),
                                       source="walk")
        except InsufficientPoints:
            assert not enough
            return
        assert enough
        self.model.adjustments[m] -= points
        if points > 0:
            self.credit((m, p), entry.id, [(points, None)])
        else:
            self.model.balances[(m, p)] += points
            self.model.take((m, p), -points)

    @rule(days=st.integers(1, 70), hours=st.integers(0, 23))
    def time_passes_and_points_expire(self, days: int, hours: int) -> None:
        self.now += timedelta(days=days, hours=hours)
        clock.freeze(self.now)
        while True:
            with self.database.session_scope() as session:
                if not service.expire(session, now=self.now, limit=3):
                    break
        for lot in self.model.lots.values():
            if lot.expires_at is not None and lot.expires_at <= self.now and lot.remaining:
                self.model.balances[lot.account] -= lot.remaining
                self.model.expired[lot.account[0]] += lot.remaining
                lot.remaining = 0

    # --- checks -----------------------------------------------------------------------

    @invariant()
    def books_are_sound_and_match_the_model(self) -> None:
        with self.database.session_scope() as session:
            assert service.check_invariants(session) == []
            stored = {key: balance for key, balance in session.execute(
                select(LedgerAccount.key, LedgerAccount.balance))}
            lots = {i: r for i, r in session.execute(select(PointLot.id, PointLot.remaining))}
        expected = {}
        for (m, p), balance in self.model.balances.items():
            expected[f"member_points:{self.merchants[m]}:{self.members[p]}"] = balance
        for m in range(3):
            expected[f"merchant_liability:{self.merchants[m]}"] = self.model.liability[m]
            expected[f"expired:{self.merchants[m]}"] = self.model.expired[m]
            expected[f"adjustments:{self.merchants[m]}"] = self.model.adjustments[m]
        assert {key: stored.get(key, 0) for key in expected} == expected
        assert set(stored) <= set(expected)
        assert lots == {lot_id: lot.remaining for lot_id, lot in self.model.lots.items()}


def test_random_walks_keep_the_books_sound(database: Database) -> None:
    LedgerWalk.database = database
    run_state_machine_as_test(LedgerWalk, settings=settings(
        max_examples=EXAMPLES, stateful_step_count=15, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
