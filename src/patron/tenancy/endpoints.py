from __future__ import annotations

import uuid

from fastapi import APIRouter

from patron.http import AUTHED, Caller, Db, NoBody, PageQuery, problems
from patron.kit.pagination import Page, by_creation
from patron.tenancy import service
from patron.tenancy.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    MerchantCreate,
    MerchantRead,
    StoreCreate,
    StoreRead,
    StoreUpdate,
    TerminalCreate,
    TerminalCreated,
    TerminalRead,
    TerminalUpdate,
)

router = APIRouter(prefix="/v1", tags=["tenancy"])


@router.post("/merchants", status_code=201, response_model=MerchantRead,
             responses=problems(*AUTHED, 409))
def create_merchant(data: MerchantCreate, db: Db, caller: Caller) -> MerchantRead:
    """Add a merchant to the coalition (operator key)."""
    with db.session_scope() as session:
        merchant = service.create_merchant(session, actor=caller, data=data)
        return MerchantRead.model_validate(merchant)


@router.get("/merchants", response_model=Page[MerchantRead], responses=problems(*AUTHED))
def list_merchants(db: Db, caller: Caller, paging: PageQuery) -> Page[MerchantRead]:
    """The merchants this key may see, oldest first."""
    with db.session_scope() as session:
        return paging.page([MerchantRead.model_validate(m)
                            for m in service.list_merchants(session, actor=caller)],
                           key=by_creation)


@router.get("/merchants/{merchant_id}", response_model=MerchantRead,
            responses=problems(*AUTHED))
def get_merchant(merchant_id: uuid.UUID, db: Db, caller: Caller) -> MerchantRead:
    with db.session_scope() as session:
        return MerchantRead.model_validate(
            service.get_merchant(session, actor=caller, merchant_id=merchant_id))


@router.post("/merchants/{merchant_id}/stores", status_code=201, response_model=StoreRead,
             responses=problems(*AUTHED, 409))
def create_store(merchant_id: uuid.UUID, data: StoreCreate, db: Db,
                 caller: Caller) -> StoreRead:
    """Add a store or facility (shop, facility, ad board, web shop) to a merchant."""
    with db.session_scope() as session:
        store = service.create_store(session, actor=caller, merchant_id=merchant_id, data=data)
        return StoreRead.model_validate(store)


@router.get("/merchants/{merchant_id}/stores", response_model=Page[StoreRead],
            responses=problems(*AUTHED))
def list_stores(merchant_id: uuid.UUID, db: Db, caller: Caller,
                paging: PageQuery) -> Page[StoreRead]:
    """The merchant's stores, oldest first."""
    with db.session_scope() as session:
        return paging.page([StoreRead.model_validate(s) for s in service.list_stores(
            session, actor=caller, merchant_id=merchant_id)], key=by_creation)


@router.get("/stores/{store_id}", response_model=StoreRead, responses=problems(*AUTHED))
def get_store(store_id: uuid.UUID, db: Db, caller: Caller) -> StoreRead:
    with db.session_scope() as session:
        return StoreRead.model_validate(service.get_store(session, actor=caller, store_id=store_id))


@router.patch("/stores/{store_id}", response_model=StoreRead, responses=problems(*AUTHED))
def update_store(store_id: uuid.UUID, data: StoreUpdate, db: Db, caller: Caller) -> StoreRead:
    """Change a store's settings (its merchant's key or the operator's): the receipt
    content its readers show with a tap (`receipt`: a field sent replaces, null clears, a
    field left out is kept)."""
    with db.session_scope() as session:
        return StoreRead.model_validate(
            service.update_store(session, actor=caller, store_id=store_id, data=data))


@router.post("/stores/{store_id}/terminals", status_code=201, response_model=TerminalCreated,
             responses=problems(*AUTHED, 409))
def create_terminal(store_id: uuid.UUID, data: TerminalCreate, db: Db,
                    caller: Caller) -> TerminalCreated:
    """Add a terminal (POS register, card reader, kiosk, web shop). Its API key is in the
    answer once and never again."""
    with db.session_scope() as session:
        terminal, secret = service.create_terminal(session, actor=caller, store_id=store_id,
                                                   data=data)
        return TerminalCreated.model_validate(
            {**TerminalRead.model_validate(terminal).model_dump(), "api_key": secret})


@router.get("/stores/{store_id}/terminals", response_model=Page[TerminalRead],
            responses=problems(*AUTHED))
def list_terminals(store_id: uuid.UUID, db: Db, caller: Caller,
                   paging: PageQuery) -> Page[TerminalRead]:
    """The store's terminals, oldest first."""
    with db.session_scope() as session:
        return paging.page([TerminalRead.model_validate(t) for t in service.list_terminals(
            session, actor=caller, store_id=store_id)], key=by_creation)


@router.get("/terminals/{terminal_id}", response_model=TerminalRead,
            responses=problems(*AUTHED))
def get_terminal(terminal_id: uuid.UUID, db: Db, caller: Caller) -> TerminalRead:
    with db.session_scope() as session:
        return TerminalRead.model_validate(
            service.get_terminal(session, actor=caller, terminal_id=terminal_id))


@router.patch("/terminals/{terminal_id}", response_model=TerminalRead,
              responses=problems(*AUTHED))
def update_terminal(terminal_id: uuid.UUID, data: TerminalUpdate, db: Db,
                    caller: Caller) -> TerminalRead:
    """Activate or deactivate a terminal, set points per tap, PIN requirement, call number,
    and a reader's receipt content (`receipt`: a field sent replaces, null clears, a field
    left out is kept; a field the reader has overrides the store's)."""
    with db.session_scope() as session:
        return TerminalRead.model_validate(
            service.update_terminal(session, actor=caller, terminal_id=terminal_id, data=data))


@router.post("/keys", status_code=201, response_model=ApiKeyCreated,
             responses=problems(*AUTHED))
def create_key(data: ApiKeyCreate, db: Db, caller: Caller) -> ApiKeyCreated:
    """Create an API key. The secret is in this answer only; Patron keeps just its hash."""
    with db.session_scope() as session:
        api_key, secret = service.create_key(session, actor=caller, data=data)
        return ApiKeyCreated.model_validate(
            {**ApiKeyRead.model_validate(api_key).model_dump(), "key": secret})


@router.get("/keys", response_model=Page[ApiKeyRead], responses=problems(*AUTHED))
def list_keys(db: Db, caller: Caller, paging: PageQuery) -> Page[ApiKeyRead]:
    """The keys this key may see, oldest first."""
    with db.session_scope() as session:
        return paging.page([ApiKeyRead.model_validate(k)
                            for k in service.list_keys(session, actor=caller)],
                           key=by_creation)


@router.post("/keys/{key_id}/revoke", response_model=ApiKeyRead, responses=problems(*AUTHED),
             dependencies=[NoBody])
def revoke_key(key_id: uuid.UUID, db: Db, caller: Caller) -> ApiKeyRead:
    """Revoke a key; it stops working at once."""
    with db.session_scope() as session:
        return ApiKeyRead.model_validate(service.revoke_key(session, actor=caller, key_id=key_id))
