"""Posting to the points ledger: earn, burn, returns, expiry, corrections and miles.

The ledger trusts its callers (the POS pipeline, jobs, the operator's tools): it checks
the books, not who may touch them. Every public function runs in a savepoint, so a
refused operation leaves nothing behind even when the caller catches the error; and, like
every service, it only flushes — the boundary commits.

Concurrency protocol (see docs/ledger.md): an entry's account balances change through one
conditional ``UPDATE … RETURNING`` per account, applied in ascending account-id order, so
the row locks are always taken in the same order and cannot deadlock. Point lots of a
member account are read and changed only while that account's row is locked by the
current transaction.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Executable, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from patron.db import rowcount
from patron.kit.clock import utcnow
from patron.ledger import rules
from patron.ledger.errors import (
    EntryNotFound,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidEntry,
    InvalidPoints,
    LedgerBug,
    LedgerInconsistent,
    ReturnExceedsOriginal,
    UnbalancedEntry,
)
from patron.ledger.models import (
    COUNTER_KINDS,
    AccountKind,
    EntryKind,
    JournalEntry,
    LedgerAccount,
    PointLot,
    PointLotDraw,
    Posting,
    Unit,
)

# Far beyond any real purchase, far below BIGINT: no single entry can overflow a balance.
MAX_POINTS_PER_ENTRY = 10**12
EXPIRE_BATCH = 1000

LedgerPostings = Sequence[tuple[LedgerAccount, int]]


# --- accounts ---------------------------------------------------------------------------

def member_points_key(merchant_id: uuid.UUID, member_id: uuid.UUID) -> str:
    return f"member_points:{merchant_id}:{member_id}"


def get_or_create_account(session: Session, *, key: str, kind: AccountKind, unit: Unit,
                          merchant_id: uuid.UUID | None,
                          member_id: uuid.UUID | None) -> LedgerAccount:
    """The account with this key, created on first use.

    Race-safe: the insert runs in a savepoint and a concurrent creator's row wins through
    the unique key (on PostgreSQL the loser waits for the winner's commit, then re-reads).
    """
    account = _account_by_key(session, key)
    if account is not None:
        return account
    account = LedgerAccount(key=key, kind=kind.value, unit=unit.value,
                            merchant_id=merchant_id, member_id=member_id, balance=0)
    try:
        with session.begin_nested():
            session.add(account)
            session.flush()
    except IntegrityError:
        existing = _account_by_key(session, key)
        if existing is None:  # not the key: an unknown merchant or member
            raise
        return existing
    return account


# Built once: the checkout runs these for every entry (compiled forms are cached anyway;
# building a select() anew is what costs).
_ACCOUNT_BY_KEY = select(LedgerAccount).where(LedgerAccount.key == bindparam("key"))
_BALANCE_BY_KEY = select(LedgerAccount.balance).where(LedgerAccount.key == bindparam("key"))
_ENTRY_BY_KEY = select(JournalEntry).where(JournalEntry.idempotency_key == bindparam("key"))
_MOVE_BALANCE = (update(LedgerAccount).where(LedgerAccount.id == bindparam("account_id"))
                 .values(balance=LedgerAccount.balance + bindparam("amount"))
                 .returning(LedgerAccount.balance))
# The guard and the change are one statement: no read-modify-write.
_MOVE_BALANCE_GUARDED = _MOVE_BALANCE.where(LedgerAccount.balance + bindparam("amount") >= 0)


def _account_by_key(session: Session, key: str) -> LedgerAccount | None:
    return session.scalars(_ACCOUNT_BY_KEY, {"key": key}).one_or_none()


def member_points_account(session: Session, *, merchant_id: uuid.UUID,
                          member_id: uuid.UUID) -> LedgerAccount:
    return get_or_create_account(
        session, key=member_points_key(merchant_id, member_id), kind=AccountKind.member_points,
        unit=Unit.points, merchant_id=merchant_id, member_id=member_id)


def liability_account(session: Session, *, merchant_id: uuid.UUID) -> LedgerAccount:
    return get_or_create_account(
        session, key=f"merchant_liability:{merchant_id}",
        kind=AccountKind.merchant_liability, unit=Unit.points, merchant_id=merchant_id,
        member_id=None)


def expired_account(session: Session, *, merchant_id: uuid.UUID) -> LedgerAccount:
    return get_or_create_account(
        session, key=f"expired:{merchant_id}", kind=AccountKind.expired, unit=Unit.points,
        merchant_id=merchant_id, member_id=None)


def adjustments_account(session: Session, *, merchant_id: uuid.UUID) -> LedgerAccount:
    return get_or_create_account(
        session, key=f"adjustments:{merchant_id}", kind=AccountKind.adjustments,
        unit=Unit.points, merchant_id=merchant_id, member_id=None)


def member_miles_account(session: Session, *, member_id: uuid.UUID) -> LedgerAccount:
    return get_or_create_account(
        session, key=f"member_miles:{member_id}", kind=AccountKind.member_miles,
        unit=Unit.miles, merchant_id=None, member_id=member_id)


def coalition_pool_account(session: Session) -> LedgerAccount:
    return get_or_create_account(
        session, key="coalition_pool", kind=AccountKind.coalition_pool, unit=Unit.miles,
        merchant_id=None, member_id=None)


def points_balance(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID) -> int:
    """A member's points at a merchant as stored now (negative = owed after a return)."""
    balance = session.scalar(_BALANCE_BY_KEY, {"key": member_points_key(merchant_id, member_id)})
    return int(balance or 0)


def miles_balance(session: Session, *, member_id: uuid.UUID) -> int:
    balance = session.scalar(_BALANCE_BY_KEY, {"key": f"member_miles:{member_id}"})
    return int(balance or 0)


# --- journal entries --------------------------------------------------------------------

@dataclass
class Posted:
    entry: JournalEntry
    created: bool
    # Each touched account's balance right after this entry (empty for a replay).
    balances: dict[uuid.UUID, int] = field(default_factory=dict)


def post_entry(session: Session, *, kind: EntryKind, idempotency_key: str,
               merchant_id: uuid.UUID | None, member_id: uuid.UUID | None, source: str,
               reason: str, occurred_at: datetime,
               postings: LedgerPostings) -> JournalEntry:
    """Record one balanced entry and move the balances, or return the entry already
    recorded under ``idempotency_key`` (with no new postings).

    Member balances never go below zero here; only a claw-back may create a debt. A reused
    key with different content is ``IdempotencyKeyReused``.
    """
    with session.begin_nested():
        return _post(session, kind=kind, idempotency_key=idempotency_key,
                     merchant_id=merchant_id, member_id=member_id, source=source,
                     reason=reason, occurred_at=occurred_at, postings=postings).entry


def _post(session: Session, *, kind: EntryKind, idempotency_key: str,
          merchant_id: uuid.UUID | None, member_id: uuid.UUID | None, source: str,
          reason: str, occurred_at: datetime, postings: LedgerPostings,
          reverses_entry_id: uuid.UUID | None = None,
          member_debt_allowed: bool = False) -> Posted:
    _check_postings(postings)
    if occurred_at.tzinfo is None:
        raise LedgerBug("occurred_at must be timezone-aware")
    # No look-up first: the unique key refuses a second entry, and a refused insert reads
    # the first one (a replay is rare; a look-up would cost every entry a round trip).
    entry = JournalEntry(kind=kind.value, idempotency_key=idempotency_key,
                         merchant_id=merchant_id, member_id=member_id, source=source,
                         reason=reason, occurred_at=occurred_at,
                         reverses_entry_id=reverses_entry_id)
    try:
        with session.begin_nested():
            session.add(entry)
            session.flush()
    except IntegrityError:
        existing = _entry_by_key(session, idempotency_key)
        if existing is None:  # not the key: an unknown merchant, member or entry
            raise
        return _replayed(session, existing, kind, merchant_id, member_id, postings)
    session.add_all(Posting(entry_id=entry.id, account_id=account.id, merchant_id=merchant_id,
                            amount=amount, unit=account.unit) for account, amount in postings)
    session.flush()

    balances: dict[uuid.UUID, int] = {}
    # Ascending account id: every transaction locks account rows in the same order.
    for account, amount in sorted(postings, key=lambda posting: posting[0].id):
        may_go_negative = (account.kind in COUNTER_KINDS
                           or (member_debt_allowed
                               and account.kind == AccountKind.member_points.value))
        guarded = amount < 0 and not may_go_negative
        new_balance = session.execute(
            _MOVE_BALANCE_GUARDED if guarded else _MOVE_BALANCE,
            {"account_id": account.id, "amount": amount},
            execution_options={"synchronize_session": False},
        ).scalar_one_or_none()
        if new_balance is None:
            raise InsufficientPoints(f"the {account.unit} balance is lower than {-amount}",
                                     unit=account.unit, requested=-amount)
        set_committed_value(account, "balance", int(new_balance))
        balances[account.id] = int(new_balance)
    return Posted(entry=entry, created=True, balances=balances)


def _check_postings(postings: LedgerPostings) -> None:
    if not postings:
        raise UnbalancedEntry("an entry needs postings")
    seen: set[uuid.UUID] = set()
    for account, amount in postings:
        if account.id is None:
            raise LedgerBug("post to accounts from get_or_create_account")
        if account.id in seen:
            raise LedgerBug(f"account {account.key} appears twice in one entry")
        seen.add(account.id)
        if type(amount) is not int or amount == 0:
            raise UnbalancedEntry(f"posting amounts must be non-zero integers, not {amount!r}")
    unbalanced = rules.unbalanced_units((account.unit, amount) for account, amount in postings)
    if unbalanced:
        raise UnbalancedEntry(f"postings do not sum to zero: {unbalanced}")


def _entry_by_key(session: Session, key: str) -> JournalEntry | None:
    return session.scalars(_ENTRY_BY_KEY, {"key": key}).one_or_none()


def _replayed(session: Session, existing: JournalEntry, kind: EntryKind,
              merchant_id: uuid.UUID | None, member_id: uuid.UUID | None,
              postings: LedgerPostings) -> Posted:
    stored = sorted(session.execute(select(Posting.account_id, Posting.amount)
                                    .where(Posting.entry_id == existing.id)).all())
    asked = sorted((account.id, amount) for account, amount in postings)
    if (existing.kind, existing.merchant_id, existing.member_id, stored) != (
            kind.value, merchant_id, member_id, asked):
        raise IdempotencyKeyReused(
            f"idempotency key {existing.idempotency_key!r} already recorded another entry")
    return Posted(entry=existing, created=False)


# --- point lots -------------------------------------------------------------------------

def _draw_lots(session: Session, *, account: LedgerAccount, entry: JournalEntry, amount: int,
               expected: int, first_lot_id: int | None = None) -> int:
    """Take ``amount`` points out of the account's lots (only ``expected`` may exist).

    Runs after this transaction has locked the account row, so the lots read here are
    current; each lot still changes through a conditional UPDATE as a second guard.
    """
    rows = session.execute(
        select(PointLot.id, PointLot.remaining, PointLot.expires_at)
        .where(PointLot.account_id == account.id, PointLot.remaining > 0)).all()
    plan = rules.consumption_plan(
        [rules.LotView(id=lot_id, remaining=int(remaining), expires_at=expires_at)
         for lot_id, remaining, expires_at in rows], amount, first=first_lot_id)
    drawn = sum(draw.amount for draw in plan)
    if drawn != expected:
        raise LedgerInconsistent(f"account {account.key}: lots give {drawn}, "
                                 f"the balance says {expected}")
    assert account.merchant_id is not None
    for draw in plan:
        changed = rowcount(session.execute(
            update(PointLot)
            .where(PointLot.id == draw.lot_id, PointLot.remaining >= draw.amount)
            .values(remaining=PointLot.remaining - draw.amount),
            execution_options={"synchronize_session": False}))
        if changed != 1:
            raise LedgerInconsistent(f"lot {draw.lot_id} changed under a held account lock")
        _forget(session, PointLot, draw.lot_id)
        session.add(PointLotDraw(lot_id=draw.lot_id, entry_id=entry.id,
                                 merchant_id=account.merchant_id, amount=draw.amount))
    session.flush()
    return drawn


def _add_lots(session: Session, *, account: LedgerAccount, entry: JournalEntry,
              pieces: Sequence[tuple[int, datetime | None]]) -> None:
    assert account.merchant_id is not None and account.member_id is not None
    for amount, expires_at in pieces:
        if amount > 0:
            session.add(PointLot(account_id=account.id, merchant_id=account.merchant_id,
                                 member_id=account.member_id, entry_id=entry.id,
                                 amount=amount, remaining=amount, expires_at=expires_at))
    session.flush()


def _forget(session: Session, model: type[Any], ident: Any) -> None:
    instance = session.identity_map.get(session.identity_key(model, ident))
    if instance is not None:
        session.expire(instance)



def _lock_accounts(session: Session, account_ids: Sequence[uuid.UUID]) -> None:
    """Row locks in the same (ascending id) order ``_post`` uses; a no-op on SQLite, whose
    transactions already hold the database write lock from BEGIN IMMEDIATE."""
    for account_id in sorted(account_ids):
        session.execute(select(LedgerAccount.id).where(LedgerAccount.id == account_id)
                        .with_for_update())


# --- points -----------------------------------------------------------------------------

def _require_points(points: int, *, signed: bool = False) -> None:
    if (type(points) is not int or points == 0 or (points < 0 and not signed)
            or abs(points) > MAX_POINTS_PER_ENTRY):
        raise InvalidPoints(f"points must be a whole number from 1 to {MAX_POINTS_PER_ENTRY}",
                            field="points")


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and value.tzinfo is None:
        raise LedgerBug(f"{name} must be timezone-aware")


def earn(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID, points: int,
         expires_at: datetime | None, idempotency_key: str, source: str, reason: str = "",
         occurred_at: datetime | None = None,
         kind: EntryKind = EntryKind.earn) -> JournalEntry:
    """Give a member points at a merchant; they become a lot expiring at ``expires_at``
    (None = never; see ``rules.expiry_at``). A member in debt repays it first."""
    _require_points(points)
    _require_aware(expires_at, "expires_at")
    if kind not in (EntryKind.earn, EntryKind.tap):
        raise InvalidEntry("points are earned by an earn or a tap")
    with session.begin_nested():
        member = member_points_account(session, merchant_id=merchant_id, member_id=member_id)
        liability = liability_account(session, merchant_id=merchant_id)
        posted = _post(session, kind=kind, idempotency_key=idempotency_key,
                       merchant_id=merchant_id, member_id=member_id, source=source,
                       reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, points), (liability, -points)])
        if posted.created:
            kept = rules.credit_after_debt(posted.balances[member.id], [points])
            _add_lots(session, account=member, entry=posted.entry,
                      pieces=[(kept[0], expires_at)])
    return posted.entry


