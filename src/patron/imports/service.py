"""History import: members and purchases from a merchant's previous system (docs/imports.md).

Members are enrolled many at a time by ``members.service.enrol_imported`` (the rules of an
enrolment, without its events); purchases are priced by the POS pricing
(``pos.service.price_sale``) and written by the offline set path's writers
(``offline.bulk.sale_row`` and ``write_sales``): there is no third way of writing a sale.
An imported purchase may be dated any time in the past, earns points only when asked
(``PointsPolicy.as_earned``), never sets off a campaign, referral, benefit or message,
and counts in the member's statistics like any other. Each store's imported receipts are
numbered at its history terminal (``tenancy.service.history_terminal``): a receipt
imported again is found there and adds nothing.

The functions here take one chunk of a file each and never commit (``imports.runner``
is the boundary).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from pydantic import ValidationError
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from patron.errors import PatronError
from patron.imports.errors import (
    AmountPrecision,
    BadRow,
    MemberNotImportable,
    MemberUnknown,
    PurchaseInFuture,
    ReceiptConflict,
    ReceiptMixed,
    ReceiptSplit,
    StoreRequired,
    StoreUnknown,
)
from patron.imports.schemas import PURCHASE_COLUMNS, MemberRow, PointsPolicy, PurchaseRow
from patron.kit.validation import currency_minor_units
from patron.ledger.bulk import Book
from patron.ledger.service import member_points_key
from patron.members.models import Member, MemberStatus
from patron.members.service import ImportedAs, ImportedMember, enrol_imported
from patron.offline import bulk
from patron.pos import service as pos
from patron.pos.models import PosTransaction
from patron.pos.schemas import LineWrite, PurchaseWrite
from patron.programs import rules
from patron.programs.service import get_program
from patron.scores.service import Purchase
from patron.tenancy.models import Merchant, Role, Store
from patron.tenancy.service import Principal, Till, get_merchant, history_terminal

Row = tuple[int, dict[str, str] | str]  # a row's line, and its values or why unreadable


@dataclass(frozen=True)
class Refusal:
    """Why a member or purchase was refused, and the lines of its rows."""

    lines: list[int]
    key: str | None
    error: PatronError


@dataclass
class Outcomes:
    imported: int = 0
    already_there: int = 0
    refused: list[Refusal] = field(default_factory=list)


def importing_merchant(session: Session, *, actor: Principal,
                       merchant_id: uuid.UUID) -> Merchant:
    """The merchant whose history ``actor`` may import: the operator any merchant's, a
    merchant key its own (another merchant's is 404); terminal keys and sales reps none."""
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    actor.require(Role.operator, Role.merchant)
    return merchant


def _book(session: Session, merchant: Merchant, member_ids: Iterable[uuid.UUID]) -> Book:
    """The members' points accounts and the merchant's liability, locked in the order every
    writer of points takes them (``ledger.bulk.Book.open``, as the offline set path)."""
    return Book.open(session, [*(member_points_key(merchant.id, member_id)
                                 for member_id in member_ids),
                               f"merchant_liability:{merchant.id}"])


def _row_error(exc: ValidationError) -> BadRow:
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or 'row'}: {error['msg']}"
        for error in exc.errors(include_url=False))
    first = exc.errors()[0]["loc"]
    return BadRow(problems, field=str(first[0]) if first else None)


# --- members -------------------------------------------------------------------------------

