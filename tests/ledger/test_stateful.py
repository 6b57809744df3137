"""Random walks through the ledger as its callers use it, checked after every step against
the invariants and against a plain-Python model of the books (a step that only moved the
clock sent no SQL, so the check before it still stands and is not repeated).

A walk mixes: enrolment of new members; earning at a till (a ledger earn) and at a card
reader (a real tap through ``record_tap``, to the second of the reader's interval);
burning; returns (claw-back of earned points, into the documented debt when they were
spent, and every kind of credit repaying it; restore of burned points with their old
expiry dates; partial and too large); corrections; the clock moving freely and to the
exact store-local month end of stores in three time zones; the expiry job; and coalition
miles (earn, burn, claw-back that never goes below zero, restore).

Speed: the merchants, stores, readers, programs and first members are made once; every
walk runs inside a savepoint of one connection and is rolled back at its end, so a walk
costs only its own steps (no set-up, no emptying of tables, no commits).
``PATRON_HYPOTHESIS_EXAMPLES`` sets the number of walks (50 by default); in CI ``make test``
runs 2,000 on SQLite and 200 on PostgreSQL. The walks are split into shards, one test
each with its own Hypothesis run (and random seed), so that pytest-xdist spreads them over
its workers: the shares sum to the number asked. A shard fails if Hypothesis's own count of
its valid walks is below its share, and in CI every shard fails if fewer walks than the CI
minimum are asked in all; the total over the shards is printed in the terminal summary
(docs/ledger.md, Tests).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.statistics import collector
from sqlalchemy import Connection, bindparam, event, select
from sqlalchemy.orm import sessionmaker

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock
from patron.ledger import service
from patron.ledger.errors import InsufficientPoints, ReturnExceedsOriginal
from patron.ledger.models import JournalEntry, LedgerAccount, PointLot
from patron.members.schemas import MemberCreate
from patron.members.service import enrol
from patron.operations.schemas import TapIn
from patron.operations.service import record_tap
from patron.programs.schemas import ProgramWrite
from patron.programs.service import put_program
from patron.tenancy.models import TerminalKind
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    Principal,
    authenticate,
    create_merchant,
    create_store,
    create_terminal,
)
from tests.conftest import IS_POSTGRES
from tests.ledger.conftest import WALK_REPORTS

EXAMPLES = int(os.environ.get("PATRON_HYPOTHESIS_EXAMPLES", "50"))
# What a CI run (CI=true) must do on this backend: asking for fewer fails, not saves time.
CI_MINIMUM = 200 if IS_POSTGRES else 2000
# One test running all the walks kept one xdist worker busy for minutes, the run's longest
# path; shards of about this many walks (10-20 s each on a 2-core machine) spread them.
WALKS_PER_SHARD = 50 if IS_POSTGRES else 125
SHARDS = max(1, -(-EXAMPLES // WALKS_PER_SHARD))
STEPS = 20
START = datetime(2026, 1, 30, 22, 0, tzinfo=UTC)  # a month end somewhere in the world

# Merchant i, its one store, reader and program. The Los Angeles merchant's store is in
# New York: expiry follows the store's month, not the merchant's.
MERCHANTS = (("Asia/Tokyo", "JPY", "JP"), ("America/Los_Angeles", "USD", "US"),
             ("Europe/London", "GBP", "GB"))
STORE_ZONES = ("Asia/Tokyo", "America/New_York", "Europe/London")
TAP_POINTS = (5, 7, 3)
PROGRAM_MONTHS = (0, 2, None)
FOUNDERS = 2

# Built once: building a statement costs more than running it on a walk's few rows.
ACCOUNT_BALANCES = select(LedgerAccount.key, LedgerAccount.balance)
LOTS_REMAINING = select(PointLot.id, PointLot.remaining)
LOTS_OF_ENTRY = (select(PointLot.id, PointLot.amount, PointLot.expires_at)
                 .where(PointLot.entry_id == bindparam("entry_id")).order_by(PointLot.id))

merchant_index = st.integers(0, len(MERCHANTS) - 1)
expiry_months = st.none() | st.integers(0, 3)
members = Bundle("members")  # member indexes
# (merchant, member) pairs, once more each time one is credited: burns and corrections
# pick from these, so they meet points, and returns meet points that were spent.
accounts = Bundle("accounts")


def return_size(left: int) -> st.SearchStrategy[int]:
    """How much a return asks for when ``left`` of the original can still be returned: all
    of it, one more (refused), or a part."""
    if not left:
        return st.just(1)
    return st.sampled_from([left, left + 1]) | st.integers(1, left)


def month_end(at: datetime, zone: str, months: int) -> datetime:
    """The model's store-local month end: the local midnight that starts the month after
    the month of ``at`` plus ``months``, in UTC."""
    local = at.astimezone(ZoneInfo(zone))
    year, month0 = divmod(local.year * 12 + local.month + months, 12)
    return datetime(year, month0 + 1, 1, tzinfo=ZoneInfo(zone)).astimezone(UTC)


# --- the run: one connection, a savepoint per walk ---------------------------------------

class OneConnection(Database):
    """The suite's database through one connection whose transaction is never committed:
    ``session_scope`` commits and rolls back savepoints inside it."""

    def __init__(self, connection: Connection) -> None:  # no engine of its own
        self.url = str(connection.engine.url)
        self.engine = connection.engine
        self.sessions = sessionmaker(bind=connection, expire_on_commit=False,
                                     join_transaction_mode="create_savepoint")


@dataclass(frozen=True)
class Shop:
    merchant_id: uuid.UUID
    store_zone: str
    reader: Principal
    tap_points: int
    expiry_months: int | None


@dataclass(frozen=True)
class WalkCast:
    shops: list[Shop]
    founders: list[tuple[uuid.UUID, str]]  # member id, card UID


def make_walk_cast(database: Database) -> WalkCast:
    """Merchants, stores, readers, programs and the first members, through the real
    services (made once; every walk starts from them)."""
    shops = []
    with database.session_scope() as session:
        for index, (zone, currency, country) in enumerate(MERCHANTS):
            merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
                number=20001 + index, name=f"Walk shop {index}", currency=currency,
                timezone=zone, country=country))
            store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                                 data=StoreCreate(code="main", name=f"Walk store {index}",
                                                  timezone=STORE_ZONES[index]))
            _, key = create_terminal(session, actor=SYSTEM, store_id=store.id,
                                     data=TerminalCreate(code="reader-1",
                                                         kind=TerminalKind.reader,
                                                         points_per_tap=TAP_POINTS[index]))
            put_program(session, actor=SYSTEM, merchant_id=merchant.id, data=ProgramWrite(
                earn_points=1, earn_per_amount=100, point_value_minor=1,
                expiry_months=PROGRAM_MONTHS[index]))
            shops.append(Shop(merchant_id=merchant.id, store_zone=STORE_ZONES[index],
                              reader=authenticate(session, key=key),
                              tap_points=TAP_POINTS[index],
                              expiry_months=PROGRAM_MONTHS[index]))
        founders = []
        for index in range(FOUNDERS):
            card = f"F00D{index:04X}"
            member = enrol(session, actor=SYSTEM, data=MemberCreate(
                merchant_id=shops[index % len(shops)].merchant_id, card_uid=card))
            founders.append((member.id, card))
    return WalkCast(shops=shops, founders=founders)


# --- the model ----------------------------------------------------------------------------

Account = tuple[int, int]  # (merchant index, member index)


@dataclass
class ModelLot:
    account: Account
    remaining: int
    expires_at: datetime | None


@dataclass
class ModelEarn:
    entry_id: uuid.UUID
    account: Account
    points: int
    lot_id: int | None
    clawed: int = 0


@dataclass
class ModelBurn:
    entry_id: uuid.UUID
    account: Account
    draws: list[tuple[int, int]]  # (lot id, amount) in the order taken
    restored: int = 0


@dataclass
class ModelMiles:
    entry_id: uuid.UUID
    member: int
    miles: int
    returned: int = 0  # taken back (an earn) or given back (a burn)


@dataclass
class Model:
    balances: dict[Account, int] = field(default_factory=dict)
    liability: dict[int, int] = field(default_factory=dict)
    expired: dict[int, int] = field(default_factory=dict)
    adjustments: dict[int, int] = field(default_factory=dict)
    lots: dict[int, ModelLot] = field(default_factory=dict)
    clawed: set[Account] = field(default_factory=set)  # accounts a return has taken from
    miles: dict[int, int] = field(default_factory=dict)
    pool: int = 0

    def order(self, account: Account) -> list[int]:
        live = [lot_id for lot_id, lot in self.lots.items()
                if lot.account == account and lot.remaining > 0]
        return sorted(live, key=lambda i: (self.lots[i].expires_at is None,
                                           self.lots[i].expires_at or START, i))

    def take(self, account: Account, amount: int,
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


# --- the machine --------------------------------------------------------------------------

class LedgerWalk(RuleBasedStateMachine):
    connection: Connection
    database: Database
    cast: WalkCast
    statements = 0  # SQL statements sent on the connection, counted by an event listener
    checks = 0
    unchanged = 0  # steps after which no SQL had run: the last check still holds

    def __init__(self) -> None:
        super().__init__()
        self.walk = self.connection.begin_nested()
        self.now = START
        clock.freeze(self.now)
        self.shops = self.cast.shops
        self.member_ids = [member_id for member_id, _ in self.cast.founders]
        self.cards = [card for _, card in self.cast.founders]
        merchants = range(len(self.shops))
        self.model = Model(
            balances={(m, p): 0 for m in merchants for p in range(len(self.member_ids))},
            liability=dict.fromkeys(merchants, 0), expired=dict.fromkeys(merchants, 0),
            adjustments=dict.fromkeys(merchants, 0),
            miles=dict.fromkeys(range(len(self.member_ids)), 0))
        self.earns: list[ModelEarn] = []
        self.burns: list[ModelBurn] = []
        self.mile_earns: list[ModelMiles] = []
        self.mile_burns: list[ModelMiles] = []
        self.taps: list[tuple[int, int, str, uuid.UUID, int]] = []  # m, p, tap_id, visit, pts
        self.last_grant: dict[Account, datetime] = {}
        self.tap_interval = timedelta(minutes=get_settings().tap_interval_minutes)
        self.serial = 0
        self.checked_at = -1

    def teardown(self) -> None:
        clock.unfreeze()
        self.walk.rollback()

    def key(self) -> str:
        self.serial += 1
        return f"walk:{self.serial}"

    def lots_of(self, entry_id: uuid.UUID) -> list[tuple[int, int, datetime | None]]:
        with self.database.session_scope() as session:
            return [(i, a, e) for i, a, e in session.execute(LOTS_OF_ENTRY,
                                                              {"entry_id": entry_id})]

    def credit(self, account: Account, entry_id: uuid.UUID,
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

    def advance(self, to: datetime) -> None:
        assert to > self.now
        self.now = to
        clock.freeze(self.now)

    # --- members ------------------------------------------------------------------------

    @initialize(target=members)
    def founders(self) -> Any:
        return multiple(*range(len(self.member_ids)))

    @rule(target=members, m=merchant_index)
    def enrol(self, m: int) -> int:
        """A new member joins mid-walk, at any merchant, with a card for the readers."""
        card = f"CA4D{len(self.member_ids):04X}"
        with self.database.session_scope() as session:
            member = enrol(session, actor=SYSTEM, data=MemberCreate(
                merchant_id=self.shops[m].merchant_id, card_uid=card, source="walk"))
        p = len(self.member_ids)
        self.member_ids.append(member.id)
        self.cards.append(card)
        for merchant in range(len(self.shops)):
            self.model.balances[(merchant, p)] = 0
        self.model.miles[p] = 0
        return p

    # --- points -------------------------------------------------------------------------

    @rule(target=accounts, m=merchant_index, p=members, points=st.integers(1, 200),
          months=expiry_months)
    def earn(self, m: int, p: int, points: int, months: int | None) -> Account:
        """A purchase at the till (the POS pipeline's ledger call)."""
        expires_at = None if months is None else month_end(self.now, self.shops[m].store_zone,
                                                           months)
        with self.database.session_scope() as session:
            entry = service.earn(session, merchant_id=self.shops[m].merchant_id,
                                 member_id=self.member_ids[p], points=points,
                                 expires_at=expires_at, idempotency_key=self.key(),
                                 source="walk")
        self.model.liability[m] -= points
        made = self.credit((m, p), entry.id, [(points, expires_at)])
        self.earns.append(ModelEarn(entry.id, (m, p), points, made[0] if made else None))
        return (m, p)

    @rule(target=accounts, m=merchant_index, p=members)
    def tap(self, m: int, p: int) -> Any:
        """A card tapped at the store's reader: the reader's points at most once per
        interval, expiring at the store-local month end the program says."""
        return self.tap_card(m, p)

    @precondition(lambda self: self.last_grant)
    @rule(target=accounts, data=st.data(), seconds=st.sampled_from([-1, 0, 1]))
    def a_card_taps_again_as_the_interval_ends(self, data: st.DataObject,
                                               seconds: int) -> Any:
        """A card that earned at a reader taps there again a second before, exactly at or a
        second after the end of the reader's interval (or now, if that has passed)."""
        m, p = data.draw(st.sampled_from(sorted(self.last_grant)))
        at = self.last_grant[(m, p)] + self.tap_interval + timedelta(seconds=seconds)
        if at > self.now:
            self.advance(at)
        return self.tap_card(m, p)

    def tap_card(self, m: int, p: int) -> Any:
        shop = self.shops[m]
        self.serial += 1
        tap_id = f"walk-{self.serial}"
        with self.database.session_scope() as session:
            result = record_tap(session, actor=shop.reader,
                                data=TapIn(card_uid=self.cards[p], tap_id=tap_id))
        last = self.last_grant.get((m, p))
        granted = shop.tap_points if last is None or self.now - last >= self.tap_interval else 0
        assert result.member_id == self.member_ids[p]
        assert (result.points_granted, result.reason) == (
            (granted, None) if granted else (0, "interval"))
        if granted:
            self.last_grant[(m, p)] = self.now
            with self.database.session_scope() as session:
                entry_id = session.scalars(select(JournalEntry.id).where(
                    JournalEntry.idempotency_key == f"tap:{result.visit_id}")).one()
            expires_at = (None if shop.expiry_months is None
                          else month_end(self.now, shop.store_zone, shop.expiry_months))
            self.model.liability[m] -= granted
            made = self.credit((m, p), entry_id, [(granted, expires_at)])
            self.earns.append(ModelEarn(entry_id, (m, p), granted, made[0] if made else None))
        self.taps.append((m, p, tap_id, result.visit_id, granted))
        assert result.balance == self.model.balances[(m, p)]
        return multiple((m, p)) if granted else multiple()

    @precondition(lambda self: self.taps)
    @rule(data=st.data())
    def tap_is_resent(self, data: st.DataObject) -> None:
        """A reader resends a tap after a timeout: the first answer, nothing added."""
        m, p, tap_id, visit_id, granted = data.draw(st.sampled_from(self.taps))
        with self.database.session_scope() as session:
            result = record_tap(session, actor=self.shops[m].reader,
                                data=TapIn(card_uid=self.cards[p], tap_id=tap_id))
        assert (result.visit_id, result.points_granted) == (visit_id, granted)
        assert result.balance == self.model.balances[(m, p)]

    @rule(account=accounts, percent=st.integers(1, 120))
    def burn(self, account: Account, percent: int) -> None:
        """Spend ``percent`` of the balance (at least 1 point; above 100 % is refused)."""
        m, p = account
        points = max(1, -(-self.model.balances[(m, p)] * percent // 100))
        enough = self.model.balances[(m, p)] >= points
        try:
            with self.database.session_scope() as session:
                entry = service.burn(session, merchant_id=self.shops[m].merchant_id,
                                     member_id=self.member_ids[p], points=points,
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
        """A returned purchase (in full, in part, or more than it earned): its own lot gives
        first; points already spent become a debt."""
        earned = data.draw(st.sampled_from(self.earns))
        self.claw_back_earn(earned, data.draw(return_size(earned.points - earned.clawed)))

    def claw_back_earn(self, earned: ModelEarn, points: int) -> None:
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
        self.model.clawed.add(earned.account)

    @rule(target=accounts, m=merchant_index, p=members, points=st.integers(1, 200),
          months=expiry_months, percent=st.integers(1, 100))
    def a_purchase_is_returned_after_its_points_were_spent(
            self, m: int, p: int, points: int, months: int | None, percent: int) -> Account:
        """Earn, spend ``percent`` of the balance, return the purchase in full: what was
        spent of its points becomes the documented debt (in one step, so that walks
        reach a debt early and go on from it)."""
        self.earn(m, p, points, months)
        earned = self.earns[-1]
        self.burn((m, p), percent)
        self.claw_back_earn(earned, points)
        return (m, p)

    @precondition(lambda self: self.burns)
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        """A returned purchase paid with points: they come back with their old expiry."""
        burned = data.draw(st.sampled_from(self.burns))
        total = sum(amount for _, amount in burned.draws)
        self.restore_burn(burned, data.draw(return_size(total - burned.restored)))

    def restore_burn(self, burned: ModelBurn, points: int) -> None:
        total = sum(amount for _, amount in burned.draws)
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

    @precondition(lambda self: min(self.model.balances.values()) < 0)
    @rule(data=st.data(), how=st.sampled_from(["earn", "tap", "restore", "adjust"]),
          points=st.integers(1, 200))
    def a_member_in_debt_is_credited(self, data: st.DataObject, how: str,
                                     points: int) -> None:
        """The documented debt: the next credit of any kind repays it before a lot is
        made (a restore needs a burn of that account with points left to give back)."""
        m, p = data.draw(st.sampled_from(
            sorted(account for account, balance in self.model.balances.items() if balance < 0)))
        burns = [burned for burned in self.burns if burned.account == (m, p)
                 and burned.restored < sum(amount for _, amount in burned.draws)]
        if how == "tap":
            self.tap_card(m, p)
        elif how == "adjust":
            self.adjust((m, p), points)
        elif how == "restore" and burns:
            burned = data.draw(st.sampled_from(burns))
            left = sum(amount for _, amount in burned.draws) - burned.restored
            self.restore_burn(burned, min(points, left))
        else:
            self.earn(m, p, points, data.draw(expiry_months))

    @rule(account=accounts, points=st.integers(-150, -1) | st.integers(1, 150))
    def adjust(self, account: Account, points: int) -> None:
        m, p = account
        enough = points > 0 or self.model.balances[(m, p)] >= -points
        try:
            with self.database.session_scope() as session:
                entry = service.adjust(session, merchant_id=self.shops[m].merchant_id,
                                       member_id=self.member_ids[p], points=points,
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

    # --- time and expiry ----------------------------------------------------------------

    @rule(days=st.integers(0, 70), minutes=st.integers(1, 24 * 60))
    def time_passes(self, days: int, minutes: int) -> None:
        self.advance(self.now + timedelta(days=days, minutes=minutes))

    @rule(m=merchant_index, offset=st.sampled_from([-1, 0, 1]), job=st.booleans())
    def a_store_month_ends(self, m: int, offset: int, job: bool) -> None:
        """The clock moves to a second before, exactly to, or a second after the next month
        end of a store (in its own time zone): the instant its points of that month
        expire; and the expiry job may run right then."""
        zone = self.shops[m].store_zone
        to = month_end(self.now, zone, 0) + timedelta(seconds=offset)
        if to <= self.now:
            to = month_end(self.now, zone, 1) + timedelta(seconds=offset)
        self.advance(to)
        if job:
            self.the_expiry_job_runs()

    @precondition(lambda self: any(
        lot.remaining and lot.expires_at is not None and lot.expires_at > self.now
        for lot in self.model.lots.values()))
    @rule(offset=st.sampled_from([-1, 0, 1]), job=st.booleans())
    def the_next_expiry_arrives(self, offset: int, job: bool) -> None:
        """The clock moves to a second before, exactly to or a second after the soonest
        expiry of points still held (a store-local month end); the job may run then."""
        due = min(lot.expires_at for lot in self.model.lots.values()
                  if lot.remaining and lot.expires_at is not None and lot.expires_at > self.now)
        self.advance(max(due + timedelta(seconds=offset), self.now + timedelta(seconds=1)))
        if job:
            self.the_expiry_job_runs()

    @rule()
    def the_expiry_job_runs(self) -> None:
        """Expire what is due now, a few lots per batch, until nothing is."""
        while True:
            with self.database.session_scope() as session:
                if not service.expire(session, now=self.now, limit=3):
                    break
        for lot in self.model.lots.values():
            if lot.expires_at is not None and lot.expires_at <= self.now and lot.remaining:
                self.model.balances[lot.account] -= lot.remaining
                self.model.expired[lot.account[0]] += lot.remaining
                lot.remaining = 0

    # --- coalition miles ----------------------------------------------------------------

    @rule(m=st.none() | merchant_index, p=members, miles=st.integers(1, 300))
    def earn_miles(self, m: int | None, p: int, miles: int) -> None:
        with self.database.session_scope() as session:
            entry = service.earn_miles(
                session, member_id=self.member_ids[p], miles=miles,
                idempotency_key=self.key(), source="walk",
                merchant_id=None if m is None else self.shops[m].merchant_id)
        self.model.miles[p] += miles
        self.model.pool -= miles
        self.mile_earns.append(ModelMiles(entry.id, p, miles))

    @rule(p=members, percent=st.integers(1, 120))
    def burn_miles(self, p: int, percent: int) -> None:
        miles = max(1, -(-self.model.miles[p] * percent // 100))
        enough = self.model.miles[p] >= miles
        try:
            with self.database.session_scope() as session:
                entry = service.burn_miles(session, member_id=self.member_ids[p], miles=miles,
                                           idempotency_key=self.key(), source="walk")
        except InsufficientPoints:
            assert not enough
            return
        assert enough
        self.model.miles[p] -= miles
        self.model.pool += miles
        self.mile_burns.append(ModelMiles(entry.id, p, miles))

    @precondition(lambda self: self.mile_earns)
    @rule(data=st.data())
    def claw_back_miles(self, data: st.DataObject) -> None:
        """Miles never go below zero: what the member has spent is reported uncollected."""
        earned = data.draw(st.sampled_from(self.mile_earns))
        miles = data.draw(return_size(earned.miles - earned.returned))
        taken = min(miles, max(0, self.model.miles[earned.member]))
        try:
            with self.database.session_scope() as session:
                entry, uncollected = service.claw_back_miles(
                    session, earn_entry_id=earned.entry_id, miles=miles,
                    idempotency_key=self.key(), source="walk")
        except ReturnExceedsOriginal:
            # Asking back more than is left is refused, whether or not it could be taken.
            assert earned.returned + miles > earned.miles
            return
        assert (entry is None, uncollected) == (taken == 0, miles - taken)
        assert earned.returned + miles <= earned.miles
        earned.returned += taken
        self.model.miles[earned.member] -= taken
        self.model.pool += taken

    @precondition(lambda self: self.mile_burns)
    @rule(data=st.data())
    def restore_miles(self, data: st.DataObject) -> None:
        burned = data.draw(st.sampled_from(self.mile_burns))
        miles = data.draw(return_size(burned.miles - burned.returned))
        try:
            with self.database.session_scope() as session:
                service.restore_miles(session, burn_entry_id=burned.entry_id, miles=miles,
                                      idempotency_key=self.key(), source="walk")
        except ReturnExceedsOriginal:
            assert burned.returned + miles > burned.miles
            return
        assert burned.returned + miles <= burned.miles
        burned.returned += miles
        self.model.miles[burned.member] += miles
        self.model.pool -= miles

    # --- checks -------------------------------------------------------------------------

    @invariant()
    def books_are_sound_and_match_the_model(self) -> None:
        if LedgerWalk.statements == self.checked_at:
            # Only the clock moved: not one statement since the last check, which holds.
            LedgerWalk.unchanged += 1
            return
        LedgerWalk.checks += 1
        with self.database.session_scope() as session:
            assert service.check_invariants(session) == []
            stored = {key: balance for key, balance in session.execute(ACCOUNT_BALANCES)}
            lots = {i: r for i, r in session.execute(LOTS_REMAINING)}
        expected = {}
        for (m, p), balance in self.model.balances.items():
            key = service.member_points_key(self.shops[m].merchant_id, self.member_ids[p])
            expected[key] = balance
            # The only way below zero is the documented one: a return of spent points.
            assert stored.get(key, 0) >= 0 or (m, p) in self.model.clawed, key
        for m, shop in enumerate(self.shops):
            expected[f"merchant_liability:{shop.merchant_id}"] = self.model.liability[m]
            expected[f"expired:{shop.merchant_id}"] = self.model.expired[m]
            expected[f"adjustments:{shop.merchant_id}"] = self.model.adjustments[m]
        for p, miles in self.model.miles.items():
            expected[f"member_miles:{self.member_ids[p]}"] = miles
        expected["coalition_pool"] = self.model.pool
        assert {key: stored.get(key, 0) for key in expected} == expected
        assert set(stored) <= set(expected)
        assert lots == {lot_id: lot.remaining for lot_id, lot in self.model.lots.items()}
        self.checked_at = LedgerWalk.statements


def _count_statement(*_: Any) -> None:
    LedgerWalk.statements += 1


def shard_walks(shard: int) -> int:
    """The walks shard ``shard`` runs: its share of ``EXAMPLES`` (shares differ by one at
    most and sum to it), and one more after the first shard: every Hypothesis run starts
    with the same walk, the simplest, so only the first shard's counts towards the total."""
    return EXAMPLES // SHARDS + (shard < EXAMPLES % SHARDS) + (shard > 0)


@pytest.mark.parametrize("shard", range(SHARDS), ids=lambda shard: f"{shard + 1}of{SHARDS}")
def test_random_walks_keep_the_books_sound(database: Database, shard: int,
                                           request: pytest.FixtureRequest) -> None:
    if os.environ.get("CI") == "true":
        assert EXAMPLES >= CI_MINIMUM, (
            f"CI must run at least {CI_MINIMUM} walks on this backend, not {EXAMPLES}")
    asked = shard_walks(shard)
    machine: Any = LedgerWalk
    forced_seed = request.config.getoption("hypothesis_seed", None)
    if forced_seed is not None and SHARDS > 1:
        # One seed for all (--hypothesis-seed) would give every shard the same walks: each
        # shard gets its own, made from it.
        def seeded() -> LedgerWalk:
            return LedgerWalk()

        machine = seed(f"{forced_seed}/{shard}")(seeded)
    statistics: list[dict[str, Any]] = []
    LedgerWalk.checks = LedgerWalk.unchanged = 0
    started, cpu = time.monotonic(), time.process_time()
    with database.engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", _count_statement)
        outer = connection.begin()
        try:
            LedgerWalk.connection = connection
            LedgerWalk.database = OneConnection(connection)
            LedgerWalk.cast = make_walk_cast(LedgerWalk.database)
            # Hypothesis's run statistics (what its pytest plugin reports), per run.
            with cast(Any, collector).with_value(statistics.append):
                run_state_machine_as_test(machine, settings=settings(
                    max_examples=asked, stateful_step_count=STEPS, deadline=None,
                    print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.filter_too_much]))
        finally:
            outer.rollback()
    seconds, cpu = time.monotonic() - started, time.process_time() - cpu
    # Hypothesis's own count of complete, valid walks (not ones it gave up on).
    walks = sum(case["status"] == "valid"
                for stats in statistics
                for phase in ("reuse-phase", "generate-phase")
                for case in stats.get(phase, {}).get("test-cases", []))
    shards = (f" in {SHARDS} shards (and {{repeats}} repeats of the simplest walk, which "
              "every shard starts with)" if SHARDS > 1 else "")
    WALK_REPORTS.append((
        f"ledger random walks: {{distinct}} walks ({EXAMPLES} asked) on "
        f"{database.engine.dialect.name}{shards}: {{checks}} steps checked, {{unchanged}} "
        "that only moved the clock; {seconds:.0f} s ({cpu:.0f} s CPU) in all",
        {"distinct": walks - (shard > 0), "repeats": int(shard > 0),
         "checks": LedgerWalk.checks, "unchanged": LedgerWalk.unchanged,
         "seconds": seconds, "cpu": cpu}))
    assert walks >= asked, (
        f"shard {shard + 1} of {SHARDS}: {walks} valid walks of the {asked} asked")


pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.NonInteractiveExampleWarning")