def burn(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID, points: int,
         idempotency_key: str, source: str, reason: str = "",
         occurred_at: datetime | None = None) -> JournalEntry:
    """Spend points, soonest-expiring first; ``InsufficientPoints`` if the balance is short."""
    _require_points(points)
    with session.begin_nested():
        member = member_points_account(session, merchant_id=merchant_id, member_id=member_id)
        liability = liability_account(session, merchant_id=merchant_id)
        posted = _post(session, kind=EntryKind.burn, idempotency_key=idempotency_key,
                       merchant_id=merchant_id, member_id=member_id, source=source,
                       reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, -points), (liability, points)])
        if posted.created:
            _draw_lots(session, account=member, entry=posted.entry, amount=points,
                       expected=points)
    return posted.entry


def claw_back(session: Session, *, earn_entry_id: uuid.UUID, points: int,
              idempotency_key: str, source: str, reason: str = "",
              occurred_at: datetime | None = None) -> JournalEntry:
    """Take back points earned by a purchase that was returned.

    The purchase's own lot gives first, then the usual order. Points the member has
    already spent become a debt (a negative balance) that later credits repay. All
    claw-backs of one earn together can never exceed what it earned.
    """
    _require_points(points)
    original = _original(session, earn_entry_id, (EntryKind.earn, EntryKind.tap))
    assert original.merchant_id is not None and original.member_id is not None
    with session.begin_nested():
        member = member_points_account(session, merchant_id=original.merchant_id,
                                       member_id=original.member_id)
        liability = liability_account(session, merchant_id=original.merchant_id)
        posted = _post(session, kind=EntryKind.return_, idempotency_key=idempotency_key,
                       merchant_id=original.merchant_id, member_id=original.member_id,
                       source=source, reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, -points), (liability, points)],
                       reverses_entry_id=original.id, member_debt_allowed=True)
        if posted.created:
            # Read under the account lock just taken, so concurrent returns add up.
            earned = _amount_on(session, original.id, member.id)
            returned = -_reversed_on(session, original.id, member.id)
            if returned > earned:
                raise ReturnExceedsOriginal(
                    f"{returned} points would be returned; the purchase earned {earned}",
                    earned=earned, returned_before=returned - points)
            own_lot = session.scalar(select(PointLot.id).where(PointLot.entry_id == original.id))
            before = posted.balances[member.id] + points
            _draw_lots(session, account=member, entry=posted.entry, amount=points,
                       expected=min(points, max(0, before)), first_lot_id=own_lot)
    return posted.entry