def import_members(session: Session, *, merchant: Merchant, rows: Sequence[Row],
                   now: datetime) -> Outcomes:
    """Enrol a chunk of member rows; an opening ``points_balance`` is credited to each new
    member (expiring as points earned today do)."""
    outcomes = Outcomes()
    people: list[tuple[int, MemberRow]] = []
    for line, values in rows:
        if isinstance(values, str):
            outcomes.refused.append(Refusal([line], None, BadRow(values)))
            continue
        try:
            people.append((line, MemberRow.model_validate(values)))
        except ValidationError as exc:
            outcomes.refused.append(Refusal([line], values.get("external_ref"),
                                            _row_error(exc)))
    enrolled = enrol_imported(session, merchant=merchant, now=now, people=[ImportedMember(
        external_ref=row.external_ref, phone=row.phone, email=row.email,
        card_uid=row.card_uid, birth_year=row.birth_year,
        gender=row.gender.value if row.gender else None, postcode=row.postal_code,
        language=row.language, enrolled_at=row.enrolled_at) for _, row in people])
    balances: list[tuple[ImportedAs, int]] = []
    for (line, row), outcome in zip(people, enrolled, strict=True):
        if isinstance(outcome, PatronError):
            outcomes.refused.append(Refusal([line], row.external_ref, outcome))
        elif isinstance(outcome, ImportedAs):
            outcomes.imported += 1
            if row.points_balance:
                balances.append((outcome, row.points_balance))
        else:
            outcomes.already_there += 1
    if balances:
        program = get_program(session, merchant_id=merchant.id)
        book = _book(session, merchant, [member.id for member, _ in balances])
        expires_at = rules.points_expire_at(program.rules, earned_at=now,
                                            timezone=merchant.timezone)
        for member, points in balances:
            book.earn(merchant_id=merchant.id, member_id=member.id, points=points,
                      expires_at=expires_at, idempotency_key=f"import:{member.id}:opening",
                      source="import", reason="opening balance from the previous system",
                      occurred_at=now)
        book.write()
    return outcomes


# --- purchases -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Receipt:
    """The consecutive rows of one purchase (one ``receipt_no`` at one store)."""

    rows: list[Row]

    @property
    def lines(self) -> list[int]:
        return [line for line, _ in self.rows]


def receipts(rows: Iterable[Row]) -> Iterator[Receipt]:
    """Group consecutive rows with the same ``store_code`` and ``receipt_no`` into
    receipts (an unreadable row is a receipt of its own, refused)."""
    current: list[Row] = []
    current_key: tuple[str | None, str | None] | None = None
    for line, values in rows:
        key = (None, None) if isinstance(values, str) else (values.get("store_code"),
                                                             values.get("receipt_no"))
        if current and (key != current_key or isinstance(values, str)
                        or key == (None, None)):
            yield Receipt(current)
            current = []
        current.append((line, values))
        current_key = key
    if current:
        yield Receipt(current)


@dataclass(frozen=True)
class _Sale:
    receipt: Receipt
    external_ref: str
    store: Store
    data: PurchaseWrite
    occurred_at: datetime
    request_hash: str


class _Refused(Exception):
    def __init__(self, key: str | None, error: PatronError) -> None:
        super().__init__(error.detail)
        self.key, self.error = key, error


