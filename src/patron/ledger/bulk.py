"""A batch of ledger moves planned in memory and written as sets (the set-wise offline
replay, docs/offline.md).

The same books as ``patron.ledger.service``, the same rules, another way to write them:

1. every account the batch touches is locked before anything is planned — the accounts
   known at the start with ``SELECT … FOR UPDATE`` in ascending id order, points
   accounts before miles accounts (the order a POS commit locks in), an account first
   needed later when it is created or first read (on SQLite ``BEGIN IMMEDIATE`` already
   holds the write lock);
2. earns, burns and miles are planned in memory under those locks with the ledger's own
   rules: a member's points never go below zero on a burn (``InsufficientPoints`` and
   nothing planned), a member in debt repays it before a lot is kept
   (``rules.credit_after_debt``), a burn draws lots soonest-expiring first
   (``rules.consumption_plan``), lots made earlier in the batch included;
3. ``write()`` inserts the entries, postings, lots and draws with one multi-row statement
   each, sets each changed lot's ``remaining`` and each account's balance once, every one
   of those updates guarded by the value read under the lock (a mismatch is
   ``LedgerInconsistent``: the caller's savepoint rolls it all back).

The result is row for row what the same moves through ``service`` would have written (the
tests replay the same sales both ways and compare).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.orm import Session

from patron.db import insert_rows, rowcount, table_of
from patron.kit.clock import utcnow
from patron.ledger import rules
from patron.ledger.errors import InsufficientPoints, LedgerInconsistent
from patron.ledger.models import (
    EntryKind,
    JournalEntry,
    LedgerAccount,
    PointLot,
    PointLotDraw,
    Posting,
    Unit,
)
from patron.ledger.service import (
    MAX_POINTS_PER_ENTRY,
    coalition_pool_account,
    liability_account,
    member_miles_account,
    member_points_account,
    member_points_key,
)

# Lots made in the batch sort after every stored lot and in the order they were made,
# as their real (autoincrement) ids will.
_NEW_LOT_BASE = 1 << 62

# Core statements on the tables: executed with a list of rows, one statement, no unit of work.
_ACCOUNTS, _LOTS = table_of(LedgerAccount), table_of(PointLot)
_SET_BALANCE = (update(_ACCOUNTS)
                .where(_ACCOUNTS.c.id == bindparam("account_id"),
                       _ACCOUNTS.c.balance == bindparam("before"))
                .values(balance=bindparam("after")))
_SET_REMAINING = (update(_LOTS)
                  .where(_LOTS.c.id == bindparam("lot_id"),
                         _LOTS.c.remaining == bindparam("before"))
                  .values(remaining=bindparam("after")))


@dataclass
class _Account:
    id: uuid.UUID
    kind: str
    unit: str
    balance_read: int
    balance: int


@dataclass
class _Lot:
    id: int
    remaining_read: int
    remaining: int
    expires_at: datetime | None
    row: dict[str, Any] | None = None  # a lot made in this batch: its row to insert


@dataclass
class Book:
    """The batch's accounts (by key), their lots, and the rows it will write."""

    session: Session
    accounts: dict[str, _Account] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)
    lots: dict[uuid.UUID, list[_Lot]] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=list)
    postings: list[dict[str, Any]] = field(default_factory=list)
    draws: list[dict[str, Any]] = field(default_factory=list)
    new_lots: list[_Lot] = field(default_factory=list)

    @classmethod
    def open(cls, session: Session, *groups: Iterable[str]) -> Book:
        """Lock and read the accounts with these keys that exist (the others are made or
        read when first needed): group after group, each in ascending id order.

        Points accounts (members' and the liability) form one group, miles accounts
        (members' and the pool) the next: the order a POS commit takes them in (its
        points entries before its miles entry), so the two never wait on each other in a
        cycle."""
        book = cls(session)
        for keys in groups:
            wanted = sorted(set(keys))
            if wanted:
                book._lock(LedgerAccount.key.in_(wanted))
                book.absent.update(key for key in wanted if key not in book.accounts)
        return book

    def _lock(self, which: ColumnElement[bool]) -> None:
        rows = self.session.execute(
            select(LedgerAccount.id, LedgerAccount.key, LedgerAccount.kind, LedgerAccount.unit,
                   LedgerAccount.balance)
            .where(which).order_by(LedgerAccount.id).with_for_update()).all()
        for account_id, key, kind, unit, balance in rows:
            self.accounts[key] = _Account(id=account_id, kind=kind, unit=unit,
                                          balance_read=int(balance), balance=int(balance))

    def _account(self, key: str, make: Callable[[], LedgerAccount]) -> _Account:
        """The account with this key, made (``make``) and locked on first use."""
        known = self.accounts.get(key)
        if known is None:
            self._lock(LedgerAccount.id == make().id)
            self.absent.discard(key)
            known = self.accounts[key]
        return known

    def balance(self, key: str) -> int:
        """The account's balance as planned so far (0 for an account that does not exist:
        reading does not make one)."""
        known = self.accounts.get(key)
        if known is None:
            if key in self.absent:
                return 0
            self._lock(LedgerAccount.key == key)
            known = self.accounts.get(key)
            if known is None:
                # As a read outside the batch would see it; the batch's first move of it
                # makes it (or finds one made meanwhile) and locks it.
                self.absent.add(key)
                return 0
        return known.balance

    def load_lots(self, keys: Iterable[str]) -> None:
        """Read the lots with points left of these member accounts (locked already)."""
        ids = [self.accounts[key].id for key in keys
               if key in self.accounts and self.accounts[key].id not in self.lots]
        if not ids:
            return
        for account_id in ids:
            self.lots[account_id] = []
        for lot_id, account_id, remaining, expires_at in self.session.execute(
                select(PointLot.id, PointLot.account_id, PointLot.remaining,
                       PointLot.expires_at)
                .where(PointLot.account_id.in_(ids), PointLot.remaining > 0)):
            self.lots[account_id].append(_Lot(id=int(lot_id), remaining_read=int(remaining),
                                              remaining=int(remaining),
                                              expires_at=expires_at))

    # --- moves ----------------------------------------------------------------------

    def _entry(self, *, kind: EntryKind, idempotency_key: str, merchant_id: uuid.UUID,
               member_id: uuid.UUID, source: str, reason: str, occurred_at: datetime,
               postings: list[tuple[_Account, int]]) -> uuid.UUID:
        if occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        entry_id = uuid.uuid4()
        self.entries.append({"id": entry_id, "kind": kind.value, "merchant_id": merchant_id,
                             "member_id": member_id, "source": source, "reason": reason,
                             "idempotency_key": idempotency_key, "reverses_entry_id": None,
                             "occurred_at": occurred_at, "created_at": utcnow()})
        for account, amount in postings:
            self.postings.append({"entry_id": entry_id, "account_id": account.id,
                                  "merchant_id": merchant_id, "amount": amount,
                                  "unit": account.unit})
            account.balance += amount
        return entry_id

    def earn(self, *, merchant_id: uuid.UUID, member_id: uuid.UUID, points: int,
             expires_at: datetime | None, idempotency_key: str, source: str, reason: str,
             occurred_at: datetime) -> uuid.UUID:
        _check_amount(points)
        member = self._points(merchant_id, member_id)
        liability = self._liability(merchant_id)
        entry_id = self._entry(kind=EntryKind.earn, idempotency_key=idempotency_key,
                               merchant_id=merchant_id, member_id=member_id, source=source,
                               reason=reason, occurred_at=occurred_at,
                               postings=[(member, points), (liability, -points)])
        kept = rules.credit_after_debt(member.balance, [points])[0]
        if kept > 0:
            lot = _Lot(id=_NEW_LOT_BASE + len(self.new_lots), remaining_read=kept,
                       remaining=kept, expires_at=expires_at, row={
                           "account_id": member.id, "merchant_id": merchant_id,
                           "member_id": member_id, "entry_id": entry_id, "amount": kept,
                           "expires_at": expires_at, "created_at": utcnow()})
            self.new_lots.append(lot)
            self.lots.setdefault(member.id, []).append(lot)
        return entry_id

    def burn(self, *, merchant_id: uuid.UUID, member_id: uuid.UUID, points: int,
             idempotency_key: str, source: str, reason: str,
             occurred_at: datetime) -> uuid.UUID:
        """``InsufficientPoints`` (nothing planned) when the balance is short."""
        _check_amount(points)
        if self.balance(member_points_key(merchant_id, member_id)) < points:
            raise InsufficientPoints(f"the points balance is lower than {points}",
                                     unit=Unit.points.value, requested=points)
        member = self._points(merchant_id, member_id)
        if member.id not in self.lots:
            self.load_lots([member_points_key(merchant_id, member_id)])
        liability = self._liability(merchant_id)
        lots = self.lots[member.id]
        plan = rules.consumption_plan(
            [rules.LotView(id=lot.id, remaining=lot.remaining, expires_at=lot.expires_at)
             for lot in lots], points)
        if sum(draw.amount for draw in plan) != points:
            raise LedgerInconsistent(f"account {member.id}: lots give less than the balance")
        entry_id = self._entry(kind=EntryKind.burn, idempotency_key=idempotency_key,
                               merchant_id=merchant_id, member_id=member_id, source=source,
                               reason=reason, occurred_at=occurred_at,
                               postings=[(member, -points), (liability, points)])
        by_id = {lot.id: lot for lot in lots}
        for draw in plan:
            lot = by_id[draw.lot_id]
            lot.remaining -= draw.amount
            self.draws.append({"lot": lot, "entry_id": entry_id, "merchant_id": merchant_id,
                               "amount": draw.amount})
        return entry_id

    def earn_miles(self, *, merchant_id: uuid.UUID, member_id: uuid.UUID, miles: int,
                   idempotency_key: str, source: str, reason: str,
                   occurred_at: datetime) -> uuid.UUID:
        _check_amount(miles)
        member = self._account(f"member_miles:{member_id}", lambda: member_miles_account(
            self.session, member_id=member_id))
        pool = self._account("coalition_pool", lambda: coalition_pool_account(self.session))
        return self._entry(kind=EntryKind.earn, idempotency_key=idempotency_key,
                           merchant_id=merchant_id, member_id=member_id, source=source,
                           reason=reason, occurred_at=occurred_at,
                           postings=[(member, miles), (pool, -miles)])

    def _liability(self, merchant_id: uuid.UUID) -> _Account:
        return self._account(f"merchant_liability:{merchant_id}",
                             lambda: liability_account(self.session, merchant_id=merchant_id))

    def _points(self, merchant_id: uuid.UUID, member_id: uuid.UUID) -> _Account:
        return self._account(member_points_key(merchant_id, member_id),
                             lambda: member_points_account(self.session,
                                                           merchant_id=merchant_id,
                                                           member_id=member_id))

    # --- writing --------------------------------------------------------------------

    def write(self) -> None:
        """Write everything planned, once (in the caller's transaction; never commits)."""
        session = self.session
        if self.entries:
            insert_rows(session, table_of(JournalEntry), self.entries)
            insert_rows(session, table_of(Posting), self.postings)
        if self.new_lots:
            rows = [{**lot.row, "remaining": lot.remaining} for lot in self.new_lots
                    if lot.row is not None]
            insert_rows(session, _LOTS, rows)
            # Each new lot is its earn's only lot: found again by its entry. The ids were
            # given in the order the rows went in, the order the plan assumed.
            found = {entry_id: lot_id for entry_id, lot_id in session.execute(
                select(_LOTS.c.entry_id, _LOTS.c.id).where(
                    _LOTS.c.entry_id.in_([row["entry_id"] for row in rows])))}
            for lot, row in zip(self.new_lots, rows, strict=True):
                lot.id = int(found[row["entry_id"]])
        if self.draws:
            insert_rows(session, table_of(PointLotDraw), [
                {"lot_id": draw["lot"].id, "entry_id": draw["entry_id"],
                 "merchant_id": draw["merchant_id"], "amount": draw["amount"]}
                for draw in self.draws])
        changed_lots = [{"lot_id": lot.id, "before": lot.remaining_read, "after": lot.remaining}
                        for lots in self.lots.values() for lot in lots
                        if lot.row is None and lot.remaining != lot.remaining_read]
        guarded_update(session, _SET_REMAINING, changed_lots,
                       "a lot changed under a held lock")
        moved = [{"account_id": account.id, "before": account.balance_read,
                  "after": account.balance}
                 for account in self.accounts.values()
                 if account.balance != account.balance_read]
        guarded_update(session, _SET_BALANCE, sorted(moved, key=lambda row: row["account_id"]),
                       "a balance changed under a held lock")
        # What the session's identity map holds of these rows is stale now.
        for instance in list(session.identity_map.values()):
            if isinstance(instance, LedgerAccount | PointLot):
                session.expire(instance)


def _check_amount(amount: int) -> None:
    if type(amount) is not int or not 0 < amount <= MAX_POINTS_PER_ENTRY:
        raise ValueError(f"a move must be 1 to {MAX_POINTS_PER_ENTRY}, not {amount!r}")


def guarded_update(session: Session, statement: Any, rows: list[dict[str, Any]],
                   message: str) -> None:
    """One guarded update per row (executemany), every row's guard the value read under
    its lock: a row that does not match is ``LedgerInconsistent`` (``message``)."""
    if not rows:
        return
    changed = rowcount(session.execute(statement, rows,
                                       execution_options={"synchronize_session": False}))
    if changed != len(rows):
        raise LedgerInconsistent(f"{message} ({changed} of {len(rows)} rows matched)")
