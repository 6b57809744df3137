from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from patron.http import AUTHED, Caller, Db, NoBody, PageQuery, problems
from patron.kit.pagination import Page, by_creation
from patron.kit.validation import Instant
from patron.ledger.service import forfeit_all
from patron.ledger.views import Position, decode_cursor, encode_cursor
from patron.members import access, service
from patron.members.schemas import (
    EXTERNAL_REF_LIMITS,
    ConsentChange,
    ConsentHistory,
    DataExportPage,
    DataExportRead,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    PinSet,
    VerificationCodeRead,
    VerificationCodeRequest,
)
from patron.privacy import export as member_export

router = APIRouter(prefix="/v1/members", tags=["members"])




@router.post("", status_code=201, response_model=MemberRead,
             responses=problems(*AUTHED, 409))
def enrol(data: MemberCreate, db: Db, caller: Caller) -> MemberRead:
    """Enrol a member with only what they choose to give (nothing at all is fine).

    A merchant or terminal key enrols at its merchant; an operator key names `merchant_id`.
    """
    with db.session_scope() as session:
        return service.to_read(session, service.enrol(session, actor=caller, data=data),
                               actor=caller)


@router.get("", response_model=Page[MemberRead], responses=problems(*AUTHED))
def find_members(db: Db, caller: Caller, paging: PageQuery,
                 external_ref: Annotated[str, Query(**EXTERNAL_REF_LIMITS, description=(
                     "The member's id in the merchant's previous system (history import)"))],
                 merchant_id: Annotated[uuid.UUID | None, Query(
                     description="Required with an operator key")] = None) -> Page[MemberRead]:
    """Look a member up by the id they had in the merchant's previous system (the data
    controller: the operator naming `merchant_id`, or the merchant's own merchant key):
    one member, or none."""
    with db.read_scope() as session:
        return paging.page([service.to_read(session, member, actor=caller)
                            for member in service.find_by_external_ref(
                                session, actor=caller, merchant_id=merchant_id,
                                external_ref=external_ref)],
                           key=by_creation)