def restore_burn(session: Session, *, burn_entry_id: uuid.UUID, points: int,
                 idempotency_key: str, source: str, reason: str = "",
                 occurred_at: datetime | None = None) -> JournalEntry:
    """Give back points spent on a purchase that was returned.

    The points come back as new lots with the expiry dates of the lots they were taken
    from (the last lot drawn is given back first); restored points whose date has passed
    expire at the next expiry run. A member in debt repays it first.
    """
    _require_points(points)
    original = _original(session, burn_entry_id, (EntryKind.burn,))
    if original.merchant_id is None or original.member_id is None:
        raise InvalidEntry("only a points burn can be restored")
    with session.begin_nested():
        member = member_points_account(session, merchant_id=original.merchant_id,
                                       member_id=original.member_id)
        liability = liability_account(session, merchant_id=original.merchant_id)
        posted = _post(session, kind=EntryKind.return_, idempotency_key=idempotency_key,
                       merchant_id=original.merchant_id, member_id=original.member_id,
                       source=source, reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, points), (liability, -points)],
                       reverses_entry_id=original.id)
        if posted.created:
            burnt = -_amount_on(session, original.id, member.id)
            restored = _reversed_on(session, original.id, member.id)
            if restored > burnt:
                raise ReturnExceedsOriginal(
                    f"{restored} points would be restored; the purchase used {burnt}",
                    burnt=burnt, restored_before=restored - points)
            draws = session.execute(
                select(PointLotDraw.amount, PointLot.expires_at)
                .join(PointLot, PointLot.id == PointLotDraw.lot_id)
                .where(PointLotDraw.entry_id == original.id)
                .order_by(PointLotDraw.id)).all()
            plan = rules.restore_plan([int(amount) for amount, _ in draws],
                                      restored - points, points)
            pieces = sorted(((amount, draws[index][1]) for index, amount in plan),
                            key=lambda piece: _expiry_order(piece[1]))
            kept = rules.credit_after_debt(posted.balances[member.id],
                                           [amount for amount, _ in pieces])
            _add_lots(session, account=member, entry=posted.entry,
                      pieces=[(amount, expires_at) for amount, (_, expires_at)
                              in zip(kept, pieces, strict=True)])
    return posted.entry