def import_purchases(session: Session, *, merchant: Merchant, chunk: Sequence[Receipt],
                     points: PointsPolicy, now: datetime) -> Outcomes:
    """Write a chunk of receipts as purchases of their members, set-wise."""
    outcomes = Outcomes()
    stores = {store.code: store for store in session.scalars(
        select(Store).where(Store.merchant_id == merchant.id).order_by(Store.code))}
    sales: list[_Sale] = []
    seen: set[tuple[str, str]] = set()
    for receipt in chunk:
        try:
            sale = _sale(receipt, merchant=merchant, stores=stores, now=now)
            key = (sale.store.code, sale.data.receipt_no)
            if key in seen:
                raise _Refused(sale.data.receipt_no, ReceiptSplit(
                    f"receipt {sale.data.receipt_no!r} has rows earlier in the file, apart "
                    f"from these: put the rows of one receipt together",
                    field="receipt_no"))
            seen.add(key)
            sales.append(sale)
        except _Refused as refused:
            outcomes.refused.append(Refusal(receipt.lines, refused.key, refused.error))
    if not sales:
        return outcomes
    members = {ref: (member_id, status) for ref, member_id, status in session.execute(
        select(Member.external_ref, Member.id, Member.status).where(
            Member.merchant_id == merchant.id,
            Member.external_ref.in_({sale.external_ref for sale in sales})))}
    tills = {store.id: Till(terminal=history_terminal(session, store), store=store,
                            merchant=merchant)
             for store in {sale.store.id: sale.store for sale in sales}.values()}
    existing = {(terminal_id, receipt_no): digest
                for terminal_id, receipt_no, digest in session.execute(
                    select(PosTransaction.terminal_id, PosTransaction.receipt_no,
                           PosTransaction.request_hash).where(tuple_(
                               PosTransaction.terminal_id, PosTransaction.receipt_no).in_(
                               [(tills[sale.store.id].terminal.id, sale.data.receipt_no)
                                for sale in sales])))}
    program = get_program(session, merchant_id=merchant.id)
    as_earned = points == PointsPolicy.as_earned
    taken: list[tuple[_Sale, uuid.UUID]] = []
    for sale in sales:
        till = tills[sale.store.id]
        found = members.get(sale.external_ref)
        digest = existing.get((till.terminal.id, sale.data.receipt_no))
        error: PatronError | None = None
        if digest == sale.request_hash:
            outcomes.already_there += 1
            continue
        if digest is not None:
            error = ReceiptConflict(f"receipt {sale.data.receipt_no!r} of store "
                                    f"{sale.store.code!r} was imported with other lines, "
                                    f"time or member", field="receipt_no")
        elif found is None:
            error = MemberUnknown(f"no member of this merchant has external_ref "
                                  f"{sale.external_ref!r}: import the members first",
                                  field="external_ref")
        elif found[1] != MemberStatus.active.value:
            error = MemberNotImportable(f"the member with external_ref "
                                        f"{sale.external_ref!r} is {found[1]}",
                                        field="external_ref")
        if error is not None:
            outcomes.refused.append(Refusal(sale.receipt.lines, sale.data.receipt_no, error))
            continue
        assert found is not None
        taken.append((sale, found[0]))
    book = _book(session, merchant, [member_id for _, member_id in taken]) \
        if as_earned and taken else None
    transactions, lines, purchases = [], [], []
    for sale, member_id in taken:
        till = tills[sale.store.id]
        try:
            gtins = pos.validate(sale.data, till=till)
            # Without ``as-earned`` the sale is priced as one that earns nothing (no
            # member), then is the member's; no tier and no coalition miles either way.
            priced = pos.price_sale(
                sale.data, program=program, gtins=gtins,
                member_id=member_id if book is not None else None, applied=[], rate=None,
                tier=None, explain=False,
                balance=book.balance(member_points_key(merchant.id, member_id))
                if book is not None else None)
        except PatronError as exc:
            outcomes.refused.append(Refusal(sale.receipt.lines, sale.data.receipt_no, exc))
            continue
        transaction_id = uuid.uuid4()
        earn: uuid.UUID | None = None
        if book is not None and priced.points_earned:
            earn = book.earn(
                merchant_id=merchant.id, member_id=member_id, points=priced.points_earned,
                expires_at=rules.points_expire_at(program.rules, earned_at=sale.occurred_at,
                                                  timezone=sale.store.timezone),
                idempotency_key=f"pos:{transaction_id}:earn",
                source=f"import:{till.terminal.id}", reason=f"purchase {sale.data.receipt_no}",
                occurred_at=sale.occurred_at)
        if book is None:
            priced = replace(priced, member_id=member_id)
        transactions.append(bulk.sale_row(
            till=till, data=sale.data, priced=priced, transaction_id=transaction_id,
            occurred_at=sale.occurred_at, now=now, request_hash=sale.request_hash,
            response_json=None, entries={"earn": earn}))
        lines.extend(pos.line_rows(transaction_id, till=till, priced=priced))
        purchases.append(Purchase(member_id=member_id, merchant_id=merchant.id,
                                  store_id=sale.store.id, occurred_at=sale.occurred_at,
                                  spend_minor=priced.total,
                                  category_quantities=pos.category_quantities(
                                      sale.data.lines)))
        outcomes.imported += 1
    bulk.write_sales(session, merchant_id=merchant.id, book=book, transactions=transactions,
                     lines=lines, purchases=purchases, now=now)
    return outcomes


