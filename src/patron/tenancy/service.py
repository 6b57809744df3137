"""Tenancy rules: who a key acts for, and the creation of merchants, stores and terminals."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from patron.db import flush_or_raise
from patron.errors import Forbidden, NotFound, Unauthenticated
from patron.kit.clock import utcnow
from patron.kit.crypto import token_hash
from patron.tenancy.errors import (
    InvalidKeyExpiry,
    InvalidKeyScope,
    KeyExpired,
    MerchantNumberTaken,
    StoreCodeTaken,
    TerminalCodeTaken,
    TerminalInactive,
)
from patron.tenancy.models import (
    RECEIPT_FIELDS,
    ApiKey,
    Merchant,
    Operator,
    ReceiptColumns,
    Role,
    Store,
    Terminal,
    TerminalKind,
)
from patron.tenancy.schemas import (
    ApiKeyCreate,
    MerchantCreate,
    ReceiptWrite,
    StoreCreate,
    StoreUpdate,
    TerminalCreate,
    TerminalUpdate,
)

KEY_PREFIX = "ptn_"
_KEY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the role of the key and the tenant it is bound to."""

    key_id: uuid.UUID | None
    role: Role
    merchant_id: uuid.UUID | None = None
    terminal_id: uuid.UUID | None = None
    store_id: uuid.UUID | None = None
    require_pin: bool = False
    # A person signed in to the web app (key_id None): the staff user, or the member.
    staff_id: uuid.UUID | None = None
    member_id: uuid.UUID | None = None

    def require(self, *roles: Role) -> None:
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs a key with one of the roles: {allowed}")

    def holds(self, merchant_id: uuid.UUID | None) -> bool:
        """Whether a row owned by ``merchant_id`` belongs to this key's tenant: the operator
        holds every row (the coalition's, merchant None, included); any other key only its
        own merchant's rows. For the "404 before the role" checks of owned objects."""
        return self.role == Role.operator or (merchant_id is not None
                                              and merchant_id == self.merchant_id)

    def sees_merchant(self, merchant_id: uuid.UUID) -> bool:
        if self.role == Role.operator:
            return True
        if self.role == Role.sales_rep and self.merchant_id is None:
            return True
        return self.merchant_id == merchant_id


SYSTEM = Principal(key_id=None, role=Role.operator)


def new_secret_key() -> str:
    # 32 characters of a 32-letter alphabet = 160 random bits.
    return KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


# Built once: every request runs it. Plain columns, no ORM objects to load.
_KEY_BY_HASH = (
    select(ApiKey.id, ApiKey.role, ApiKey.merchant_id, ApiKey.terminal_id, ApiKey.revoked_at,
           ApiKey.expires_at,
           Terminal.active, Terminal.store_id, Terminal.require_pin)
    .outerjoin(Terminal, Terminal.id == ApiKey.terminal_id)
    .where(ApiKey.key_hash == bindparam("key_hash"))
)