def adjust(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID, points: int,
           reason: str, idempotency_key: str, source: str,
           occurred_at: datetime | None = None,
           expires_at: datetime | None = None) -> JournalEntry:
    """A manual correction: ``points`` above zero credit a lot expiring at ``expires_at``
    (repaying any debt first); below zero they are taken like a burn and never create a
    debt. The counter side is the merchant's adjustments account."""
    _require_points(points, signed=True)
    _require_aware(expires_at, "expires_at")
    if not reason.strip():
        raise InvalidEntry("a correction needs a reason", field="reason")
    with session.begin_nested():
        member = member_points_account(session, merchant_id=merchant_id, member_id=member_id)
        counter = adjustments_account(session, merchant_id=merchant_id)
        posted = _post(session, kind=EntryKind.adjust, idempotency_key=idempotency_key,
                       merchant_id=merchant_id, member_id=member_id, source=source,
                       reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, points), (counter, -points)])
        if posted.created:
            if points > 0:
                kept = rules.credit_after_debt(posted.balances[member.id], [points])
                _add_lots(session, account=member, entry=posted.entry,
                          pieces=[(kept[0], expires_at)])
            else:
                _draw_lots(session, account=member, entry=posted.entry, amount=-points,
                           expected=-points)
    return posted.entry


