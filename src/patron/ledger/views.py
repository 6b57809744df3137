"""What a member holds and how it got there: balances with expiry and tier, and the
ledger history, newest first, a page at a time.

Read only. Who may look follows the member rules (``patron.members.service.get_member``):
the operator sees every member, a merchant or terminal key a member with a membership
at its merchant (otherwise 404), a sales rep no member (403). A merchant's points are
private to it: merchant and terminal keys see only their own merchant's points and
history lines, plus the coalition miles balance (shared) and the miles lines caused at
their own merchant.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import Session, aliased

from patron.kit.clock import utcnow
from patron.ledger import reasons
from patron.ledger.errors import InvalidCursor, InvalidLimit
from patron.ledger.models import (
    AccountKind,
    EntryKind,
    JournalEntry,
    LedgerAccount,
    PointLot,
    PointLotDraw,
    Posting,
    Unit,
)
from patron.ledger.schemas import (
    Balances,
    LedgerItem,
    LedgerPage,
    MilesBalance,
    NextExpiry,
    PointsBalance,
    TierStatus,
    TierStep,
)
from patron.ledger.service import miles_balance
from patron.members.models import Membership
from patron.members.service import get_member
from patron.programs.rules import BP_ONE, TierProgress
from patron.programs.service import member_tier
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal, get_merchant

EXPIRY_WINDOW = timedelta(days=30)
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MEMBER_KINDS = (AccountKind.member_points.value, AccountKind.member_miles.value)


def _scope(session: Session, actor: Principal, merchant_id: uuid.UUID | None
           ) -> uuid.UUID | None:
    """The merchant the answer is narrowed to: always the caller's own for merchant and
    terminal keys (naming another is 404, as everywhere); the one named, or none, for the
    operator and for the member themselves (their wallet shows every merchant's)."""
    if actor.role == Role.member:
        return merchant_id
    if merchant_id is not None:
        get_merchant(session, actor=actor, merchant_id=merchant_id)
    if actor.role == Role.operator:
        return merchant_id
    return actor.merchant_id


# --- balances ---------------------------------------------------------------------------

def expiry_outlook(lots: Iterable[tuple[datetime, int]], *, balance: int,
                   now: datetime) -> tuple[int, NextExpiry | None]:
    """Points expiring in ``(now, now + 30 days]`` and the soonest future expiry, from
    (expires_at, points left) of the lots. Both are capped at the balance: a member in
    debt (negative balance) has nothing that can expire."""
    held = max(balance, 0)
    by_date: dict[datetime, int] = defaultdict(int)
    for expires_at, points in lots:
        if expires_at > now and points > 0:
            by_date[expires_at] += points
    soon = sum(points for at, points in by_date.items() if at <= now + EXPIRY_WINDOW)
    next_expiry = None
    if by_date and held:
        at = min(by_date)
        next_expiry = NextExpiry(at=at, points=min(by_date[at], held))
    return min(soon, held), next_expiry


def tier_status(progress: TierProgress) -> TierStatus:
    current, upcoming = progress.current, progress.next
    return TierStatus(
        name=current.name if current is not None else None,
        earn_multiplier_bp=current.earn_multiplier_bp if current is not None else BP_ONE,
        points_earned_12m=progress.points_earned_12m,
        next=TierStep(name=upcoming.name, threshold_points=upcoming.threshold_points,
                      earn_multiplier_bp=upcoming.earn_multiplier_bp)
        if upcoming is not None else None,
        points_to_next=progress.points_to_next,
        progress_bp=progress.progress_bp)


def member_balances(session: Session, *, actor: Principal, member_id: uuid.UUID,
                    merchant_id: uuid.UUID | None = None,
                    now: datetime | None = None) -> Balances:
    """Points per merchant (with what expires soon and the tier there), miles, and the
    tier at the caller's merchant."""
    member = get_member(session, actor=actor, member_id=member_id)
    scope = _scope(session, actor, merchant_id)
    now = now or utcnow()

    accounts = select(LedgerAccount.merchant_id, LedgerAccount.balance).where(
        LedgerAccount.member_id == member.id,
        LedgerAccount.kind == AccountKind.member_points.value)
    lots = (select(PointLot.merchant_id, PointLot.expires_at,
                   func.sum(PointLot.remaining))
            .where(PointLot.member_id == member.id, PointLot.remaining > 0,
                   PointLot.expires_at > now)
            .group_by(PointLot.merchant_id, PointLot.expires_at))
    if scope is not None:
        accounts = accounts.where(LedgerAccount.merchant_id == scope)
        lots = lots.where(PointLot.merchant_id == scope)
        merchant_ids: Sequence[uuid.UUID] = [scope]
    else:
        merchant_ids = session.scalars(union(
            select(Membership.merchant_id).where(Membership.member_id == member.id),
            select(LedgerAccount.merchant_id).where(
                LedgerAccount.member_id == member.id,
                LedgerAccount.kind == AccountKind.member_points.value))).all()
    balances = {merchant: int(balance) for merchant, balance in session.execute(accounts)}
    lots_by_merchant: dict[uuid.UUID, list[tuple[datetime, int]]] = defaultdict(list)
    for lot_merchant, expires_at, left in session.execute(lots):
        if expires_at is not None:  # NULL never passes `expires_at > now`; narrows the type
            lots_by_merchant[lot_merchant].append((expires_at, int(left)))
    merchants = session.scalars(select(Merchant).where(Merchant.id.in_(merchant_ids))
                                .order_by(Merchant.name, Merchant.id)).all()

    points: list[PointsBalance] = []
    for merchant in merchants:
        balance = balances.get(merchant.id, 0)
        expiring, next_expiry = expiry_outlook(lots_by_merchant[merchant.id],
                                               balance=balance, now=now)
        tier = tier_status(member_tier(session, merchant_id=merchant.id,
                                       member_id=member.id, now=now))
        points.append(PointsBalance(
            merchant_id=merchant.id, merchant_name=merchant.name,
            currency=merchant.currency, balance=balance, expiring_30d=expiring,
            next_expiry=next_expiry, tier=tier))
    return Balances(member_id=member.id, as_of=now, points=points,
                    miles=MilesBalance(balance=miles_balance(session, member_id=member.id)),
                    tier=points[0].tier if scope is not None else None)


# --- history ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Position:
    """Where a page ends: its last entry's time and id (the history's order, newest
    first)."""

    occurred_at: datetime
    entry_id: uuid.UUID


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"(-?\d{1,19})\.([0-9a-f]{32})")
MAX_CURSOR_LENGTH = 200