def key_expired(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a key with this expiry is refused at ``now`` (every path that takes a key
    asks this)."""
    return expires_at is not None and expires_at <= now


def authenticate(session: Session, *, key: str | None) -> Principal:
    """The caller behind an API key: one read, which ``Database.read_scope`` can run
    outside a transaction."""
    if not key:
        raise Unauthenticated("send the API key as 'Authorization: Bearer <key>'")
    row = session.connection().execute(_KEY_BY_HASH, {"key_hash": token_hash(key)}).first()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the API key is unknown or revoked")
    if key_expired(row.expires_at, utcnow()):
        raise KeyExpired("the API key expired; ask for a new one")
    if row.terminal_id is not None and not row.active:
        raise TerminalInactive("this terminal is deactivated; ask the merchant to reactivate it")
    return Principal(
        key_id=row.id,
        role=Role(row.role),
        merchant_id=row.merchant_id,
        terminal_id=row.terminal_id,
        store_id=row.store_id,
        require_pin=bool(row.terminal_id is not None and row.require_pin),
    )


def ensure_operator(session: Session, *, name: str = "Patron coalition") -> Operator:
    operator = session.scalars(select(Operator).limit(1)).first()
    if operator is None:
        operator = Operator(name=name)
        session.add(operator)
        session.flush()
    return operator


def create_merchant(session: Session, *, actor: Principal, data: MerchantCreate) -> Merchant:
    actor.require(Role.operator)
    ensure_operator(session)
    merchant = Merchant(**data.model_dump(), next_customer_no=1)
    session.add(merchant)
    flush_or_raise(session, MerchantNumberTaken(f"merchant number {data.number:05d} is taken"))
    return merchant


def list_merchants(session: Session, *, actor: Principal) -> list[Merchant]:
    query = select(Merchant).order_by(Merchant.number)
    if actor.role != Role.operator and not (actor.role == Role.sales_rep
                                            and actor.merchant_id is None):
        query = query.where(Merchant.id == actor.merchant_id)
    return list(session.scalars(query))


def get_merchant(session: Session, *, actor: Principal, merchant_id: uuid.UUID) -> Merchant:
    merchant = session.get(Merchant, merchant_id)
    if merchant is None or not actor.sees_merchant(merchant.id):
        raise NotFound("no such merchant")
    return merchant



def merchant_by_number(session: Session, *, actor: Principal, number: int) -> Merchant:
    """A merchant by its 5-digit number (the command line's way to name one)."""
    merchant_id = session.scalar(select(Merchant.id).where(Merchant.number == number))
    if merchant_id is None:
        raise NotFound(f"no merchant number {number:05d}")
    return get_merchant(session, actor=actor, merchant_id=merchant_id)

def create_store(session: Session, *, actor: Principal, merchant_id: uuid.UUID,
                 data: StoreCreate) -> Store:
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    actor.require(Role.operator, Role.merchant)
    values = data.model_dump(exclude={"receipt"})
    values["timezone"] = data.timezone or merchant.timezone
    values["kind"] = data.kind.value
    store = Store(merchant_id=merchant.id, **values)
    set_receipt(store, data.receipt)
    session.add(store)
    flush_or_raise(session, StoreCodeTaken(f"store code {data.code!r} is taken"))
    return store


def list_stores(session: Session, *, actor: Principal, merchant_id: uuid.UUID) -> list[Store]:
    get_merchant(session, actor=actor, merchant_id=merchant_id)
    return list(session.scalars(
        select(Store).where(Store.merchant_id == merchant_id).order_by(Store.code)))


def get_store(session: Session, *, actor: Principal, store_id: uuid.UUID) -> Store:
    store = session.get(Store, store_id)
    if store is None or not actor.sees_merchant(store.merchant_id):
        raise NotFound("no such store")
    if actor.role == Role.terminal and actor.store_id != store.id:
        raise NotFound("no such store")
    return store


def create_terminal(session: Session, *, actor: Principal, store_id: uuid.UUID,
                    data: TerminalCreate) -> tuple[Terminal, str]:
    store = get_store(session, actor=actor, store_id=store_id)
    actor.require(Role.operator, Role.merchant)
    values = data.model_dump(exclude={"receipt"})
    values["kind"] = data.kind.value
    terminal = Terminal(merchant_id=store.merchant_id, store_id=store.id, **values)
    set_receipt(terminal, data.receipt)
    session.add(terminal)
    flush_or_raise(session, TerminalCodeTaken(f"terminal code {data.code!r} is taken"))
    _, secret = issue_key(session, role=Role.terminal, merchant_id=store.merchant_id,
                          terminal_id=terminal.id, label=f"terminal {store.code}/{data.code}")
    return terminal, secret



HISTORY_TERMINAL = "history-import"


def history_terminal(session: Session, store: Store) -> Terminal:
    """The store's terminal of imported purchases (``patron.imports``): the till their
    receipts are numbered at, inactive so that no key of it is ever accepted."""
    terminal = session.scalars(select(Terminal).where(
        Terminal.store_id == store.id, Terminal.code == HISTORY_TERMINAL)).first()
    if terminal is None:
        # Made by the first import at the store (two at once: the unique code refuses the
        # second, whose chunk then runs again and finds it).
        terminal = Terminal(id=uuid.uuid4(), merchant_id=store.merchant_id, store_id=store.id,
                            code=HISTORY_TERMINAL, kind=TerminalKind.pos.value, active=False,
                            points_per_tap=0, require_pin=False, created_at=utcnow())
        session.add(terminal)
        session.flush()
    return terminal

def list_terminals(session: Session, *, actor: Principal, store_id: uuid.UUID) -> list[Terminal]:
    get_store(session, actor=actor, store_id=store_id)
    return list(session.scalars(
        select(Terminal).where(Terminal.store_id == store_id).order_by(Terminal.code)))


def get_terminal(session: Session, *, actor: Principal, terminal_id: uuid.UUID) -> Terminal:
    terminal = session.get(Terminal, terminal_id)
    if terminal is None or not actor.sees_merchant(terminal.merchant_id):
        raise NotFound("no such terminal")
    if actor.role == Role.terminal and actor.terminal_id != terminal.id:
        raise NotFound("no such terminal")
    return terminal


def update_terminal(session: Session, *, actor: Principal, terminal_id: uuid.UUID,
                    data: TerminalUpdate) -> Terminal:
    terminal = get_terminal(session, actor=actor, terminal_id=terminal_id)
    actor.require(Role.operator, Role.merchant)
    for field, value in data.model_dump(exclude_unset=True, exclude={"receipt"}).items():
        if value is None and field != "call_number":
            continue
        setattr(terminal, field, value)
    set_receipt(terminal, data.receipt)
    session.flush()
    return terminal


def update_store(session: Session, *, actor: Principal, store_id: uuid.UUID,
                 data: StoreUpdate) -> Store:
    """Change a store's settings (its merchant's key or the operator's)."""
    store = get_store(session, actor=actor, store_id=store_id)
    actor.require(Role.operator, Role.merchant)
    set_receipt(store, data.receipt)
    session.flush()
    return store


# --- receipt content ---------------------------------------------------------------------

def set_receipt(row: ReceiptColumns, data: ReceiptWrite | None) -> None:
    """Store the receipt fields the body sent (null clears one); the others are kept."""
    if data is None:
        return
    for name, value in data.model_dump(exclude_unset=True).items():
        setattr(row, f"receipt_{name}", value)


def receipt_for(store: Store, terminal: Terminal) -> dict[str, str | None]:
    """What a reader shows: each field the reader's own when it has one, else the
    store's."""
    own, shared = terminal.receipt, store.receipt
    return {name: own[name] if own[name] is not None else shared[name]
            for name in RECEIPT_FIELDS}


def issue_key(session: Session, *, role: Role, merchant_id: uuid.UUID | None = None,
              terminal_id: uuid.UUID | None = None,
              label: str | None = None,
              expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored."""
    if expires_at is not None and key_expired(expires_at, utcnow()):
        raise InvalidKeyExpiry("expires_at is already past; give a time in the future",
                               field="expires_at")
    if role == Role.member:
        raise InvalidKeyScope("there are no member keys: a member signs in on the wallet")
    if role == Role.operator and (merchant_id or terminal_id):
        raise InvalidKeyScope("an operator key is bound to no merchant or terminal")
    if role == Role.merchant and (merchant_id is None or terminal_id is not None):
        raise InvalidKeyScope("a merchant key needs merchant_id and no terminal_id")
    if role == Role.terminal and terminal_id is None:
        raise InvalidKeyScope("a terminal key needs terminal_id")
    if role == Role.sales_rep and terminal_id is not None:
        raise InvalidKeyScope("a sales rep key is bound to the coalition or one merchant")
    if terminal_id is not None:
        terminal = session.get(Terminal, terminal_id)
        if terminal is None:
            raise InvalidKeyScope("no such terminal")
        if merchant_id is not None and merchant_id != terminal.merchant_id:
            raise InvalidKeyScope("the terminal belongs to another merchant")
        merchant_id = terminal.merchant_id
    if merchant_id is not None and session.get(Merchant, merchant_id) is None:
        raise InvalidKeyScope("no such merchant")
    secret = new_secret_key()
    api_key = ApiKey(key_hash=token_hash(secret), prefix=secret[: len(KEY_PREFIX) + 8],
                     role=role.value, merchant_id=merchant_id, terminal_id=terminal_id,
                     label=label, expires_at=expires_at)
    session.add(api_key)
    session.flush()
    return api_key, secret


def create_key(session: Session, *, actor: Principal, data: ApiKeyCreate) -> tuple[ApiKey, str]:
    actor.require(Role.operator, Role.merchant)
    if actor.role == Role.merchant:
        if data.role not in (Role.merchant, Role.terminal):
            raise Forbidden("a merchant key may only create merchant and terminal keys")
        if data.terminal_id is not None:
            get_terminal(session, actor=actor, terminal_id=data.terminal_id)
        if data.merchant_id not in (None, actor.merchant_id):
            raise NotFound("no such merchant")
        merchant_id = actor.merchant_id if data.role == Role.merchant else data.merchant_id
    else:
        merchant_id = data.merchant_id
    return issue_key(session, role=data.role, merchant_id=merchant_id,
                     terminal_id=data.terminal_id, label=data.label,
                     expires_at=data.expires_at)


def list_keys(session: Session, *, actor: Principal) -> list[ApiKey]:
    actor.require(Role.operator, Role.merchant)
    query = select(ApiKey).order_by(ApiKey.created_at)
    if actor.role == Role.merchant:
        query = query.where(ApiKey.merchant_id == actor.merchant_id)
    return list(session.scalars(query))


def revoke_key(session: Session, *, actor: Principal, key_id: uuid.UUID) -> ApiKey:
    actor.require(Role.operator, Role.merchant)
    api_key = session.get(ApiKey, key_id)
    if api_key is None or (actor.role == Role.merchant
                           and api_key.merchant_id != actor.merchant_id):
        raise NotFound("no such key")
    session.execute(update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))
    session.refresh(api_key)
    return api_key


@dataclass(frozen=True)
class Till:
    terminal: Terminal
    store: Store
    merchant: Merchant


# Built once: every till request starts here. The three in one statement.
_TILL = (select(Terminal, Store, Merchant).join(Store, Store.id == Terminal.store_id)
         .join(Merchant, Merchant.id == Terminal.merchant_id)
         .where(Terminal.id == bindparam("terminal_id")))


def till_of(session: Session, actor: Principal) -> Till:
    actor.require(Role.terminal)
    # The key was just authenticated: its terminal exists.
    terminal, store, merchant = session.execute(
        _TILL, {"terminal_id": actor.terminal_id}).one()
    return Till(terminal=terminal, store=store, merchant=merchant)