def forfeit_all(session: Session, *, member_id: uuid.UUID, source: str, reason: str,
                occurred_at: datetime | None = None) -> list[JournalEntry]:
    """Take back every point (at each merchant) and mile the member still holds: an
    ``adjust`` entry per account (key ``forfeit:<account id>``), member -n against the
    merchant's liability (miles: the coalition pool), so that liability is released and
    the books balance. For an erased member; a debt stays as it is."""
    accounts = session.scalars(
        select(LedgerAccount).where(LedgerAccount.member_id == member_id,
                                    LedgerAccount.kind.in_([AccountKind.member_points.value,
                                                            AccountKind.member_miles.value]))
        .order_by(LedgerAccount.id)).all()
    entries = []
    for member in accounts:
        with session.begin_nested():
            points = member.kind == AccountKind.member_points.value
            if points:
                assert member.merchant_id is not None
                counter = liability_account(session, merchant_id=member.merchant_id)
            else:
                counter = coalition_pool_account(session)
            # Lock, then read what is left (as expiry does): a concurrent movement may
            # have changed it.
            _lock_accounts(session, [member.id, counter.id])
            held = int(session.scalar(select(LedgerAccount.balance)
                                      .where(LedgerAccount.id == member.id)) or 0)
            if held <= 0:
                continue
            posted = _post(session, kind=EntryKind.adjust,
                           idempotency_key=f"forfeit:{member.id}",
                           merchant_id=member.merchant_id, member_id=member_id,
                           source=source, reason=reason,
                           occurred_at=occurred_at or utcnow(),
                           postings=[(member, -held), (counter, held)])
            if posted.created and points:
                _draw_lots(session, account=member, entry=posted.entry, amount=held,
                           expected=held)
            entries.append(posted.entry)
    return entries


