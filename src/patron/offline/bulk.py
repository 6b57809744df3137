"""Set-wise replay of a batch's plain sales (docs/offline.md, "Plain sales as a set").

A queued sale is *plain* when the set path can commit it exactly as the POS commit would:
no vouchers, no miles burned or reported, a member named without a PIN (or none), and a
sale time the commit accepts and not ahead of the server's clock (``offline.service``
decides; everything else replays one by one).

A run of consecutive plain sales is committed as a set, in the batch's transaction:
1. read once for the run: the program, the coalition rate, each member's tier window, the
   members' memberships, the allowances' burn counters (locked), and every ledger
   account with its lots (locked, ``patron.ledger.bulk``);
2. plan each sale in order with the commit's own pricing (``pos.service.price_sale``), the
   allowance's limit and the ledger's rules; the first sale the plan cannot take as sent
   (a burn over its allowance or the balance, a pricing refusal) or that would set off
   more than its own books (a checkout campaign whose condition holds, a referral it
   qualifies, a benefit rule it counts towards, a tier change with tier-change campaigns
   live: ``_Effects``, decided by the online commit's own functions) ends the run there,
   and the caller applies that one alone through the online commit, which records any
   exception and performs those effects as usual;
3. write the run with one multi-row statement per table, in a savepoint: transactions,
   lines, journal entries, postings, lots and draws, balances, memberships, member stats,
   allowance counters, outbox events and the ``offline_entries`` answers. A unique key
   refused there (a receipt committed online meanwhile) rolls the savepoint back and the
   run replays one by one (``SetConflict``).

The answers, rows and events are those of the one-by-one replay (tested by replaying the
same queues both ways and comparing the databases).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.campaigns import engine, live
from patron.campaigns.models import Trigger
from patron.coalition.rules import Rate
from patron.coalition.service import rate_for
from patron.db import insert_for, insert_rows, table_of, upsert_rows
from patron.errors import PatronError
from patron.ledger.bulk import Book, guarded_update
from patron.ledger.errors import InsufficientPoints
from patron.ledger.service import member_points_key
from patron.members.models import Member, Membership
from patron.notify.models import OutboxEvent
from patron.offline import results
from patron.offline.models import OfflineAllowance, OfflineEntry
from patron.offline.schemas import BatchEntry
from patron.pos import service as pos
from patron.pos.channel import sale_channel
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.pos.schemas import PurchaseWrite
from patron.programs import rules
from patron.programs.service import MerchantProgram, get_program, points_earned_12m
from patron.referrals import service as referrals
from patron.scores.service import Purchase, record_purchases
from patron.tenancy.service import Till
from patron.vouchers.benefits import service as benefits


class SetConflict(Exception):
    """A unique key refused the run's rows: replay it one by one."""


@dataclass(frozen=True)
class Plain:
    """A queued sale the set path takes, with what its checks found."""

    entry: BatchEntry
    digest: str
    request_hash: str  # the POS commit's (``pos.request_hash``)
    allowance_id: uuid.UUID | None
    member: Member | None
    gtins: list[str | None]
    occurred_at: datetime


@dataclass
class _Allowance:
    burn_limit: int
    burned_read: int
    burned: int


_ALLOWANCES = table_of(OfflineAllowance)
_SET_BURNED = (update(_ALLOWANCES)
               .where(_ALLOWANCES.c.id == bindparam("allowance_id"),
                      _ALLOWANCES.c.burned == bindparam("before"),
                      _ALLOWANCES.c.burn_limit >= bindparam("after"))
               .values(burned=bindparam("after")))


