"""A stand-alone redemption in two statements: the common case of
``POST /v1/vouchers/{code}/redeem``.

The common case is a terminal using a code that needs no member and no basket — an
amount-off voucher the till applies itself, a ticket at a gate — with a use left, in its
time and place. It costs two statements, both in the endpoint's worker thread:

1. one read: the caller's key with its till (terminal, store, merchant), the throttle
   check of the terminal and of the client address, and the code with its offer;
2. one write: the code's counter (``service.TAKE_CODE``), the offer's counters only for
   an offer with a cap or a budget (``service.TAKE_OFFER``), and the redemption's row with
   its answer. On PostgreSQL it is a single statement in autocommit
   (``Database.statement_scope``): it commits by itself and holds the row every
   redemption of a capped offer shares for no longer than the statement. On SQLite the
   three run one after the other in the scope's transaction.

This path decides only that success; it refuses nothing. Everything else — an unknown,
revoked or non-terminal key, an inactive terminal, a throttled terminal or address, a
member or a basket in the request, a personal code, a per-member limit, points, a
currency named, an unknown or unusable code, a cap or budget reached, an expired hold to
release, a retry of an idempotency key — raises ``NotDirect`` before or instead of its
write; the endpoint rolls back and answers in full: the key checked (401, 403), the
voucher attempt throttled and recorded, the full path (``redemption.redeem``) giving
each refusal its reason. ``tests/vouchers/test_direct.py`` holds this path to the full
path's answers and rows.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import AsyncConnection
from sqlalchemy import (
    ColumnElement,
    Insert,
    Select,
    bindparam,
    exists,
    insert,
    select,
    true,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from patron.db import autocommits, table_of
from patron.errors import PatronError
from patron.kit.clock import utcnow
from patron.kit.crypto import token_hash
from patron.operations.service import check_occurred_at
from patron.pos.channel import sale_channel
from patron.rawdb import RawStatement
from patron.security.service import Limit, failure_columns, throttled
from patron.tenancy.models import ApiKey, Merchant, Role, Store, Terminal
from patron.tenancy.service import key_expired
from patron.vouchers import codes, rules, service
from patron.vouchers.models import (
    Offer,
    OfferKind,
    RedemptionStatus,
    Voucher,
    VoucherRedemption,
)
from patron.vouchers.redemption import face_value, request_digest
from patron.vouchers.schemas import RedeemWrite, RedemptionRead

# The kinds a code can be used for without a member or a basket.
KINDS = frozenset({OfferKind.amount_off, OfferKind.ticket})


class NotDirect(Exception):
    """Not the common case: roll back and take the full path."""


_COLUMNS = (
    ApiKey.role, ApiKey.revoked_at.label("key_revoked_at"),
    ApiKey.expires_at.label("key_expires_at"), Terminal.active,
    Terminal.id.label("terminal_id"), Terminal.kind.label("terminal_kind"), Terminal.store_id,
    Store.timezone,
    Merchant.id.label("merchant_id"), Merchant.currency.label("merchant_currency"),
    Merchant.number, Voucher.id.label("voucher_id"), Voucher.code,
    Voucher.merchant_id.label("voucher_merchant_id"), Voucher.member_id,
    Voucher.max_redemptions.label("code_uses"), Voucher.redemptions_count.label("code_used"),
    Voucher.valid_from, Voucher.valid_until, Voucher.revoked_at.label("code_revoked_at"),
    Offer.id.label("offer_id"), Offer.kind, Offer.value, Offer.currency, Offer.max_discount,
    Offer.item_sku, Offer.item_category, Offer.min_spend, Offer.categories, Offer.store_ids,
    Offer.channels, Offer.weekdays, Offer.from_minute, Offer.until_minute,
    Offer.per_member_limit, Offer.max_redemptions, Offer.budget, Offer.revoked_at)


@lru_cache(maxsize=8)
def _read(failures: int) -> Select[*tuple[Any, ...]]:
    """The caller's key with its till (terminal, store, merchant), the throttle check of
    the terminal and the client address (``failures`` > 0: the limit) and the code with
    its offer, in one statement: no row when the key is unknown or not a terminal's."""
    throttle = (failure_columns(failures, terminal=Terminal.id, merchant=Merchant.id)
                if failures > 0 else [])
    return (select(*_COLUMNS, *throttle)
            .select_from(ApiKey)
            .join(Terminal, Terminal.id == ApiKey.terminal_id)
            .join(Store, Store.id == Terminal.store_id)
            .join(Merchant, Merchant.id == Terminal.merchant_id)
            .outerjoin(Voucher, Voucher.code == bindparam("code"))
            .outerjoin(Offer, Offer.id == Voucher.offer_id)
            .where(ApiKey.key_hash == bindparam("key_hash")))