def expire(session: Session, *, now: datetime | None = None,
           limit: int = EXPIRE_BATCH) -> list[JournalEntry]:
    """Expire up to ``limit`` lots whose date has passed (one entry per lot, keyed
    ``expire:<lot id>``); call again until it returns an empty list."""
    now = now or utcnow()
    _require_aware(now, "now")
    lot_ids = session.scalars(
        select(PointLot.id).where(PointLot.expires_at <= now, PointLot.remaining > 0)
        .order_by(PointLot.expires_at, PointLot.id).limit(limit)).all()
    entries = []
    for lot_id in lot_ids:
        entry = _expire_lot(session, lot_id)
        if entry is not None:
            entries.append(entry)
    return entries


def _expire_lot(session: Session, lot_id: int) -> JournalEntry | None:
    with session.begin_nested():
        account_id, merchant_id, member_id, expires_at = session.execute(
            select(PointLot.account_id, PointLot.merchant_id, PointLot.member_id,
                   PointLot.expires_at).where(PointLot.id == lot_id)).one()
        member = session.get_one(LedgerAccount, account_id)
        counter = expired_account(session, merchant_id=merchant_id)
        # Lock first, then read what is left: a concurrent burn may have used some of it.
        _lock_accounts(session, [member.id, counter.id])
        remaining = int(session.scalar(select(PointLot.remaining)
                                       .where(PointLot.id == lot_id)) or 0)
        if remaining == 0:
            return None
        posted = _post(session, kind=EntryKind.expire, idempotency_key=f"expire:{lot_id}",
                       merchant_id=merchant_id, member_id=member_id,
                       source=f"expiry:lot:{lot_id}", reason="points expired",
                       occurred_at=expires_at or utcnow(),
                       postings=[(member, -remaining), (counter, remaining)])
        if not posted.created:
            return None
        changed = rowcount(session.execute(
            update(PointLot).where(PointLot.id == lot_id, PointLot.remaining == remaining)
            .values(remaining=0), execution_options={"synchronize_session": False}))
        if changed != 1:
            raise LedgerInconsistent(f"lot {lot_id} changed under a held account lock")
        _forget(session, PointLot, lot_id)
        session.add(PointLotDraw(lot_id=lot_id, entry_id=posted.entry.id,
                                 merchant_id=merchant_id, amount=remaining))
        session.flush()
        return posted.entry


def _original(session: Session, entry_id: uuid.UUID,
              kinds: tuple[EntryKind, ...]) -> JournalEntry:
    entry = session.get(JournalEntry, entry_id)
    if entry is None:
        raise EntryNotFound()
    if entry.kind not in {kind.value for kind in kinds} or entry.member_id is None:
        raise InvalidEntry(f"a {entry.kind} entry cannot be returned this way")
    return entry


def _amount_on(session: Session, entry_id: uuid.UUID, account_id: uuid.UUID) -> int:
    return int(session.scalar(select(func.coalesce(func.sum(Posting.amount), 0)).where(
        Posting.entry_id == entry_id, Posting.account_id == account_id)) or 0)


def _reversed_on(session: Session, entry_id: uuid.UUID, account_id: uuid.UUID) -> int:
    return int(session.scalar(
        select(func.coalesce(func.sum(Posting.amount), 0))
        .join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(JournalEntry.reverses_entry_id == entry_id,
               Posting.account_id == account_id)) or 0)


def _expiry_order(expires_at: datetime | None) -> tuple[bool, float]:
    return (expires_at is None, expires_at.timestamp() if expires_at is not None else 0.0)


# --- miles ------------------------------------------------------------------------------

def earn_miles(session: Session, *, member_id: uuid.UUID, miles: int, idempotency_key: str,
               source: str, reason: str = "", merchant_id: uuid.UUID | None = None,
               occurred_at: datetime | None = None) -> JournalEntry:
    """Coalition miles from the pool; ``merchant_id`` records who triggered them."""
    return _move_miles(session, kind=EntryKind.earn, member_id=member_id, miles=miles, sign=1,
                       idempotency_key=idempotency_key, source=source, reason=reason,
                       merchant_id=merchant_id, occurred_at=occurred_at)


def burn_miles(session: Session, *, member_id: uuid.UUID, miles: int, idempotency_key: str,
               source: str, reason: str = "", merchant_id: uuid.UUID | None = None,
               occurred_at: datetime | None = None) -> JournalEntry:
    return _move_miles(session, kind=EntryKind.burn, member_id=member_id, miles=miles, sign=-1,
                       idempotency_key=idempotency_key, source=source, reason=reason,
                       merchant_id=merchant_id, occurred_at=occurred_at)