@router.get("/{member_id}", response_model=MemberRead, responses=problems(*AUTHED))
def get_member(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    """The member; another merchant's keys see neither the masked phone and e-mail nor the
    profile's attributes."""
    with db.session_scope() as session:
        return service.read_member(session, actor=caller, member_id=member_id)


@router.patch("/{member_id}", response_model=MemberRead, responses=problems(*AUTHED, 409))
def update_member(member_id: uuid.UUID, data: MemberUpdate, db: Db,
                  caller: Caller) -> MemberRead:
    """Change profile data; a field set to null is removed. The enrolling merchant's
    merchant key and the operator; a terminal with the member's `proof`."""
    with db.session_scope() as session:
        return service.to_read(
            session, service.update_member(session, actor=caller, member_id=member_id,
                                           data=data), actor=caller)


@router.get("/{member_id}/consents", response_model=ConsentHistory,
            responses=problems(*AUTHED))
def consents(member_id: uuid.UUID, db: Db, caller: Caller) -> ConsentHistory:
    """The member's consent: whether the key's merchant (an operator key: the coalition) may
    send marketing per channel, the current consent per scope, channel and purpose, and
    every change with its time, source, policy version and evidence (docs/privacy.md,
    "Consent"). A merchant's keys see the coalition's scope and their own merchant's."""
    with db.session_scope() as session:
        return service.consent_history(session, actor=caller, member_id=member_id)


@router.post("/{member_id}/consents", response_model=ConsentHistory,
             responses=problems(*AUTHED, 409))
def change_consents(member_id: uuid.UUID, data: ConsentChange, db: Db,
                    caller: Caller) -> ConsentHistory:
    """Grant or withdraw consent: the per-channel flags (marketing, in the key's merchant's
    scope; an operator key: the coalition's), or one change of a channel and purpose in a
    scope. Each change is a row of the consent ledger. A merchant's keys record in their
    own merchant's scope only (403 `consent_scope_not_allowed`); tills need the member's
    `proof`."""
    with db.session_scope() as session:
        service.change_consents(session, actor=caller, member_id=member_id, data=data)
        return service.consent_history(session, actor=caller, member_id=member_id)


@router.put("/{member_id}/pin", response_model=MemberRead, responses=problems(*AUTHED, 409))
def set_pin(member_id: uuid.UUID, data: PinSet, db: Db,
            caller: Caller) -> MemberRead:
    """Set, change or remove (null) the member's PIN for step-up verification."""
    with db.session_scope() as session:
        return service.to_read(
            session, service.set_pin(session, actor=caller, member_id=member_id, pin=data.pin,
                                     proof=data.proof), actor=caller)


@router.post("/{member_id}/pin/unlock", response_model=MemberRead,
             responses=problems(*AUTHED), dependencies=[NoBody])
def unlock_pin(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    """End the member's lock-out after too many wrong PINs, before it runs out (the
    enrolling merchant's merchant key, or the operator)."""
    with db.session_scope() as session:
        return service.to_read(
            session, service.unlock_pin(session, actor=caller, member_id=member_id),
            actor=caller)


@router.post("/{member_id}/withdraw", response_model=MemberRead, responses=problems(*AUTHED),
             dependencies=[NoBody])
def withdraw(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    """The member leaves the coalition: identifiers stop working, history is kept."""
    with db.session_scope() as session:
        return service.to_read(
            session, service.withdraw(session, actor=caller, member_id=member_id), actor=caller)


@router.post("/{member_id}/erase", response_model=MemberRead, responses=problems(*AUTHED),
             dependencies=[NoBody])
def erase(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    """Erase all personal data; the history stays, anonymously. The points and miles the
    member still holds are forfeited by ledger entries (the merchants' liability is
    released)."""
    with db.session_scope() as session:
        member = service.erase(session, actor=caller, member_id=member_id)
        forfeit_all(session, member_id=member.id, source="erasure",
                    reason="points forfeited: member erased")
        return service.to_read(session, member, actor=caller)


@router.post("/{member_id}/verification-codes", status_code=201,
             response_model=VerificationCodeRead, responses=problems(*AUTHED, 409, 429))
def send_verification_code(member_id: uuid.UUID, data: VerificationCodeRequest, db: Db,
                           caller: Caller) -> VerificationCodeRead:
    """Send a one-time code to the member's current phone or e-mail; the till gives it back
    as `proof` to change the member's identifiers, PIN, cards or consents. Valid 10 minutes,
    5 attempts, once; at most 5 codes per member an hour."""
    with db.session_scope() as session:
        verification, sent_to = access.send_code(session, actor=caller, member_id=member_id,
                                                 channel=data.channel)
        return VerificationCodeRead(verification_id=verification.id,
                                    channel=verification.channel, sent_to=sent_to,
                                    expires_at=verification.expires_at)


@router.get("/{member_id}/export", response_class=StreamingResponse,
            responses={200: {"description": "The member's personal-data export "
                             "(docs/privacy.md, \"Export\"), as an attachment.",
                             "content": {"application/json": {"schema": {"type": "object"}}}},
                       **problems(*AUTHED)})
def export(member_id: uuid.UUID, db: Db, caller: Caller) -> StreamingResponse:
    """Everything Patron holds about the member, decrypted, as one JSON document, streamed:
    the operator's export holds the whole coalition's record, a merchant's the member's
    profile and that merchant's rows."""
    with db.session_scope() as session:
        prepared = member_export.prepare(session, actor=caller, member_id=member_id)
    return StreamingResponse(member_export.stream(db, prepared), media_type="application/json",
                             headers={"Cache-Control": "no-store", "Content-Disposition":
                                      f'attachment; filename="{prepared.filename}"'})


exports_router = APIRouter(prefix="/v1/data-exports", tags=["members"])


@exports_router.get("", response_model=DataExportPage, responses=problems(*AUTHED))
def list_data_exports(db: Db, caller: Caller, member_id: uuid.UUID | None = None,
                      since: Annotated[Instant | None, Query()] = None,
                      cursor: str | None = None,
                      limit: int = Query(default=50, ge=1, le=500)) -> DataExportPage:
    """Every export of a member's personal data (who, when, which member), newest first:
    the operator only."""
    position = decode_cursor(cursor) if cursor is not None else None
    with db.session_scope() as session:
        rows = access.list_exports(
            session, actor=caller, member_id=member_id, since=since,
            before=(position.occurred_at, position.entry_id) if position else None,
            limit=limit + 1)
        items = [DataExportRead.model_validate(row) for row in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        return DataExportPage(items=items, next_cursor=encode_cursor(
            Position(occurred_at=last.exported_at, entry_id=last.id)) if last else None)