_REDEMPTIONS = table_of(VoucherRedemption)
_RECORD = insert(_REDEMPTIONS)


def _at_once(*, counted: bool) -> Insert:
    """The code's counter, the offer's (``counted``: it has a cap or a budget) and the
    row, in one statement. The offer is taken only if the code was; the row is written
    from the code taken (none: no row, nothing written) and, when counted, with the
    ``offer_id`` of the offer taken — NULL when its cap, budget or revocation refused it,
    which the NOT NULL column turns into an error that undoes the whole statement."""
    code = service.TAKE_CODE.returning(service.VOUCHERS.c.id).cte("taken_code")
    values: dict[str, ColumnElement[Any]] = {
        column.name: bindparam(_ROW + column.name, type_=column.type)
        for column in _REDEMPTIONS.c}
    values["voucher_id"] = code.c.id
    source = select(code.c.id)
    if counted:
        offer = (service.TAKE_OFFER.where(exists(select(code.c.id)))
                 .returning(service.OFFERS.c.id).cte("taken_offer"))
        values["offer_id"] = offer.c.id
        source = source.outerjoin(offer, true())
    return (_RECORD.from_select(list(values), source.with_only_columns(*values.values()))
            .returning(_REDEMPTIONS.c.id))


# The row's values as parameters, named like no column of the codes and offers (see
# ``service.TAKE_CODE``).
_ROW = "row_"
_AT_ONCE = _at_once(counted=False)
_AT_ONCE_COUNTED = _at_once(counted=True)


def _plain_request(key: str | None, data: RedeemWrite) -> bool:
    return (bool(key) and data.member is None and data.lines is None
            and data.currency is None)


def _caller_may(row: Any, limit: Limit, now: datetime) -> bool:
    """An active terminal's key, unrevoked and unexpired, neither terminal nor address
    throttled."""
    if (row.key_revoked_at is not None or key_expired(row.key_expires_at, now)
            or not row.active or Role(row.role) != Role.terminal):
        return False
    if limit.failures <= 0:
        return True
    failures = {"terminal_id": row.terminal_failure, "client_address": row.address_failure}
    return throttled(failures, limit=limit, now=now) is None


def _usable(row: Any, parsed: codes.ParsedCode) -> bool:
    """The code is this merchant's or the coalition's, in the form given, and nothing
    the read shows stands in its way (the writes check the counters again)."""
    if row.voucher_id is None or not service.visible(
            parsed, owner=row.voucher_merchant_id, merchant_id=row.merchant_id,
            owner_number=lambda: row.number):  # the owner is this merchant, if any
        return False
    return (OfferKind(row.kind) in KINDS and row.member_id is None
            and row.per_member_limit is None and row.code_revoked_at is None
            and row.revoked_at is None and row.code_used < row.code_uses)


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A plain request's code, read and time: what its one read takes."""

    parsed: codes.ParsedCode
    limit: Limit
    now: datetime
    parameters: dict[str, Any]

    @property
    def read(self) -> Select[*tuple[Any, ...]]:
        return _read(self.limit.failures)


@dataclass(frozen=True, slots=True)
class _Write:
    """The row the redemption writes, its answer, and whether the offer counts it."""

    record: dict[str, Any]
    answer: str
    counted: bool

    def parameters(self) -> dict[str, Any]:
        """For ``_AT_ONCE`` (``_AT_ONCE_COUNTED``)."""
        parameters = {_ROW + name: value for name, value in self.record.items()}
        parameters.update(take_voucher_id=self.record["voucher_id"],
                          take_offer_id=self.record["offer_id"],
                          take_discount=self.record["discount"])
        return parameters


def _begin(*, key: str | None, address: str, code: str, data: RedeemWrite) -> _Attempt:
    if not _plain_request(key, data):
        raise NotDirect
    try:
        parsed = codes.parse_any(code)
    except (codes.CodeFormatError, codes.CodeCheckError):
        raise NotDirect from None
    limit = Limit.vouchers()
    now = utcnow()
    return _Attempt(parsed=parsed, limit=limit, now=now, parameters={
        "key_hash": token_hash(key or ""), "code": parsed.code,
        "client_address": address, **limit.parameters(now)})