def _move_miles(session: Session, *, kind: EntryKind, member_id: uuid.UUID, miles: int,
                sign: int, idempotency_key: str, source: str, reason: str,
                merchant_id: uuid.UUID | None, occurred_at: datetime | None) -> JournalEntry:
    """Sign +1 moves ``miles`` from the pool to the member, -1 back to the pool."""
    _require_points(miles)
    with session.begin_nested():
        member = member_miles_account(session, member_id=member_id)
        pool = coalition_pool_account(session)
        return _post(session, kind=kind, idempotency_key=idempotency_key,
                     merchant_id=merchant_id, member_id=member_id, source=source,
                     reason=reason, occurred_at=occurred_at or utcnow(),
                     postings=[(member, sign * miles), (pool, -sign * miles)]).entry


def claw_back_miles(session: Session, *, earn_entry_id: uuid.UUID, miles: int,
                    idempotency_key: str, source: str, reason: str = "",
                    occurred_at: datetime | None = None) -> tuple[JournalEntry | None, int]:
    """Take back miles earned by a purchase that was returned; the entry and the miles
    that could not be collected.

    **Policy:** miles never go below zero. What the member has already spent is not taken
    (the caller records it as uncollected); the issuing merchant keeps those miles on its
    settlement, since its purchase gave them. Returns ``(None, miles)`` when nothing is left.
    """
    _require_points(miles)
    original = _original(session, earn_entry_id, (EntryKind.earn,))
    assert original.member_id is not None
    with session.begin_nested():
        member = member_miles_account(session, member_id=original.member_id)
        pool = coalition_pool_account(session)
        existing = _entry_by_key(session, idempotency_key)
        if existing is not None:
            if (existing.kind, existing.reverses_entry_id) != (EntryKind.return_.value,
                                                              original.id):
                raise IdempotencyKeyReused(f"idempotency key {idempotency_key!r} already "
                                           f"recorded another entry")
            return existing, miles + _amount_on(session, existing.id, member.id)
        _lock_accounts(session, [member.id, pool.id])
        # Under the lock: never ask back more than the purchase gave and is not back yet,
        # whether or not the member still holds it.
        earned = _amount_on(session, original.id, member.id)
        left = earned + _reversed_on(session, original.id, member.id)
        if miles > left:
            raise ReturnExceedsOriginal(f"{miles} miles asked back; the purchase gave {earned}, "
                                        f"{left} not taken back yet", earned=earned)
        balance = int(session.scalar(select(LedgerAccount.balance)
                                     .where(LedgerAccount.id == member.id)) or 0)
        taken = min(miles, max(balance, 0))
        if taken == 0:
            return None, miles
        posted = _post(session, kind=EntryKind.return_, idempotency_key=idempotency_key,
                       merchant_id=original.merchant_id, member_id=original.member_id,
                       source=source, reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, -taken), (pool, taken)],
                       reverses_entry_id=original.id)
        _check_reversal(session, original.id, member.id, unit="miles", earned=True)
    return posted.entry, miles - taken


def restore_miles(session: Session, *, burn_entry_id: uuid.UUID, miles: int,
                  idempotency_key: str, source: str, reason: str = "",
                  occurred_at: datetime | None = None) -> JournalEntry:
    """Give back miles spent on a purchase that was returned."""
    _require_points(miles)
    original = _original(session, burn_entry_id, (EntryKind.burn,))
    assert original.member_id is not None
    with session.begin_nested():
        member = member_miles_account(session, member_id=original.member_id)
        pool = coalition_pool_account(session)
        posted = _post(session, kind=EntryKind.return_, idempotency_key=idempotency_key,
                       merchant_id=original.merchant_id, member_id=original.member_id,
                       source=source, reason=reason, occurred_at=occurred_at or utcnow(),
                       postings=[(member, miles), (pool, -miles)],
                       reverses_entry_id=original.id)
        if posted.created:
            _check_reversal(session, original.id, member.id, unit="miles", earned=False)
    return posted.entry


def _check_reversal(session: Session, original_id: uuid.UUID, account_id: uuid.UUID, *,
                    unit: str, earned: bool) -> None:
    """All reversals of an entry on this account never exceed what it moved (read under
    the account lock, so concurrent returns add up)."""
    moved = _amount_on(session, original_id, account_id)
    reversed_ = _reversed_on(session, original_id, account_id)
    if earned and -reversed_ > moved:
        raise ReturnExceedsOriginal(f"{-reversed_} {unit} would be taken back; the purchase "
                                    f"gave {moved}", earned=moved)
    if not earned and reversed_ > -moved:
        raise ReturnExceedsOriginal(f"{reversed_} {unit} would be given back; the purchase "
                                    f"used {-moved}", burnt=-moved)


# --- audit ------------------------------------------------------------------------------

def replay_balance(session: Session, account_id: uuid.UUID) -> int:
    """The balance the postings say the account has (the cache must equal it)."""
    return int(session.scalar(select(func.coalesce(func.sum(Posting.amount), 0))
                              .where(Posting.account_id == account_id)) or 0)