class _Stop(Exception):
    """The plan cannot take this sale as sent; the run ends before it (``reason``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Replayed:
    """What a run committed: the answers of the sales taken (JSON text, in order) and,
    when it stopped before the next sale, why (that sale is applied alone)."""

    answers: list[str]
    stopped: str | None


def replay(session: Session, *, till: Till, plains: Sequence[Plain],
           now: datetime) -> Replayed:
    """Commit the longest prefix of ``plains`` the plan takes (at least nothing, at most
    all). ``SetConflict`` when a unique key refuses the rows."""
    merchant_id = till.merchant.id
    program = get_program(session, merchant_id=merchant_id)
    rate = rate_for(session, till.merchant.currency)
    member_ids = sorted({plain.member.id for plain in plains if plain.member is not None})
    # Every account a sale of the run may read or move (those that do not exist yet are
    # known absent, so reading them costs nothing more): points, then miles.
    points = [member_points_key(merchant_id, member_id) for member_id in member_ids]
    miles = [f"member_miles:{member_id}" for member_id in member_ids]
    if member_ids:
        points.append(f"merchant_liability:{merchant_id}")
        if rate is not None:
            miles.append("coalition_pool")
    book = Book.open(session, points, miles)
    book.load_lots(member_points_key(merchant_id, plain.member.id) for plain in plains
                   if plain.member is not None and plain.entry.transaction.points_to_burn)
    allowances = _allowances(session, plains)
    windows = _TierWindows(session, merchant_id=merchant_id, now=now)
    effects = _Effects(session, till=till, member_ids=member_ids, now=now)
    planned: list[_Planned] = []
    stopped: str | None = None
    for plain in plains:
        try:
            planned.append(_plan(plain, till=till, program=program, rate=rate, book=book,
                                 allowances=allowances, windows=windows, effects=effects,
                                 now=now))
        except _Stop as stop:
            stopped = stop.reason
            break
    if not planned:
        return Replayed(answers=[], stopped=stopped)
    try:
        with session.begin_nested():
            _write(session, till=till, book=book, planned=planned, allowances=allowances,
                   now=now)
    except IntegrityError as exc:
        raise SetConflict(str(exc.orig)) from exc
    return Replayed(answers=[item.result_json for item in planned], stopped=stopped)


class _Effects:
    """What an identified sale may set off beyond its own books, as the online commit
    does it: checkout campaigns, a referral reward, benefit rules, tier-change campaigns.
    Read once per run; decided per sale by the functions the online commit itself calls
    (``campaigns.engine.any_holds`` on the same ``pos.campaign_checkout``,
    ``referrals.qualifies``, ``benefits.counted_towards``, ``pos.tier_changed``). A sale
    that would set one off is not planned: the run ends before it and the online commit
    applies it alone (``Replayed.stopped`` names why), so nothing is skipped."""

    def __init__(self, session: Session, *, till: Till, member_ids: Sequence[uuid.UUID],
                 now: datetime) -> None:
        self.session, self.till, self.now = session, till, now
        merchant_id, store_id = till.merchant.id, till.store.id
        self.checkout = engine.active_at_checkout(session, merchant_id=merchant_id,
                                                  store_id=store_id, now=now)
        self.tier_campaigns = bool(member_ids) and bool(live.active(
            session, merchant_id=merchant_id, store_id=store_id, trigger=Trigger.tier_change,
            now=now).campaigns)
        self.referees = referrals.pending_referees(session, merchant_id=merchant_id,
                                                   member_ids=member_ids)
        self.referral_program = (referrals.program_of(session, merchant_id)
                                 if self.referees else None)
        self.benefit_rules = {
            miles: benefits.live_rules(session, merchant_id=merchant_id, miles=miles)
            for miles in (False, True)} if member_ids else {False: [], True: []}
        # Members with a sale planned in this run: their statistics in the database do
        # not count it yet, so campaigns that read the member cannot decide on them.
        self.seen: set[uuid.UUID] = set()

    def stop(self, *, data: PurchaseWrite, member_id: uuid.UUID, priced: pos.Priced,
             tier_after: rules.TierProgress | None, occurred_at: datetime) -> str | None:
        """Why the sale cannot be planned (the effect it would set off), or None."""
        found = self.checkout
        if found.campaigns:
            if member_id in self.seen and "member" in found.groups:
                return "checkout_campaign"
            checkout = pos.campaign_checkout(till=self.till, member_id=member_id, data=data,
                                             priced=priced, occurred_at=occurred_at)
            if engine.any_holds(self.session, checkout, now=self.now, found=found):
                return "checkout_campaign"
        if member_id in self.referees and referrals.qualifies(
                self.referral_program, total_minor=priced.total):
            return "referral"
        if benefits.counted_towards(
                self.benefit_rules[bool(priced.miles_earned)],
                points_earned=priced.points_earned, miles_earned=priced.miles_earned,
                lines=[(line.sku, line.category, line.quantity) for line in data.lines]):
            return "benefit_rule"
        if self.tier_campaigns and tier_after is not None and pos.tier_changed(priced,
                                                                                tier_after):
            return "tier_change_campaign"
        return None


class _TierWindows:
    """Each member's points earned in the tier window at the batch's clock: read once
    per run, then moved by the run's own earns (none of its sales is ahead of the clock,
    so each earn falls inside the window)."""

    def __init__(self, session: Session, *, merchant_id: uuid.UUID, now: datetime) -> None:
        self.session, self.merchant_id, self.now = session, merchant_id, now
        self.earned: dict[uuid.UUID, int] = {}

    def points(self, member_id: uuid.UUID) -> int:
        if member_id not in self.earned:
            self.earned[member_id] = points_earned_12m(
                self.session, merchant_id=self.merchant_id, member_id=member_id, now=self.now)
        return self.earned[member_id]

    def add(self, member_id: uuid.UUID, points: int) -> None:
        self.earned[member_id] = self.points(member_id) + points


def _allowances(session: Session, plains: Sequence[Plain]) -> dict[uuid.UUID, _Allowance]:
    ids = sorted({plain.allowance_id for plain in plains if plain.allowance_id is not None
                  and plain.entry.transaction.points_to_burn})
    if not ids:
        return {}
    # After the accounts: the order every writer of a member's points takes its locks in.
    rows = session.execute(select(OfflineAllowance.id, OfflineAllowance.burn_limit,
                                  OfflineAllowance.burned)
                           .where(OfflineAllowance.id.in_(ids)).order_by(OfflineAllowance.id)
                           .with_for_update()).all()
    return {row_id: _Allowance(burn_limit=int(limit), burned_read=int(burned),
                               burned=int(burned)) for row_id, limit, burned in rows}


@dataclass
class _Planned:
    plain: Plain
    transaction: dict[str, Any]
    lines: list[dict[str, Any]]
    events: list[dict[str, Any]]
    purchase: Purchase | None
    result_json: str  # the entry's answer, as JSON text


def _plan(plain: Plain, *, till: Till, program: MerchantProgram, rate: Rate | None,
          book: Book, allowances: dict[uuid.UUID, _Allowance], windows: _TierWindows,
          effects: _Effects, now: datetime) -> _Planned:
    data = plain.entry.transaction
    member = plain.member
    merchant_id = till.merchant.id
    tiers = program.rules.tiers
    points_key = None if member is None else member_points_key(merchant_id, member.id)
    try:
        pos.check_payers(data, identified=member is not None)
        tier = (None if member is None or not tiers
                else rules.progress_to_next(windows.points(member.id), tiers).current)
        priced = pos.price_sale(
            data, program=program, gtins=plain.gtins,
            member_id=None if member is None else member.id, applied=[], rate=rate,
            balance=None if points_key is None else book.balance(points_key), tier=tier,
            explain=False)
    except PatronError as exc:
        raise _Stop("pricing") from exc
    allowance = (allowances.get(plain.allowance_id)
                 if plain.allowance_id is not None and priced.points_burned else None)
    if priced.points_burned and (allowance is None
                                 or allowance.burned + priced.points_burned
                                 > allowance.burn_limit):
        raise _Stop("burn")
    occurred_at = plain.occurred_at
    # Only an earn moves a member's tier; without tiers no window is read (none after).
    tier_after: rules.TierProgress | None = None
    if member is not None and priced.points_earned:
        tier_after = rules.progress_to_next(
            windows.points(member.id) + priced.points_earned if tiers else 0, tiers)
    if member is not None:
        # Decided before anything is planned: a sale that stops the run leaves no trace.
        reason = effects.stop(data=data, member_id=member.id, priced=priced,
                              tier_after=tier_after, occurred_at=occurred_at)
        if reason is not None:
            raise _Stop(reason)
    transaction_id = uuid.uuid4()
    source = f"pos:{till.terminal.id}"
    reason = f"purchase {data.receipt_no}"
    entries: dict[str, uuid.UUID | None] = {"burn": None, "earn": None, "miles": None}
    balance_after: int | None = None
    miles_after: int | None = None
    purchase: Purchase | None = None
    if member is not None:
        assert points_key is not None
        if priced.points_burned:
            assert allowance is not None
            try:
                entries["burn"] = book.burn(
                    merchant_id=merchant_id, member_id=member.id, points=priced.points_burned,
                    idempotency_key=f"pos:{transaction_id}:burn", source=source,
                    reason=reason, occurred_at=occurred_at)
            except InsufficientPoints as exc:
                raise _Stop("burn") from exc
            allowance.burned += priced.points_burned
        if priced.points_earned:
            expires_at = rules.points_expire_at(program.rules, earned_at=occurred_at,
                                                timezone=till.store.timezone)
            entries["earn"] = book.earn(
                merchant_id=merchant_id, member_id=member.id, points=priced.points_earned,
                expires_at=expires_at, idempotency_key=f"pos:{transaction_id}:earn",
                source=source, reason=reason, occurred_at=occurred_at)
            if tiers:
                windows.add(member.id, priced.points_earned)
        if priced.miles_earned:
            entries["miles"] = book.earn_miles(
                merchant_id=merchant_id, member_id=member.id, miles=priced.miles_earned,
                idempotency_key=f"pos:{transaction_id}:miles", source=source, reason=reason,
                occurred_at=occurred_at)
        balance_after = book.balance(points_key)
        miles_after = book.balance(f"member_miles:{member.id}")
        purchase = Purchase(member_id=member.id, merchant_id=merchant_id,
                            store_id=till.store.id, occurred_at=occurred_at,
                            spend_minor=priced.total,
                            category_quantities=pos.category_quantities(data.lines))
        effects.seen.add(member.id)
    answer = pos.answer_for(transaction_id, data=data, till=till, priced=priced,
                            balance_after=balance_after, miles_after=miles_after, issued=[],
                            occurred_at=occurred_at, now=now)
    answer_json = answer.model_dump_json()
    transaction = sale_row(till=till, data=data, priced=priced,
                           transaction_id=transaction_id, occurred_at=occurred_at, now=now,
                           request_hash=plain.request_hash, response_json=answer_json,
                           entries=entries)
    events = [{"id": uuid.uuid4(), "type": str(type_), "merchant_id": merchant_id,
               "member_id": priced.member_id, "payload": payload, "occurred_at": occurred_at,
               "created_at": now, "delivered_at": None}
              for type_, payload in pos.commit_events(
                  till=till, transaction_id=transaction_id, data=data, priced=priced,
                  burn_entry_id=entries["burn"], earn_entry_id=entries["earn"],
                  balance_after=balance_after, tier_after=tier_after)]
    result_json = results.committed_json(plain.entry, answer_json=answer_json, figures={
        "points_earned": priced.points_earned, "points_burned": priced.points_burned,
        "points_discount": priced.points_discount,
        "voucher_discount": priced.voucher_discount, "miles_discount": priced.miles_discount})
    return _Planned(plain=plain, transaction=transaction,
                    lines=pos.line_rows(transaction_id, till=till, priced=priced),
                    events=events, purchase=purchase, result_json=result_json)


def _write(session: Session, *, till: Till, book: Book, planned: list[_Planned],
           allowances: dict[uuid.UUID, _Allowance], now: datetime) -> None:
    merchant_id = till.merchant.id
    write_sales(session, merchant_id=merchant_id, book=book,
                transactions=[item.transaction for item in planned],
                lines=[line for item in planned for line in item.lines],
                purchases=[item.purchase for item in planned if item.purchase is not None],
                now=now)
    guarded_update(session, _SET_BURNED, [
        {"allowance_id": allowance_id, "before": allowance.burned_read,
         "after": allowance.burned}
        for allowance_id, allowance in sorted(allowances.items())
        if allowance.burned != allowance.burned_read], "an allowance changed under a held lock")
    insert_rows(session, table_of(OutboxEvent),
                [event for item in planned for event in item.events])
    insert_rows(session, table_of(OfflineEntry), [results.entry_row(
        receipt_no=item.plain.entry.transaction.receipt_no, result_json=item.result_json,
        terminal_id=till.terminal.id, merchant_id=merchant_id,
        transaction_id=item.transaction["id"], allowance_id=item.plain.allowance_id,
        digest=item.plain.digest, now=now) for item in planned])


# --- the rows of a sale, for every batched writer (this set path, the history import) ----

def sale_row(*, till: Till, data: PurchaseWrite, priced: pos.Priced,
             transaction_id: uuid.UUID, occurred_at: datetime, now: datetime,
             request_hash: str, response_json: str | None,
             entries: dict[str, uuid.UUID | None]) -> dict[str, Any]:
    """The ``pos_transactions`` row of a priced sale, as the POS commit writes it;
    ``entries`` the journal entries of its burn, earn and miles (None: none)."""
    return {
        "id": transaction_id, "merchant_id": till.merchant.id, "store_id": till.store.id,
        "terminal_id": till.terminal.id, "receipt_no": data.receipt_no,
        "member_id": priced.member_id,
        "channel": sale_channel(till.terminal.kind, data.channel).value,
        "currency": till.merchant.currency, "subtotal": priced.subtotal,
        "voucher_discount": priced.voucher_discount,
        "points_discount": priced.points_discount, "miles_discount": priced.miles_discount,
        "total": priced.total, "points_earned": priced.points_earned,
        "points_burned": priced.points_burned, "miles_earned": priced.miles_earned,
        "miles_burned": priced.miles_burned,
        "payment_method": data.payment.method.value if data.payment else None,
        "payment_amount": data.payment.amount if data.payment else None,
        "occurred_at": occurred_at, "created_at": now, "request_hash": request_hash,
        "response_json": response_json, "earn_entry_id": entries.get("earn"),
        "burn_entry_id": entries.get("burn"), "miles_earn_entry_id": entries.get("miles"),
        "miles_burn_entry_id": None}


def write_sales(session: Session, *, merchant_id: uuid.UUID, book: Book | None,
                transactions: Sequence[dict[str, Any]], lines: Sequence[dict[str, Any]],
                purchases: Sequence[Purchase], now: datetime) -> None:
    """Write planned sales with one multi-row statement per table: the book's entries
    (None: the sales move no points), the transactions and their lines, the memberships
    the purchases make and the members' statistics (``scores.record_purchases``)."""
    if book is not None:
        book.write()
    insert_rows(session, table_of(PosTransaction), transactions)
    insert_rows(session, table_of(PosTransactionLine), lines)
    if purchases:
        # A purchase makes its member a member here; the unique key skips existing ones.
        upsert_rows(session, insert_for(session, table_of(Membership)).on_conflict_do_nothing(
            index_elements=["member_id", "merchant_id"]), [
            {"id": uuid.uuid4(), "member_id": member_id, "merchant_id": merchant_id,
             "joined_at": now, "source": "purchase"}
            for member_id in sorted({purchase.member_id for purchase in purchases})])
        record_purchases(session, purchases)