def _decide(attempt: _Attempt, row: Any, *, code: str, data: RedeemWrite,
            idempotency_key: str | None) -> _Write:
    """The redemption the read allows, or ``NotDirect``."""
    now = attempt.now
    if (row is None or not _caller_may(row, attempt.limit, now)
            or not _usable(row, attempt.parsed)):
        raise NotDirect
    terms = service.offer_terms(row, valid_from=row.valid_from, valid_until=row.valid_until)
    try:
        at = data.occurred_at or now
        check_occurred_at(at, now=now, field="occurred_at")
        rules.check_time_and_place(terms, rules.Sale(
            at=at, store_id=str(row.store_id), timezone=row.timezone,
            channel=sale_channel(row.terminal_kind, data.channel).value,
            currency=row.merchant_currency), code=row.code)
        discount = 0
        if terms.kind == OfferKind.amount_off:
            lines, subtotal = face_value(terms, row.code)
            discount = sum(rules.line_discounts(terms, lines, subtotal=subtotal,
                                                currency=row.merchant_currency,
                                                code=row.code))
    except PatronError:
        raise NotDirect from None
    record = {
        "id": uuid.uuid4(), "voucher_id": row.voucher_id, "offer_id": row.offer_id,
        "merchant_id": row.merchant_id, "store_id": row.store_id,
        "terminal_id": row.terminal_id, "member_id": None, "transaction_id": None,
        "status": RedemptionStatus.redeemed.value, "discount": discount, "bonus_points": 0,
        "currency": row.merchant_currency, "expires_at": None,
        "idempotency_key": idempotency_key,
        "request_hash": request_digest(data, code, idempotency_key),
        "created_at": now, "ended_at": None}
    answer = RedemptionRead(
        id=record["id"], code=codes.display(row.code), offer_id=row.offer_id,
        kind=terms.kind, status=RedemptionStatus.redeemed, discount=discount,
        bonus_points=0, currency=row.merchant_currency, member_id=None,
        store_id=row.store_id, terminal_id=row.terminal_id, transaction_id=None,
        expires_at=None, created_at=now).model_dump_json()
    record["response_json"] = answer
    return _Write(record=record, answer=answer, counted=service.counts_on_offer(row))


def redeem(session: Session, *, key: str | None, address: str, code: str, data: RedeemWrite,
           idempotency_key: str | None) -> str:
    """Use the code now in the common case, for the caller of ``key``; the answer as JSON
    text. ``NotDirect`` otherwise, possibly after writes: the caller rolls back."""
    attempt = _begin(key=key, address=address, code=code, data=data)
    row = session.connection().execute(attempt.read, attempt.parameters).first()
    write = _decide(attempt, row, code=code, data=data, idempotency_key=idempotency_key)
    try:
        if autocommits(session):
            written = _write_at_once(session, write)
        else:
            written = _write_in_steps(session, write)
    except IntegrityError:  # see _AT_ONCE; or the idempotency key was used before
        raise NotDirect from None
    if not written:
        raise NotDirect
    return write.answer


async def redeem_raw(connection: AsyncConnection[Any], *, key: str | None, address: str,
                     code: str, data: RedeemWrite, idempotency_key: str | None) -> str:
    """``redeem`` on PostgreSQL on the event loop: the same read and the same write
    statement, run by psycopg on an autocommitting connection (``patron.rawdb``).
    ``NotDirect`` when it is not the common case; nothing is written then."""
    attempt = _begin(key=key, address=address, code=code, data=data)
    row = await _raw(attempt.read).first(connection, attempt.parameters)
    write = _decide(attempt, row, code=code, data=data, idempotency_key=idempotency_key)
    try:
        written = await _write_raw(connection, write)
    except psycopg.IntegrityError:  # see _AT_ONCE; or the idempotency key was used before
        raise NotDirect from None
    if not written:
        raise NotDirect
    return write.answer


@lru_cache(maxsize=16)
def _raw(statement: ClauseElement) -> RawStatement:
    return RawStatement.of(statement)


async def _write_raw(connection: AsyncConnection[Any], write: _Write) -> bool:
    statement = _AT_ONCE_COUNTED if write.counted else _AT_ONCE
    return await _raw(statement).first(connection, write.parameters()) is not None


def _write_in_steps(session: Session, write: _Write) -> bool:
    """In the caller's transaction: the code, the offer, the row (rolled back on False)."""
    record = write.record
    if not service.take_code(session, record["voucher_id"]):
        return False
    if write.counted and not service.take_offer(session, record["offer_id"],
                                                record["discount"]):
        return False
    session.connection().execute(_RECORD, record)
    return True


def _write_at_once(session: Session, write: _Write) -> bool:
    """One statement, its own transaction (autocommit): whatever it cannot take, it
    takes nothing."""
    statement = _AT_ONCE_COUNTED if write.counted else _AT_ONCE
    return session.connection().execute(statement, write.parameters()).first() is not None