@functools.cache
def _audit_statements() -> tuple[Executable, ...]:
    """The audit's statements, built once: on a small ledger building them costs several
    times more than running them, and the random-walk tests audit after every step."""
    unbalanced = (select(Posting.entry_id, Posting.unit, func.sum(Posting.amount))
                  .group_by(Posting.entry_id, Posting.unit)
                  .having(func.sum(Posting.amount) != 0))
    empty = (select(JournalEntry.id).outerjoin(Posting, Posting.entry_id == JournalEntry.id)
             .where(Posting.id.is_(None)))
    wrong_unit = (select(Posting.id, LedgerAccount.key)
                  .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
                  .where(Posting.unit != LedgerAccount.unit))
    replayed = func.coalesce(func.sum(Posting.amount), 0)
    stale = (select(LedgerAccount.key, LedgerAccount.balance, replayed)
             .outerjoin(Posting, Posting.account_id == LedgerAccount.id)
             .group_by(LedgerAccount.id, LedgerAccount.key, LedgerAccount.balance)
             .having(LedgerAccount.balance != replayed))
    lots = (select(PointLot.account_id, func.sum(PointLot.remaining).label("remaining"))
            .group_by(PointLot.account_id).subquery())
    clawed = (select(Posting.account_id, func.sum(Posting.amount).label("amount"))
              .join(JournalEntry, JournalEntry.id == Posting.entry_id)
              .where(JournalEntry.kind == EntryKind.return_.value, Posting.amount < 0)
              .group_by(Posting.account_id).subquery())
    accounts = (select(LedgerAccount.key, LedgerAccount.kind, LedgerAccount.balance,
                       func.coalesce(lots.c.remaining, 0), func.coalesce(clawed.c.amount, 0))
                .outerjoin(lots, lots.c.account_id == LedgerAccount.id)
                .outerjoin(clawed, clawed.c.account_id == LedgerAccount.id))
    drawn = (select(PointLotDraw.lot_id, func.sum(PointLotDraw.amount).label("amount"))
             .group_by(PointLotDraw.lot_id).subquery())
    draws = (select(PointLot.id, PointLot.amount, PointLot.remaining,
                    func.coalesce(drawn.c.amount, 0))
             .outerjoin(drawn, drawn.c.lot_id == PointLot.id)
             .where(PointLot.amount - PointLot.remaining != func.coalesce(drawn.c.amount, 0)))
    lot_owner = and_(LedgerAccount.id == PointLot.account_id,
                     LedgerAccount.merchant_id == PointLot.merchant_id,
                     LedgerAccount.member_id == PointLot.member_id)
    owners = (select(PointLot.id).outerjoin(LedgerAccount, lot_owner)
              .where(LedgerAccount.id.is_(None)))
    return unbalanced, empty, wrong_unit, stale, accounts, draws, owners


def check_invariants(session: Session) -> list[str]:
    """Every way the books can be wrong, as readable lines; an empty list means sound.

    A full scan: for tests, audits and a nightly job, not for a request path.
    """
    unbalanced, empty, wrong_unit, stale, accounts, draws, owners = _audit_statements()
    problems: list[str] = []
    for entry_id, unit, total in session.execute(unbalanced):
        problems.append(f"entry {entry_id}: {unit} postings sum to {total}, not 0")
    for (entry_id,) in session.execute(empty):
        problems.append(f"entry {entry_id} has no postings")
    for posting_id, key in session.execute(wrong_unit):
        problems.append(f"posting {posting_id} is not in the unit of account {key}")
    for key, balance, replay in session.execute(stale):
        problems.append(f"account {key}: balance {balance} but postings sum to {replay}")
    for key, kind, balance, remaining, clawed_back in session.execute(accounts):
        balance, remaining, clawed_back = int(balance), int(remaining), int(clawed_back)
        if kind == AccountKind.member_points.value:
            if remaining != max(balance, 0):
                problems.append(f"account {key}: lots hold {remaining}, balance is {balance}")
            if balance < clawed_back:
                problems.append(f"account {key}: balance {balance} is below what returns "
                                f"took back ({clawed_back})")
        else:
            if remaining:
                problems.append(f"account {key} ({kind}) has point lots")
            if kind == AccountKind.member_miles.value and balance < 0:
                problems.append(f"account {key}: negative miles {balance}")
    for lot_id, amount, remaining, total_drawn in session.execute(draws):
        problems.append(f"lot {lot_id}: {amount} - {remaining} left but draws total "
                        f"{total_drawn}")
    for (lot_id,) in session.execute(owners):
        problems.append(f"lot {lot_id}: merchant or member differs from its account's")
    return problems