def encode_cursor(position: Position) -> str:
    micros = (position.occurred_at - _EPOCH) // timedelta(microseconds=1)
    text = f"{micros}.{position.entry_id.hex}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a ``next_cursor`` stands for; anything else is ``InvalidCursor``."""
    refused = InvalidCursor("pass back the next_cursor of the previous page unchanged, or "
                            "leave cursor out for the first page", field="cursor")
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_",
                               validate=True)
        match = _CURSOR.fullmatch(raw.decode("ascii"))
        if match is None:
            raise refused
        micros, entry_hex = match.groups()
        occurred_at = _EPOCH + timedelta(microseconds=int(micros))
    except (ValueError, OverflowError):  # bad base64, not ASCII, beyond year 9999
        raise refused from None
    return Position(occurred_at=occurred_at, entry_id=uuid.UUID(hex=entry_hex))


@dataclass(frozen=True)
class HistoryQuery:
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    merchant_id: uuid.UUID | None = None
    unit: Unit | None = None


def member_history(session: Session, *, actor: Principal, member_id: uuid.UUID,
                   query: HistoryQuery) -> LedgerPage:
    """One page of the member's ledger history, newest first: one line per movement of
    the member's own points or miles account (one per entry: every ledger operation
    moves one member account).

    Keyset pagination on (occurred_at, entry id) over ``journal_entries`` alone, so the
    page is read along the index on ``(member_id, occurred_at)`` and costs the same however
    deep it is; the member's postings of just that page are fetched next. Entries recorded
    while a client walks the pages never repeat or shift a line it has not seen yet.
    """
    if type(query.limit) is not int or not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidLimit(f"limit must be a whole number from 1 to {MAX_LIMIT}",
                           field="limit")
    after = decode_cursor(query.cursor) if query.cursor is not None else None
    member = get_member(session, actor=actor, member_id=member_id)
    scope = _scope(session, actor, query.merchant_id)

    member_posting = (Posting.entry_id == JournalEntry.id,
                      LedgerAccount.id == Posting.account_id,
                      LedgerAccount.member_id == member.id,
                      LedgerAccount.kind.in_(MEMBER_KINDS))
    page = (select(JournalEntry)
            .where(JournalEntry.member_id == member.id)
            .order_by(JournalEntry.occurred_at.desc(), JournalEntry.id.desc())
            .limit(query.limit + 1))
    if scope is not None:
        page = page.where(JournalEntry.merchant_id == scope)
    if query.unit is not None:
        page = page.where(select(Posting.id).where(
            *member_posting, LedgerAccount.unit == query.unit.value).exists())
    if after is not None:
        # (occurred_at, id) < the cursor's, spelled so that the occurred_at bound is an
        # index range on both backends.
        page = page.where(JournalEntry.occurred_at <= after.occurred_at,
                          or_(JournalEntry.occurred_at < after.occurred_at,
                              JournalEntry.id < after.entry_id))
    entries = list(session.scalars(page))
    more = len(entries) > query.limit
    entries = entries[:query.limit]

    ids = [entry.id for entry in entries]
    postings: dict[uuid.UUID, list[tuple[int, str]]] = defaultdict(list)
    if ids:
        movements = (select(Posting.entry_id, Posting.amount, Posting.unit)
                     .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
                     .where(Posting.entry_id.in_(ids), LedgerAccount.member_id == member.id,
                            LedgerAccount.kind.in_(MEMBER_KINDS))
                     .order_by(Posting.id))
        if query.unit is not None:
            movements = movements.where(LedgerAccount.unit == query.unit.value)
        for entry_id, amount, unit in session.execute(movements):
            postings[entry_id].append((int(amount), unit))
    merchants = _merchants(session, {e.merchant_id for e in entries if e.merchant_id})
    originals = _entries(session, {e.reverses_entry_id for e in entries
                                   if e.reverses_entry_id})
    lot_origins = _lot_origins(session, {e.id for e in entries
                                         if e.kind == EntryKind.expire.value})
    items = []
    for entry in entries:
        name, timezone = merchants.get(entry.merchant_id, (None, None)) \
            if entry.merchant_id else (None, None)
        for amount, unit in postings[entry.id]:
            reason = reasons.describe(reasons.Facts(
                kind=entry.kind, unit=unit, amount=amount, stored_reason=entry.reason,
                merchant_name=name, timezone=timezone,
                original=originals.get(entry.reverses_entry_id)
                if entry.reverses_entry_id else None,
                lot_origin=lot_origins.get(entry.id)))
            items.append(LedgerItem(
                entry_id=entry.id, kind=EntryKind(entry.kind), merchant_id=entry.merchant_id,
                merchant_name=name, unit=Unit(unit), points=amount,
                occurred_at=entry.occurred_at, recorded_at=entry.created_at,
                source=entry.source, reason=reason,
                reverses_entry_id=entry.reverses_entry_id))
    next_cursor = None
    if more:
        last = entries[-1]
        next_cursor = encode_cursor(Position(occurred_at=last.occurred_at, entry_id=last.id))
    return LedgerPage(items=items, next_cursor=next_cursor)


