"""Register operation events and reader taps: the business rules."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.campaigns import occasions
from patron.campaigns.models import Campaign, CampaignOutcome, Trigger
from patron.config import get_settings
from patron.db import insert_for, rowcount
from patron.errors import NotFound
from patron.identity.schemas import IdentifyRequest
from patron.identity.service import identify
from patron.kit.clock import utcnow
from patron.ledger.models import EntryKind
from patron.ledger.service import earn, points_balance
from patron.ledger.views import Position, decode_cursor, encode_cursor
from patron.members.models import Member, Membership
from patron.notify.outbox import EventType, emit
from patron.operations.errors import (
    NotAReader,
    OccurredInFuture,
    OccurredTooLongAgo,
    TapIdReused,
)
from patron.operations.models import EVENT_CODES, EVENT_TYPES, RegisterEvent, TapGrant, Visit
from patron.operations.schemas import (
    EventBatch,
    EventBatchResult,
    EventRead,
    TapCampaign,
    TapIn,
    TapResult,
    Visitor,
    VisitPage,
    VisitRead,
)
from patron.programs.rules import points_expire_at
from patron.programs.service import get_program
from patron.tenancy.models import Merchant, Role, Store, Terminal, TerminalKind
from patron.tenancy.schemas import ReceiptContent
from patron.tenancy.service import Principal, get_store, receipt_for
from patron.vouchers import codes
from patron.vouchers.models import Offer, Voucher

# Shared by register events, taps and purchases. Clocks drift a little; further ahead is a
# wrong clock. Offline registers catch up within days; older data is a manual correction.
MAX_FUTURE = timedelta(minutes=5)
MAX_AGE = timedelta(days=30)


def check_occurred_at(occurred_at: datetime, *, now: datetime, field: str) -> None:
    """Refuse times beyond clock skew in the future, or too old to be worth recording."""
    if occurred_at > now + MAX_FUTURE:
        raise OccurredInFuture(f"{field} is more than 5 minutes after the server's time "
                               f"{now.isoformat()}; check the terminal's clock", field=field)
    if occurred_at < now - MAX_AGE:
        raise OccurredTooLongAgo(f"{field} is more than 30 days ago", field=field)


def _terminal_scope(actor: Principal) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    actor.require(Role.terminal)
    if actor.merchant_id is None or actor.store_id is None or actor.terminal_id is None:
        raise NotFound("this key is not bound to a terminal")
    return actor.merchant_id, actor.store_id, actor.terminal_id


# --- register operation events ---------------------------------------------------------------

def record_events(session: Session, *, actor: Principal, batch: EventBatch) -> EventBatchResult:
    """Store a batch of the calling terminal's events, all or none.

    Events with a ``seq`` already stored for this terminal are skipped (a register resending
    a batch after a timeout); the unique index decides, in the same single statement."""
    merchant_id, store_id, terminal_id = _terminal_scope(actor)
    now = utcnow()
    for index, event in enumerate(batch.events):
        check_occurred_at(event.occurred_at, now=now, field=f"events[{index}].occurred_at")
    rows = [{"merchant_id": merchant_id, "store_id": store_id, "terminal_id": terminal_id,
             "type": EVENT_CODES[event.type], "occurred_at": event.occurred_at,
             "received_at": now, "seq": event.seq, "detail": event.detail}
            for event in batch.events]
    table = RegisterEvent.__table__
    assert isinstance(table, Table)
    statement = (insert_for(session, table)
                 .on_conflict_do_nothing(index_elements=["terminal_id", "seq"])
                 .returning(table.c.id))
    # One executemany (batched multi-row VALUES); skipped rows return no id.
    accepted = len(session.execute(statement, rows).all())
    return EventBatchResult(accepted=accepted, duplicates=len(rows) - accepted)


@dataclass(frozen=True)
class EventQuery:
    since: datetime | None = None
    until: datetime | None = None
    cursor: int | None = None
    limit: int = 100


def list_events(session: Session, *, actor: Principal, store_id: uuid.UUID,
                query: EventQuery) -> tuple[list[EventRead], int | None]:
    """A store's events in id order (arrival order), ``since`` ≤ occurred_at < ``until``."""
    store = get_store(session, actor=actor, store_id=store_id)
    actor.require(Role.operator, Role.merchant, Role.sales_rep)
    statement = select(RegisterEvent).where(RegisterEvent.store_id == store.id)
    if query.since is not None:
        statement = statement.where(RegisterEvent.occurred_at >= query.since)
    if query.until is not None:
        statement = statement.where(RegisterEvent.occurred_at < query.until)
    if query.cursor is not None:
        statement = statement.where(RegisterEvent.id > query.cursor)
    rows = list(session.scalars(statement.order_by(RegisterEvent.id).limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    events = [EventRead(id=row.id, terminal_id=row.terminal_id, type=EVENT_TYPES[row.type],
                        occurred_at=row.occurred_at, received_at=row.received_at,
                        seq=row.seq, detail=row.detail) for row in rows]
    return events, (rows[-1].id if more else None)


# --- reader taps -----------------------------------------------------------------------------

def _reader(session: Session, actor: Principal) -> Terminal:
    _, _, terminal_id = _terminal_scope(actor)
    terminal = session.get(Terminal, terminal_id)
    if terminal is None:
        raise NotFound("no such terminal")
    if terminal.kind != TerminalKind.reader.value:
        raise NotAReader(f"this key belongs to a {terminal.kind} terminal; taps come from "
                         "card readers (terminal kind 'reader')")
    return terminal


def _visit_by_tap_id(session: Session, terminal_id: uuid.UUID, tap_id: str) -> Visit | None:
    return session.scalars(select(Visit).where(Visit.terminal_id == terminal_id,
                                               Visit.tap_id == tap_id)).one_or_none()


def _answer(session: Session, visit: Visit, member_id: uuid.UUID, *,
            terminal: Terminal) -> TapResult:
    """The tap's answer, read back from what the visit wrote (the first answer and every
    replay of its ``tap_id`` alike)."""
    if visit.member_id != member_id:
        raise TapIdReused(f"tap_id {visit.tap_id!r} was used for another card", field="tap_id")
    balance = points_balance(session, merchant_id=visit.merchant_id, member_id=visit.member_id)
    store = session.get(Store, terminal.store_id)
    merchant = session.get(Merchant, terminal.merchant_id)
    assert store is not None and merchant is not None
    fired = _visit_campaigns(session, visit, merchant_number=merchant.number)
    campaign_points = sum(item.points for item in fired)
    return TapResult(visit_id=visit.id, member_id=visit.member_id,
                     points_granted=visit.points_granted, reason=visit.reason,
                     campaign_points=campaign_points,
                     points_total=visit.points_granted + campaign_points, campaigns=fired,
                     balance=balance, receipt=ReceiptContent(**receipt_for(store, terminal)),
                     occurred_at=visit.occurred_at)


def _visit_campaigns(session: Session, visit: Visit, *,
                     merchant_number: int) -> list[TapCampaign]:
    """The campaigns that fired on the visit (its outcomes, held-out members' left out),
    highest priority first, with the points, message and code each gave."""
    rows = session.execute(
        select(CampaignOutcome.campaign_id, CampaignOutcome.points, Campaign.name,
               Campaign.actions, Voucher.code, Voucher.offer_id, Voucher.valid_until,
               Offer.name.label("offer_name"))
        .join(Campaign, Campaign.id == CampaignOutcome.campaign_id)
        .outerjoin(Voucher, Voucher.id == CampaignOutcome.voucher_id)
        .outerjoin(Offer, Offer.id == Voucher.offer_id)
        .where(CampaignOutcome.member_id == visit.member_id,
               CampaignOutcome.occasion == occasions.visit_key(visit.id),
               CampaignOutcome.held_out.is_(False))
        .order_by(Campaign.priority.desc(), Campaign.created_at, Campaign.id)).all()
    return [TapCampaign(
        campaign_id=row.campaign_id, name=row.name, points=row.points,
        message=next((action["text"] for action in reversed(row.actions)
                      if action["type"] == "message"), None),
        voucher=None if row.code is None else {
            "code": codes.display(row.code), "offer_id": str(row.offer_id),
            "offer": row.offer_name, "barcode": codes.barcode_number(merchant_number, row.code),
            "valid_until": row.valid_until.isoformat() if row.valid_until else None})
        for row in rows]


def _ensure_membership(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                       now: datetime) -> None:
    table = Membership.__table__
    assert isinstance(table, Table)
    session.execute(insert_for(session, table)
                    .values(id=uuid.uuid4(), member_id=member_id, merchant_id=merchant_id,
                            joined_at=now, source="tap")
                    .on_conflict_do_nothing(index_elements=["member_id", "merchant_id"]))


def claim_tap_grant(session: Session, *, terminal: Terminal, member_id: uuid.UUID,
                    occurred_at: datetime, interval: timedelta) -> bool:
    """True if this tap may grant points: the reader last granted this member at least
    ``interval`` before ``occurred_at`` (or never). One conditional UPDATE decides, under the
    guard row's lock, so of concurrent taps exactly one wins."""
    table = TapGrant.__table__
    assert isinstance(table, Table)
    session.execute(insert_for(session, table)
                    .values(terminal_id=terminal.id, member_id=member_id,
                            merchant_id=terminal.merchant_id, last_granted_at=None)
                    .on_conflict_do_nothing(index_elements=["terminal_id", "member_id"]))
    claimed = session.execute(
        update(TapGrant)
        .where(TapGrant.terminal_id == terminal.id, TapGrant.member_id == member_id,
               or_(TapGrant.last_granted_at.is_(None),
                   TapGrant.last_granted_at <= occurred_at - interval))
        .values(last_granted_at=occurred_at)
        .execution_options(synchronize_session=False))
    return rowcount(claimed) == 1


def record_tap(session: Session, *, actor: Principal, data: TapIn) -> TapResult:
    """A card tapped at the calling reader: identify the member, record the visit, grant the
    reader's points at most once per member per ``PATRON_TAP_INTERVAL_MINUTES``."""
    terminal = _reader(session, actor)
    now = utcnow()
    occurred_at = data.occurred_at or now
    check_occurred_at(occurred_at, now=now, field="occurred_at")
    # The same rules as POST /v1/identify: blocked cards, withdrawn members, PINs.
    member_id = identify(session, actor=actor,
                         request=IdentifyRequest(card_uid=data.card_uid, pin=data.pin)
                         ).member_id
    if data.tap_id is not None:
        replayed = _visit_by_tap_id(session, terminal.id, data.tap_id)
        if replayed is not None:
            return _answer(session, replayed, member_id, terminal=terminal)
    _ensure_membership(session, member_id=member_id, merchant_id=terminal.merchant_id, now=now)

    # Claim the tap_id first, so a concurrent resend waits here, not after the grant.
    visit = Visit(merchant_id=terminal.merchant_id, store_id=terminal.store_id,
                  terminal_id=terminal.id, member_id=member_id, occurred_at=occurred_at,
                  received_at=now, points_granted=0, tap_id=data.tap_id)
    try:
        with session.begin_nested():
            session.add(visit)
            session.flush()
    except IntegrityError:
        winner = (_visit_by_tap_id(session, terminal.id, data.tap_id)
                  if data.tap_id is not None else None)
        if winner is None:
            raise
        return _answer(session, winner, member_id, terminal=terminal)

    points = terminal.points_per_tap
    interval = timedelta(minutes=get_settings().tap_interval_minutes)
    if points <= 0:
        visit.reason = "no_points_per_tap"
    elif claim_tap_grant(session, terminal=terminal, member_id=member_id,
                         occurred_at=occurred_at, interval=interval):
        store = session.get(Store, terminal.store_id)
        assert store is not None
        program = get_program(session, merchant_id=terminal.merchant_id)
        entry = earn(session, merchant_id=terminal.merchant_id, member_id=member_id,
                     points=points, expires_at=points_expire_at(
                         program.rules, earned_at=occurred_at, timezone=store.timezone),
                     idempotency_key=f"tap:{visit.id}", source="tap",
                     reason=f"tap at {store.name}", occurred_at=occurred_at,
                     kind=EntryKind.tap)
        visit.points_granted = points
        # Every earn is a points.earned event, whatever caused it (here: a tap).
        emit(session, type=EventType.points_earned, merchant_id=terminal.merchant_id,
             member_id=member_id, occurred_at=occurred_at, payload={
                 "entry_id": str(entry.id), "visit_id": str(visit.id),
                 "merchant_id": str(terminal.merchant_id), "store_id": str(store.id),
                 "terminal_id": str(terminal.id), "member_id": str(member_id),
                 "points": points, "source": "tap",
                 "balance_after": points_balance(session, merchant_id=terminal.merchant_id,
                                                 member_id=member_id)})
    else:
        visit.reason = "interval"
    session.flush()
    # Visit campaigns, once per visit (a replayed tap returned above).
    occasions.fire(session, occasions.Occasion(
        trigger=Trigger.visit, key=occasions.visit_key(visit.id),
        merchant_id=terminal.merchant_id,
        member_id=member_id, occurred_at=occurred_at, store_id=terminal.store_id), now=now)
    # Only here: a replayed tap returned above, so its event exists once already.
    emit(session, type=EventType.tap_recorded, merchant_id=visit.merchant_id,
         member_id=member_id, occurred_at=occurred_at, payload={
             "visit_id": str(visit.id), "member_id": str(member_id),
             "merchant_id": str(visit.merchant_id), "store_id": str(visit.store_id),
             "terminal_id": str(visit.terminal_id), "points_granted": visit.points_granted,
             "reason": visit.reason, "occurred_at": occurred_at.astimezone(UTC).isoformat()})
    return _answer(session, visit, member_id, terminal=terminal)


# --- a facility's visits ---------------------------------------------------------------------

@dataclass(frozen=True)
class VisitQuery:
    since: datetime | None = None
    until: datetime | None = None
    cursor: str | None = None
    limit: int = 100


def list_visits(session: Session, *, actor: Principal, store_id: uuid.UUID,
                query: VisitQuery) -> VisitPage:
    """A store's visits (taps at its readers), newest first, ``since`` ≤ occurred_at <
    ``until``, each with what the facility may see of the member: their id and member
    number, never their contact details (docs/privacy.md, "Visits"). The merchant's own key
    and the operator's; anyone else (its terminals, sales reps, other merchants) 404."""
    if actor.role not in (Role.operator, Role.merchant):
        raise NotFound("no such store")
    store = get_store(session, actor=actor, store_id=store_id)
    statement = (select(Visit.id, Visit.terminal_id, Visit.occurred_at, Visit.points_granted,
                        Visit.reason, Visit.member_id, Member.member_number)
                 .join(Member, Member.id == Visit.member_id)
                 .where(Visit.store_id == store.id))
    if query.since is not None:
        statement = statement.where(Visit.occurred_at >= query.since)
    if query.until is not None:
        statement = statement.where(Visit.occurred_at < query.until)
    if query.cursor is not None:
        after = decode_cursor(query.cursor)
        statement = statement.where(or_(
            Visit.occurred_at < after.occurred_at,
            (Visit.occurred_at == after.occurred_at) & (Visit.id < after.entry_id)))
    rows = session.execute(statement.order_by(Visit.occurred_at.desc(), Visit.id.desc())
                           .limit(query.limit + 1)).all()
    page = rows[:query.limit]
    next_cursor = (encode_cursor(Position(occurred_at=page[-1].occurred_at,
                                          entry_id=page[-1].id))
                   if len(rows) > query.limit else None)
    return VisitPage(visits=[VisitRead(
        visit_id=row.id, terminal_id=row.terminal_id, occurred_at=row.occurred_at,
        points_granted=row.points_granted, reason=row.reason,
        member=Visitor(member_id=row.member_id, member_number=row.member_number))
        for row in page], next_cursor=next_cursor)
