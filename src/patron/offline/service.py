"""The offline register's server side: the pricing package, signed allowances, batch
replay with authority, and the per-merchant exceptions list (see docs/offline.md).

Batch replay runs in the caller's one database transaction with a savepoint per entry:
an entry that fails rolls back alone, the batch goes on. Exactly once rests on the POS
commit's ``(terminal, receipt_no)`` idempotency plus ``offline_entries`` (the answer each
replayed entry got, returned again to a resent entry).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.coalition.service import rate_for
from patron.config import get_settings
from patron.db import rowcount, table_of
from patron.errors import PatronError
from patron.identity import service as identity
from patron.identity.schemas import MemberIdentification
from patron.identity.service import member_for
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.errors import InsufficientPoints
from patron.ledger.models import LedgerAccount
from patron.members.models import Member
from patron.offline import bulk, results, signing, vouchers
from patron.offline.errors import (
    AllowanceExpired,
    AllowanceMemberMismatch,
    AllowanceNotYetValid,
    AllowanceSignatureInvalid,
    AllowanceUnknown,
    AllowanceWrongTerminal,
    BatchOutOfOrder,
    BatchTooLarge,
    BurnWithoutAllowance,
    DuplicateReceiptInBatch,
    EntryConflict,
    EntryRefused,
    ExceptionAlreadyResolved,
    ExceptionNotFound,
    InvalidNote,
    MilesBurnOffline,
    VoucherNotInAllowance,
    VoucherWithoutAllowance,
)
from patron.offline.models import (
    ExceptionKind,
    ExceptionStatus,
    OfflineAllowance,
    OfflineEntry,
    OfflineException,
)
from patron.offline.schemas import (
    MAX_BATCH_ENTRIES,
    AllowanceCode,
    AllowanceDocument,
    AllowanceRead,
    AllowanceWrite,
    BatchApplied,
    BatchEntry,
    BatchWrite,
    CoalitionRateRead,
    EntryResult,
    EntryStatus,
    ExceptionRead,
    PackageRead,
    ProgramRules,
)
from patron.pos import service as pos
from patron.pos.errors import ChannelMismatch
from patron.pos.models import PosTransaction
from patron.pos.schemas import PurchaseWrite
from patron.programs.service import get_program
from patron.security.models import SecurityEventKind, Throttle
from patron.security.service import record_security_event
from patron.tenancy.models import Role
from patron.tenancy.service import Principal, Till, till_of

PACKAGE_LIFETIME = timedelta(hours=24)
ALLOWANCE_LIFETIME = timedelta(hours=24)
# A till's clock may run a little behind the server's.
CLOCK_SKEW = timedelta(minutes=5)
MAX_NOTE = 2_000


# --- keys ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    public_key: bytes
    key_id: str


@lru_cache(maxsize=4)
def _signing_key(secret_key: str) -> SigningKey:
    private_key = signing.derive_private_key(secret_key)
    public_key = signing.public_key_bytes(private_key)
    return SigningKey(private_key=private_key, public_key=public_key,
                      key_id=signing.key_id(public_key))


def signing_key() -> SigningKey:
    return _signing_key(get_settings().secret_key)


def _iso(moment: datetime) -> str:
    try:
        return moment.astimezone(UTC).isoformat()
    except OverflowError:  # year 1 or 9999 with an offset: shown as sent
        return moment.isoformat()


# --- the package ----------------------------------------------------------------------------

def package(session: Session, *, actor: Principal) -> PackageRead:
    till = till_of(session, actor)
    program = get_program(session, merchant_id=till.merchant.id)
    view = program.rules
    rate = rate_for(session, till.merchant.currency)
    key = signing_key()
    now = utcnow()
    return PackageRead(
        merchant_id=till.merchant.id, merchant_number=till.merchant.number,
        store_id=till.store.id, terminal_id=till.terminal.id, currency=program.currency,
        currency_minor_units=program.currency_minor_units, timezone=till.store.timezone,
        program=ProgramRules(
            earn_points=view.earn_points, earn_per_amount=view.earn_per_amount,
            rounding=view.rounding.value, point_value_minor=view.point_value_minor,
            min_burn=view.min_burn,
            category_multipliers_bp=dict(sorted(view.category_multipliers_bp.items())),
            excluded_categories=sorted(view.excluded_categories)),
        coalition_rate=(None if rate is None else CoalitionRateRead(
            currency=rate.currency, spend_per_mile=rate.spend_per_mile,
            mile_value_milli=rate.mile_value_milli)),
        public_key=base64.b64encode(key.public_key).decode(), key_id=key.key_id, server_time=now,
        valid_until=now + PACKAGE_LIFETIME, max_batch_entries=MAX_BATCH_ENTRIES)


# --- allowances -----------------------------------------------------------------------------

def _identified(session: Session, actor: Principal,
                identification: MemberIdentification) -> Member:
    member = member_for(session, actor=actor, identification=identification)
    assert member is not None
    return member


def _offline_codes(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID,
                   now: datetime) -> list[AllowanceCode]:
    return vouchers.personal_codes(session, merchant_id=merchant_id, member_id=member_id,
                                   now=now)


def issue_allowance(session: Session, *, actor: Principal,
                    data: AllowanceWrite) -> AllowanceRead:
    """A signed allowance for one member at this till, for 24 hours.

    The burn limit reserves points: under a row lock on the member's points account (so
    concurrent issues for one member take turns), a newer allowance of the same till and
    member replaces the older one (which expires now), and the limit is the balance less
    what the member's other unexpired allowances may still burn, never below 0.
    """
    till = till_of(session, actor)
    member = _identified(session, actor, data.member)
    now = utcnow()
    program = get_program(session, merchant_id=till.merchant.id)
    balance = session.scalar(
        select(LedgerAccount.balance)
        .where(LedgerAccount.key == ledger.member_points_key(till.merchant.id, member.id))
        .with_for_update())
    session.execute(
        update(OfflineAllowance)
        .where(OfflineAllowance.merchant_id == till.merchant.id,
               OfflineAllowance.member_id == member.id,
               OfflineAllowance.terminal_id == till.terminal.id,
               OfflineAllowance.expires_at > now)
        .values(expires_at=now), execution_options={"synchronize_session": False})
    outstanding = session.scalar(
        select(func.coalesce(func.sum(OfflineAllowance.burn_limit - OfflineAllowance.burned),
                             0))
        .where(OfflineAllowance.merchant_id == till.merchant.id,
               OfflineAllowance.member_id == member.id,
               OfflineAllowance.expires_at > now))
    burn_limit = max(int(balance or 0) - int(outstanding or 0), 0)
    key = signing_key()
    allowance_id = uuid.uuid4()
    expires_at = now + ALLOWANCE_LIFETIME
    document = AllowanceDocument(
        id=str(allowance_id), key_id=key.key_id, terminal_id=str(till.terminal.id),
        merchant_id=str(till.merchant.id), member_id=str(member.id),
        member_number=member.member_number, currency=program.currency,
        burn_limit=burn_limit, point_value_minor=program.rules.point_value_minor,
        min_burn=program.rules.min_burn,
        codes=_offline_codes(session, merchant_id=till.merchant.id, member_id=member.id,
                             now=now),
        issued_at=_iso(now), expires_at=_iso(expires_at))
    body = document.model_dump(mode="json")
    session.add(OfflineAllowance(
        id=allowance_id, merchant_id=till.merchant.id, terminal_id=till.terminal.id,
        member_id=member.id, burn_limit=burn_limit, burned=0, issued_at=now,
        expires_at=expires_at, document=signing.canonical_json(body).decode()))
    session.flush()
    return AllowanceRead(allowance=document, signature=signing.sign(key.private_key, body))


# --- batch replay ---------------------------------------------------------------------------

@dataclass
class _Verified:
    """An allowance whose signature checked out, with its stored row."""

    document: AllowanceDocument
    row: OfflineAllowance
    codes: frozenset[str]


@dataclass
class _Outcome:
    exceptions: list[uuid.UUID] = field(default_factory=list)


class _OverAllowance(Exception):
    """The burn would take the allowance past its limit (rolls the entry's savepoint back)."""

    def __init__(self, remaining: int) -> None:
        super().__init__("over the allowance")
        self.remaining = remaining


def _entry_hash(entry: BatchEntry, body: dict[str, Any] | None = None) -> str:
    """SHA-256 of the entry as sent: its transaction (``pos.purchase_body``, computed here
    unless given) and its allowance's id."""
    return pos.json_hash({
        "transaction": pos.purchase_body(entry.transaction) if body is None else body,
        "allowance_id": (None if entry.allowance is None
                         else entry.allowance.allowance.get("id"))})


def _serialise_merchant(session: Session, merchant_id: uuid.UUID) -> None:
    """One batch at a time per merchant (PostgreSQL): a batch holds the account locks of
    every entry until it commits, so two batches touching the same members in another
    order would deadlock. SQLite's write lock already serialises them."""
    if session.get_bind().dialect.name != "postgresql":
        return
    number = int.from_bytes(hashlib.sha256(b"offline-batch:" + merchant_id.bytes)
                            .digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:number)"), {"number": number})


def replay_batch(session: Session, *, actor: Principal, data: BatchWrite) -> str:
    """The batch's answer (``BatchRead``) as JSON text: the set path's answers are made as
    text, and each answer is serialised once."""
    till = till_of(session, actor)
    entries = [_at_terminal(entry, till) for entry in data.entries]
    if not 1 <= len(entries) <= MAX_BATCH_ENTRIES:
        raise BatchTooLarge(f"send 1 to {MAX_BATCH_ENTRIES} entries, not {len(entries)}",
                            field="entries")
    for index in range(1, len(entries)):
        if entries[index].seq <= entries[index - 1].seq:
            raise BatchOutOfOrder(f"entries[{index}].seq must be greater than the one before",
                                  field=f"entries[{index}].seq")
    receipts = [entry.transaction.receipt_no for entry in entries]
    if len(set(receipts)) != len(receipts):
        raise DuplicateReceiptInBatch("each receipt number may appear once in a batch",
                                      field="entries")
    _serialise_merchant(session, till.merchant.id)
    replayed = {row.receipt_no: row for row in session.scalars(
        select(OfflineEntry).where(OfflineEntry.terminal_id == till.terminal.id,
                                   OfflineEntry.receipt_no.in_(receipts)))}
    committed_online = _committed(session, till, receipts)
    verified: dict[tuple[str, str], _Verified | EntryRefused] = {}
    now = utcnow()
    classifier = _Classifier(session, actor=actor, till=till, now=now)
    classifier.name_members(entries)
    answers: list[EntryResult | str | None] = [None] * len(entries)
    # How each entry was applied: as part of a set, or one by one and why.
    applied = Counter[str]()
    # Consecutive plain sales wait here to be committed as a set (offline.bulk); any other
    # entry first commits the ones before it, so entries always apply in order.
    run: list[tuple[int, bulk.Plain]] = []

    def commit_run() -> None:
        while run:
            try:
                replayed = bulk.replay(session, till=till,
                                       plains=[plain for _, plain in run], now=now)
            except bulk.SetConflict:
                taken: list[str] = []
                stuck = len(run)  # a receipt taken meanwhile: every one of them alone
                applied[SET_CONFLICT] += stuck
            else:
                taken = replayed.answers
                stuck = 1  # the plan stopped at this sale: it replays alone
                applied[SET] += len(taken)
                if replayed.stopped is not None:
                    applied[replayed.stopped] += 1
            for (index, _), answer in zip(run, taken, strict=False):
                answers[index] = answer
            alone, rest = run[len(taken):len(taken) + stuck], run[len(taken) + stuck:]
            for index, plain in alone:
                if stuck > 1:  # the receipt may have been committed online meanwhile
                    answers[index] = _replay_entry(
                        session, actor=actor, till=till, entry=plain.entry, replayed=None,
                        committed_online=bool(_committed(
                            session, till, [plain.entry.transaction.receipt_no])),
                        verified=verified)
                    continue
                answers[index] = _apply(session, actor=actor, till=till, entry=plain.entry,
                                        digest=plain.digest, allowance=_allowance_of(
                                            session, plain.entry, verified))
            run[:] = rest

    for index, entry in enumerate(entries):
        receipt_no = entry.transaction.receipt_no
        previous = replayed.get(receipt_no)
        online = receipt_no in committed_online
        plain = ("resent" if previous is not None else "committed_online" if online
                 else classifier.plain(entry, verified))
        if isinstance(plain, bulk.Plain):
            run.append((index, plain))
            continue
        applied[plain] += 1
        commit_run()
        answers[index] = _replay_entry(session, actor=actor, till=till, entry=entry,
                                       replayed=previous, committed_online=online,
                                       verified=verified)
    commit_run()
    mode = BatchApplied(set_wise=applied.pop(SET, 0), one_by_one=sum(applied.values()),
                        one_by_one_because=dict(sorted(applied.items())))
    return '{"results":[' + ",".join(
        answer if isinstance(answer, str) else answer.model_dump_json()
        for answer in answers if answer is not None) + '],"applied":' + \
        mode.model_dump_json() + "}"


SET = "set"
SET_CONFLICT = "set_conflict"


def _at_terminal(entry: BatchEntry, till: Till) -> BatchEntry:
    """The entry with its terminal's channel filled in (``pos.at_terminal``); one whose
    ``channel`` contradicts the terminal is left as sent: its commit refuses it."""
    try:
        transaction = pos.at_terminal(entry.transaction, till)
    except ChannelMismatch:
        return entry
    return (entry if transaction is entry.transaction
            else entry.model_copy(update={"transaction": transaction}))


class _Classifier:
    """Decides which entries the set path takes (``offline.bulk``: plain sales), with the
    members the batch names read once."""

    def __init__(self, session: Session, *, actor: Principal, till: Till,
                 now: datetime) -> None:
        self.session, self.actor, self.till, self.now = session, actor, till, now
        self._members: dict[str, Member | None] = {}
        # Whether a sale dated after the batch's clock went one by one (see ``plain``).
        self._ahead = False

    def plain(self, entry: BatchEntry,
              verified: dict[tuple[str, str], _Verified | EntryRefused]) -> bulk.Plain | str:
        """The entry as a plain sale, or why it goes one by one."""
        found = self._plain(entry, verified)
        if not isinstance(found, bulk.Plain) and not self._ahead:
            # Committed alone, after this batch's clock: its earn counts in a member's tier
            # window only from then on, so every later identified sale of the batch goes
            # alone too (the set path reads the window at the batch's clock).
            with contextlib.suppress(OverflowError):  # year 1 or 9999: refused anyway
                self._ahead = entry.transaction.occurred_at.astimezone(UTC) > self.now
        return found

    def _plain(self, entry: BatchEntry,
               verified: dict[tuple[str, str], _Verified | EntryRefused]) -> bulk.Plain | str:
        data = entry.transaction
        if data.member is not None and self._ahead:
            return "after_a_sale_ahead_of_the_clock"
        if data.vouchers:
            return "vouchers"
        if data.miles_to_burn or data.miles is not None:
            return "miles"
        if data.member is not None and (data.member.pin is not None or self.actor.require_pin):
            return "pin"  # a PIN is checked (and a wrong one counted) one sale at a time
        try:
            allowance = _check_entry(self.session, till=self.till, entry=entry,
                                     verified=verified)
            gtins = pos.validate(data, till=self.till)
            occurred_at = data.occurred_at.astimezone(UTC)
            pos.check_time(data, now=self.now)
        except (PatronError, OverflowError):
            return "refused_or_checked_alone"
        if occurred_at > self.now:
            return "ahead_of_the_clock"  # the tier window after it would move
        member: Member | None = None
        if data.member is not None:
            member = self._member(data.member)
            if member is None:
                return "member_not_found"
        body = pos.purchase_body(data)
        return bulk.Plain(entry=entry, digest=_entry_hash(entry, body),
                          request_hash=pos.body_hash(body),
                          allowance_id=None if allowance is None else allowance.row.id,
                          member=member, gtins=gtins, occurred_at=occurred_at)

    def name_members(self, entries: Sequence[BatchEntry]) -> None:
        """Find every member the batch's PIN-less sales name, all at once."""
        if self.actor.require_pin:
            return
        named = {item.model_dump_json(): item for item in (
            entry.transaction.member for entry in entries) if item is not None
            and item.pin is None}
        found = identity.members_for(self.session, actor=self.actor,
                                     identifications=list(named.values()))
        self._members = {key: member if isinstance(member, Member) else None
                         for key, member in zip(named, found, strict=True)}

    def _member(self, identification: MemberIdentification) -> Member | None:
        return self._members.get(identification.model_dump_json())


def _committed(session: Session, till: Till, receipts: Sequence[str]) -> set[str]:
    """Which of these receipts the till has committed (online or by an earlier replay)."""
    return set(session.scalars(select(PosTransaction.receipt_no).where(
        PosTransaction.terminal_id == till.terminal.id,
        PosTransaction.receipt_no.in_(receipts))))


def _allowance_of(session: Session, entry: BatchEntry,
                  verified: dict[tuple[str, str], _Verified | EntryRefused]
                  ) -> _Verified | None:
    """A plain entry's allowance, verified already (the cache answers)."""
    return None if entry.allowance is None else _verify(session, entry, verified)


def _replay_entry(session: Session, *, actor: Principal, till: Till, entry: BatchEntry,
                  replayed: OfflineEntry | None, committed_online: bool,
                  verified: dict[tuple[str, str], _Verified | EntryRefused]) -> EntryResult:
    digest = _entry_hash(entry)
    data = entry.transaction
    if replayed is not None:
        if replayed.entry_hash != digest:
            return _refuse(session, till=till, entry=entry, digest=digest, error=EntryConflict(
                f"receipt {data.receipt_no!r} was already replayed with a different body",
                transaction_id=str(replayed.transaction_id)))
        stored = EntryResult.model_validate_json(replayed.result_json)
        return stored.model_copy(update={"seq": entry.seq, "status": EntryStatus.replayed})
    if committed_online:
        # Committed while connected, its answer lost on the way: the commit's own
        # idempotency answers (same body) or refuses (another body).
        try:
            with session.begin_nested():
                answer = pos.commit(session, actor=actor, data=data)
        except PatronError as exc:
            return _refuse(session, till=till, entry=entry, digest=digest, error=exc)
        return _record(session, till=till, entry=entry, digest=digest, answer=answer,
                       status=EntryStatus.replayed, allowance_id=None, exceptions=[])
    try:
        allowance = _check_entry(session, till=till, entry=entry, verified=verified)
    except PatronError as exc:
        return _refuse(session, till=till, entry=entry, digest=digest, error=exc)
    return _apply(session, actor=actor, till=till, entry=entry, digest=digest,
                  allowance=allowance)


def _verify(session: Session, entry: BatchEntry,
            verified: dict[tuple[str, str], _Verified | EntryRefused]) -> _Verified:
    """Check an allowance's signature once per batch, then find its row."""
    assert entry.allowance is not None
    signed = entry.allowance
    cache_key = (json.dumps(signed.allowance, sort_keys=True, default=str), signed.signature)
    known = verified.get(cache_key)
    if known is None:
        known = _verify_once(session, signed.allowance, signed.signature)
        verified[cache_key] = known
    if isinstance(known, EntryRefused):
        raise known
    return known


def _verify_once(session: Session, document: dict[str, Any],
                 signature: str) -> _Verified | EntryRefused:
    key = signing_key()
    try:
        ok = signing.verify(key.public_key, document, signature)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        return AllowanceSignatureInvalid("the allowance does not match its signature: it "
                                         "was changed or not issued by this server")
    parsed = AllowanceDocument.model_validate(document)
    row = session.get(OfflineAllowance, uuid.UUID(parsed.id))
    if row is None:
        return AllowanceUnknown("no allowance with this id was issued",
                                allowance_id=parsed.id)
    return _Verified(document=parsed, row=row,
                     codes=frozenset(canonical_code(code.code) for code in parsed.codes))


def canonical_code(code: str) -> str:
    return vouchers.canonical(code)


def _voucher_codes(data: PurchaseWrite) -> list[str]:
    return vouchers.codes_of(data)


def _check_entry(session: Session, *, till: Till, entry: BatchEntry,
                 verified: dict[tuple[str, str], _Verified | EntryRefused]) -> _Verified | None:
    """What an entry may do offline; EntryRefused when it oversteps."""
    data = entry.transaction
    vouchers = _voucher_codes(data)
    if data.miles_to_burn:
        raise MilesBurnOffline("coalition miles cannot be burned offline",
                               field="transaction.miles_to_burn")
    if entry.allowance is None:
        if data.points_to_burn:
            raise BurnWithoutAllowance("points were burned offline without an allowance",
                                       field="transaction.points_to_burn")
        if vouchers:
            raise VoucherWithoutAllowance("a voucher was used offline without an allowance",
                                          field="transaction.vouchers")
        return None
    allowance = _verify(session, entry, verified)
    row = allowance.row
    if row.terminal_id != till.terminal.id or row.merchant_id != till.merchant.id:
        raise AllowanceWrongTerminal("the allowance belongs to another terminal",
                                     allowance_id=str(row.id))
    member = data.member
    same_member = member is not None and (
        member.member_id == row.member_id
        or (member.barcode is not None
            and member.barcode == allowance.document.member_number))
    if not same_member:
        raise AllowanceMemberMismatch("the sale is not for the allowance's member; "
                                      "identify the member by id or member number",
                                      allowance_id=str(row.id))
    try:
        occurred_at = data.occurred_at.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: the commit's own refusal
        pos.check_time(data, now=utcnow())
        raise
    if occurred_at > row.expires_at:
        raise AllowanceExpired(f"the sale at {_iso(occurred_at)} is after the allowance "
                               f"expired ({_iso(row.expires_at)})",
                               allowance_id=str(row.id), expired_at=_iso(row.expires_at))
    if occurred_at < row.issued_at - CLOCK_SKEW:
        raise AllowanceNotYetValid(f"the sale at {_iso(occurred_at)} is before the allowance "
                                   f"was issued ({_iso(row.issued_at)})",
                                   allowance_id=str(row.id))
    for code in vouchers:
        if canonical_code(code) not in allowance.codes:
            raise VoucherNotInAllowance(f"voucher {code!r} is not in the allowance",
                                        allowance_id=str(row.id), voucher_code=code)
    return allowance


def _lock_points_account(session: Session, merchant_id: uuid.UUID,
                         member_id: uuid.UUID) -> None:
    # The order every writer of a member's points uses: the account, then the allowance.
    session.execute(select(LedgerAccount.id)
                    .where(LedgerAccount.key == ledger.member_points_key(merchant_id,
                                                                         member_id))
                    .with_for_update())


def _take_from_allowance(session: Session, row: OfflineAllowance, points: int) -> None:
    _lock_points_account(session, row.merchant_id, row.member_id)
    taken = rowcount(session.execute(
        update(OfflineAllowance)
        .where(OfflineAllowance.id == row.id,
               OfflineAllowance.burned + points <= OfflineAllowance.burn_limit)
        .values(burned=OfflineAllowance.burned + points),
        execution_options={"synchronize_session": False}))
    if taken != 1:
        remaining = session.scalar(
            select(OfflineAllowance.burn_limit - OfflineAllowance.burned)
            .where(OfflineAllowance.id == row.id))
        raise _OverAllowance(int(remaining or 0))


@dataclass
class _Pending:
    kind: ExceptionKind
    code: str
    facts: dict[str, Any]
    voucher_code: str | None = None


def _apply(session: Session, *, actor: Principal, till: Till, entry: BatchEntry,
           digest: str, allowance: _Verified | None) -> EntryResult:
    """Commit the sale with authority; what cannot be honoured is dropped and recorded."""
    body = entry.transaction
    pending: list[_Pending] = []
    base = {"terminal_id": str(till.terminal.id), "receipt_no": body.receipt_no,
            "occurred_at": _iso(body.occurred_at), "queued_at": _iso(entry.queued_at),
            "allowance_id": None if allowance is None else str(allowance.row.id)}
    # Each round drops one thing the server cannot honour; a body has finitely many.
    for _ in range(len(_voucher_codes(body)) + 5):
        try:
            with session.begin_nested():
                if allowance is not None and body.points_to_burn:
                    _take_from_allowance(session, allowance.row, body.points_to_burn)
                answer = pos.commit(session, actor=actor, data=body)
            break
        except _OverAllowance as exc:
            pending.append(_Pending(
                ExceptionKind.allowance_exceeded, "allowance_exceeded", {
                    **base, "points_burned_offline": body.points_to_burn,
                    "allowance_burn_limit": allowance.row.burn_limit if allowance else 0,
                    "allowance_remaining": exc.remaining,
                    "points_shortfall": body.points_to_burn - exc.remaining,
                    "discount_given_offline": entry.provisional.discounts.points}))
            body = body.model_copy(update={"points_to_burn": 0})
        except InsufficientPoints as exc:
            if exc.extra.get("unit") != "points" or not body.points_to_burn:
                return _refuse(session, till=till, entry=entry, digest=digest, error=exc)
            member_id = _member_id(session, actor, body.member)
            balance = (0 if member_id is None else ledger.points_balance(
                session, merchant_id=till.merchant.id, member_id=member_id))
            pending.append(_Pending(
                ExceptionKind.points_shortfall, "insufficient_points", {
                    **base, "points_burned_offline": body.points_to_burn,
                    "balance_at_replay": balance,
                    "points_shortfall": body.points_to_burn - max(balance, 0),
                    "discount_given_offline": entry.provisional.discounts.points}))
            body = body.model_copy(update={"points_to_burn": 0})
        except vouchers.VoucherRefused as exc:
            code = exc.voucher_code
            pending.append(_Pending(
                ExceptionKind.voucher_refused, exc.code, {
                    **base, "voucher_code": code, "reason": exc.code, "detail": exc.detail,
                    "discount_given_offline": _voucher_discount(entry, code),
                    "refusal": exc.extra,
                    "first_redemption": _first_redemption(session, exc.extra)},
                voucher_code=code))
            body = vouchers.without_voucher(body, code)
        except PatronError as exc:
            if body.member is not None and _member_id(session, actor, body.member) is None:
                pending.append(_Pending(
                    ExceptionKind.member_refused, exc.code, {
                        **base, "member": body.member.model_dump(mode="json",
                                                                 exclude={"pin"}),
                        "reason": exc.code, "detail": exc.detail,
                        "points_burned_offline": body.points_to_burn,
                        "vouchers_offline": _voucher_codes(body)}))
                body = vouchers.without_voucher(body, None).model_copy(
                    update={"member": None, "points_to_burn": 0})
                continue
            return _refuse(session, till=till, entry=entry, digest=digest, error=exc)
    else:  # pragma: no cover - every round drops something, so the loop always ends
        raise RuntimeError("offline replay did not converge")
    transaction = json.loads(answer)
    transaction_id = uuid.UUID(transaction["id"])
    member_id = (uuid.UUID(transaction["member_id"]) if transaction.get("member_id")
                 else None)
    exception_ids = [
        _record_exception(session, till=till, receipt_no=body.receipt_no, digest=digest,
                          kind=item.kind, code=item.code, facts=item.facts,
                          member_id=member_id,
                          allowance_id=None if allowance is None else allowance.row.id,
                          transaction_id=transaction_id, voucher_code=item.voucher_code)
        for item in pending]
    status = (EntryStatus.committed_with_exception if exception_ids
              else EntryStatus.committed)
    return _record(session, till=till, entry=entry, digest=digest, answer=answer,
                   status=status, allowance_id=None if allowance is None else allowance.row.id,
                   exceptions=exception_ids)


def _first_redemption(session: Session, refusal: dict[str, Any]) -> dict[str, Any] | None:
    """Where and when the code was used first: its terminal, receipt and time."""
    try:
        transaction_id = uuid.UUID(str(refusal.get("transaction_id")))
    except ValueError:
        return None
    first = session.get(PosTransaction, transaction_id)
    if first is None:
        return None
    return {"terminal_id": str(first.terminal_id), "receipt_no": first.receipt_no,
            "transaction_id": str(first.id), "occurred_at": _iso(first.occurred_at),
            "used_at": refusal.get("first_used_at")}


def _voucher_discount(entry: BatchEntry, code: str) -> int | None:
    for given, amount in entry.provisional.discounts.vouchers.items():
        if canonical_code(given) == code:
            return amount
    return None


def _member_id(session: Session, actor: Principal,
               identification: MemberIdentification | None) -> uuid.UUID | None:
    """Who the identification names now, or None when it names no active member."""
    if identification is None:
        return None
    member = _member_or_none(session, actor, identification)
    return None if member is None else member.id


def _member_or_none(session: Session, actor: Principal,
                    identification: MemberIdentification) -> Member | None:
    try:
        with session.begin_nested():
            return _identified(session, actor, identification)
    except PatronError:
        return None


def _record(session: Session, *, till: Till, entry: BatchEntry, digest: str, answer: str,
            status: EntryStatus, allowance_id: uuid.UUID | None,
            exceptions: list[uuid.UUID]) -> EntryResult:
    transaction = json.loads(answer)
    result = results.entry_result(entry, transaction=transaction, status=status,
                                  exceptions=exceptions)
    session.execute(insert(table_of(OfflineEntry)), [results.entry_row(
        receipt_no=result.receipt_no, result_json=result.model_dump_json(),
        terminal_id=till.terminal.id, merchant_id=till.merchant.id,
        transaction_id=uuid.UUID(transaction["id"]), allowance_id=allowance_id, digest=digest,
        now=utcnow())])
    return result


FORGERY_CODES = frozenset({"allowance_signature_invalid", "allowance_unknown",
                           "allowance_wrong_terminal", "allowance_member_mismatch"})


def _refuse(session: Session, *, till: Till, entry: BatchEntry, digest: str,
            error: PatronError) -> EntryResult:
    """The entry is not applied; the refusal is recorded for the merchant."""
    data = entry.transaction
    member_id = data.member.member_id if data.member is not None else None
    allowance_id: uuid.UUID | None = None
    if entry.allowance is not None:
        try:
            allowance_id = uuid.UUID(str(entry.allowance.allowance.get("id")))
        except ValueError:
            allowance_id = None
    problem = error.to_problem()
    facts = {"terminal_id": str(till.terminal.id), "receipt_no": data.receipt_no,
             "occurred_at": _iso(data.occurred_at), "queued_at": _iso(entry.queued_at),
             "seq": entry.seq, "problem": problem,
             "transaction": data.model_dump(mode="json", exclude={"member": {"pin"}}),
             "provisional": entry.provisional.model_dump(mode="json")}
    if member_id is not None and session.get(Member, member_id) is None:
        member_id = None
    def forgery_event() -> None:
        # Not a register's honest mistake: someone changed what the server signed or
        # handed the register an allowance that is not its own. Recorded with the
        # exception, so once however often the entry is sent.
        record_security_event(session, merchant_id=till.merchant.id,
                              kind=SecurityEventKind.offline_forgery, refusal=error.code,
                              throttle=Throttle.voucher,
                              terminal_id=till.terminal.id, member_id=member_id,
                              detail=f"offline entry {data.receipt_no}: {error.detail}")

    exception_id = _record_exception(
        session, till=till, receipt_no=data.receipt_no, digest=digest,
        kind=ExceptionKind.refused_entry, code=error.code, facts=facts, member_id=member_id,
        allowance_id=allowance_id, transaction_id=None,
        voucher_code=str(error.extra["voucher_code"]) if "voucher_code" in error.extra
        else None, on_new=forgery_event if error.code in FORGERY_CODES else None)
    return EntryResult(seq=entry.seq, receipt_no=data.receipt_no, status=EntryStatus.refused,
                       transaction=None, differences=[], exceptions=[exception_id],
                       problem=problem)


def _record_exception(session: Session, *, till: Till, receipt_no: str, digest: str,
                      kind: ExceptionKind, code: str, facts: dict[str, Any],
                      member_id: uuid.UUID | None, allowance_id: uuid.UUID | None,
                      transaction_id: uuid.UUID | None, voucher_code: str | None,
                      on_new: Callable[[], None] | None = None) -> uuid.UUID:
    """Insert the exception once: the same refusal of the same entry sent again finds the
    first record (unique fingerprint)."""
    fingerprint = hashlib.sha256("\x1f".join(
        [str(till.terminal.id), receipt_no, kind.value, code, voucher_code or "", digest])
        .encode()).hexdigest()
    row = OfflineException(
        id=uuid.uuid4(), merchant_id=till.merchant.id, terminal_id=till.terminal.id,
        receipt_no=receipt_no, member_id=member_id, allowance_id=allowance_id,
        transaction_id=transaction_id, kind=kind.value, code=code,
        voucher_code=voucher_code, facts=facts, fingerprint=fingerprint,
        status=ExceptionStatus.open.value, created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
            if on_new is not None:
                on_new()
    except IntegrityError:
        existing = session.scalar(select(OfflineException.id)
                                  .where(OfflineException.fingerprint == fingerprint))
        if existing is None:
            raise
        return existing
    return row.id


# --- the exceptions list ----------------------------------------------------------------------

def _read(row: OfflineException) -> ExceptionRead:
    return ExceptionRead(
        id=row.id, merchant_id=row.merchant_id, terminal_id=row.terminal_id,
        receipt_no=row.receipt_no, member_id=row.member_id, allowance_id=row.allowance_id,
        transaction_id=row.transaction_id, kind=ExceptionKind(row.kind), code=row.code,
        voucher_code=row.voucher_code, facts=row.facts, status=ExceptionStatus(row.status),
        created_at=row.created_at, resolved_at=row.resolved_at,
        resolution_note=row.resolution_note)


def list_exceptions(session: Session, *, actor: Principal,
                    status: ExceptionStatus | None = None,
                    merchant_id: uuid.UUID | None = None,
                    limit: int | None = 100) -> list[ExceptionRead]:
    """Newest first (``limit`` None: all); a merchant key sees its own, the operator's
    any (or one merchant's)."""
    actor.require(Role.operator, Role.merchant)
    query = select(OfflineException)
    if actor.role == Role.merchant:
        query = query.where(OfflineException.merchant_id == actor.merchant_id)
    elif merchant_id is not None:
        query = query.where(OfflineException.merchant_id == merchant_id)
    if status is not None:
        query = query.where(OfflineException.status == status.value)
    rows = session.scalars(query.order_by(OfflineException.created_at.desc(),
                                          OfflineException.id).limit(limit))
    return [_read(row) for row in rows]


def _visible(session: Session, actor: Principal, exception_id: uuid.UUID) -> OfflineException:
    actor.require(Role.operator, Role.merchant)
    row = session.get(OfflineException, exception_id)
    if row is None or not actor.sees_merchant(row.merchant_id):
        raise ExceptionNotFound("no such offline exception")
    return row


def get_exception(session: Session, *, actor: Principal,
                  exception_id: uuid.UUID) -> ExceptionRead:
    return _read(_visible(session, actor, exception_id))


def resolve_exception(session: Session, *, actor: Principal, exception_id: uuid.UUID,
                      note: str) -> ExceptionRead:
    row = _visible(session, actor, exception_id)
    if not 1 <= len(note) <= MAX_NOTE:
        raise InvalidNote(f"note must be 1 to {MAX_NOTE} characters", field="note")
    now = utcnow()
    # Conditional: two people resolving at once, one wins.
    changed = rowcount(session.execute(
        update(OfflineException)
        .where(OfflineException.id == row.id,
               OfflineException.status == ExceptionStatus.open.value)
        .values(status=ExceptionStatus.resolved.value, resolved_at=now,
                resolution_note=note),
        execution_options={"synchronize_session": False}))
    if changed != 1:
        raise ExceptionAlreadyResolved("this exception was already resolved",
                                       resolved_at=_iso(row.resolved_at or now))
    session.refresh(row)
    return _read(row)