def _merchants(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[str, str]]:
    if not ids:
        return {}
    return {merchant_id: (name, timezone) for merchant_id, name, timezone in session.execute(
        select(Merchant.id, Merchant.name, Merchant.timezone).where(Merchant.id.in_(ids)))}


def _entries(session: Session, ids: set[uuid.UUID]) -> dict[uuid.UUID, reasons.Origin]:
    if not ids:
        return {}
    return {entry_id: reasons.Origin(kind=kind, reason=reason, occurred_at=occurred_at)
            for entry_id, kind, reason, occurred_at in session.execute(
                select(JournalEntry.id, JournalEntry.kind, JournalEntry.reason,
                       JournalEntry.occurred_at).where(JournalEntry.id.in_(ids)))}


def _lot_origins(session: Session, expiry_ids: set[uuid.UUID]
                 ) -> dict[uuid.UUID, reasons.Origin]:
    """For each expiry entry, the entry that created the lot it emptied."""
    if not expiry_ids:
        return {}
    creator = aliased(JournalEntry)
    return {expiry_id: reasons.Origin(kind=kind, reason=reason, occurred_at=occurred_at)
            for expiry_id, kind, reason, occurred_at in session.execute(
                select(PointLotDraw.entry_id, creator.kind, creator.reason,
                       creator.occurred_at)
                .join(PointLot, PointLot.id == PointLotDraw.lot_id)
                .join(creator, creator.id == PointLot.entry_id)
                .where(PointLotDraw.entry_id.in_(expiry_ids)))}