def _sale(receipt: Receipt, *, merchant: Merchant, stores: dict[str, Store],
          now: datetime) -> _Sale:
    """The receipt's rows as one purchase, or ``_Refused``."""
    rows: list[PurchaseRow] = []
    for line, values in receipt.rows:
        if isinstance(values, str):
            raise _Refused(None, BadRow(f"line {line}: {values}"))
        try:
            rows.append(PurchaseRow.model_validate(values))
        except ValidationError as exc:
            error = _row_error(exc)
            raise _Refused(values.get("receipt_no"), BadRow(f"line {line}: {error.detail}",
                                                            **error.extra)) from exc
    first = rows[0]
    for line, row in zip(receipt.lines[1:], rows[1:], strict=True):
        if (row.external_ref, row.occurred_at, row.currency.upper()) != (
                first.external_ref, first.occurred_at, first.currency.upper()):
            raise _Refused(first.receipt_no, ReceiptMixed(
                f"line {line}: the rows of receipt {first.receipt_no!r} must name one "
                f"external_ref, occurred_at and currency", field="receipt_no"))
    if first.store_code is not None:
        store = stores.get(first.store_code)
        if store is None:
            raise _Refused(first.receipt_no, StoreUnknown(
                f"no store {first.store_code!r}: this merchant's stores are "
                f"{', '.join(sorted(stores)) or 'none'}", field="store_code"))
    elif len(stores) == 1:
        store = next(iter(stores.values()))
    else:
        raise _Refused(first.receipt_no, StoreRequired(
            f"name the store of receipt {first.receipt_no!r} (store_code): this merchant "
            f"has {len(stores)} stores", field="store_code"))
    occurred_at = first.occurred_at.astimezone(UTC)
    if occurred_at > now:
        raise _Refused(first.receipt_no, PurchaseInFuture(
            f"receipt {first.receipt_no!r} is dated after the server's time "
            f"{now.isoformat()}", field="occurred_at"))
    units = currency_minor_units(first.currency.upper())  # an unknown one: pos.validate
    lines: list[LineWrite] = []
    for line, row in zip(receipt.lines, rows, strict=True):
        lines.extend(_line_writes(row, line=line, units=units, key=first.receipt_no))
    try:
        data = PurchaseWrite(receipt_no=first.receipt_no, occurred_at=first.occurred_at,
                             currency=first.currency.upper(), lines=lines)
    except ValidationError as exc:
        raise _Refused(first.receipt_no, _row_error(exc)) from exc
    return _Sale(receipt=receipt, external_ref=first.external_ref, store=store, data=data,
                 occurred_at=occurred_at, request_hash=_digest(receipt))


def _digest(receipt: Receipt) -> str:
    """What a receipt imported again must match: SHA-256 of its rows' values (stored as
    the transaction's ``request_hash``)."""
    text = "\x1e".join("\x1f".join(values.get(name, "") for name in PURCHASE_COLUMNS)
                       for _, values in receipt.rows if isinstance(values, dict))
    return hashlib.sha256(text.encode()).hexdigest()


def _line_writes(row: PurchaseRow, *, line: int, units: int, key: str) -> list[LineWrite]:
    """A row as the sale's line: ``amount`` is the line's total; when it does not divide
    into ``quantity`` equal unit prices, the last unit carries the remainder (two lines)."""
    minor = row.amount.scaleb(units)
    if minor != minor.to_integral_value():
        raise _Refused(key, AmountPrecision(
            f"line {line}: amount {row.amount} has more decimals than {row.currency.upper()} "
            f"has ({units})", field="amount"))
    total = int(minor)
    name = row.sku or row.category or "item"
    sku = row.sku or row.category or "item"
    unit, remainder = divmod(total, row.quantity)

    def part(quantity: int, unit_price: int) -> LineWrite:
        return LineWrite(sku=sku, name=name, category=row.category, quantity=quantity,
                         unit_price=unit_price)

    if not remainder:
        return [part(row.quantity, unit)]
    return ([part(row.quantity - 1, unit)] if row.quantity > 1 else []) + [
        part(1, unit + remainder)]

