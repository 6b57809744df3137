from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from patron.http import AUTHED, Caller, Db, NoBody, problems
from patron.members import service
from patron.members.schemas import (
    ConsentChange,
    ConsentHistory,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    PinSet,
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
        return service.to_read(service.enrol(session, actor=caller, data=data))


@router.get("/{member_id}", response_model=MemberRead, responses=problems(*AUTHED))
def get_member(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    with db.session_scope() as session:
        return service.to_read(service.get_member(session, actor=caller, member_id=member_id))


@router.patch("/{member_id}", response_model=MemberRead, responses=problems(*AUTHED, 409))
def update_member(member_id: uuid.UUID, data: MemberUpdate, db: Db,
                  caller: Caller) -> MemberRead:
    """Change profile data; a field set to null is removed."""
    with db.session_scope() as session:
        return service.to_read(
            service.update_member(session, actor=caller, member_id=member_id, data=data))


@router.get("/{member_id}/consents", response_model=ConsentHistory,
            responses=problems(*AUTHED))
def consents(member_id: uuid.UUID, db: Db, caller: Caller) -> ConsentHistory:
    """Current marketing consents and every change with its time and source."""
    with db.session_scope() as session:
        return service.consent_history(session, actor=caller, member_id=member_id)


@router.post("/{member_id}/consents", response_model=ConsentHistory,
             responses=problems(*AUTHED, 409))
def change_consents(member_id: uuid.UUID, data: ConsentChange, db: Db,
                    caller: Caller) -> ConsentHistory:
    """Grant or withdraw consent per channel; each change is recorded."""
    with db.session_scope() as session:
        service.change_consents(session, actor=caller, member_id=member_id, data=data)
        return service.consent_history(session, actor=caller, member_id=member_id)


@router.put("/{member_id}/pin", response_model=MemberRead, responses=problems(*AUTHED, 409))
def set_pin(member_id: uuid.UUID, data: PinSet, db: Db,
            caller: Caller) -> MemberRead:
    """Set, change or remove (null) the member's PIN for step-up verification."""
    with db.session_scope() as session:
        return service.to_read(
            service.set_pin(session, actor=caller, member_id=member_id, pin=data.pin))


@router.post("/{member_id}/withdraw", response_model=MemberRead, responses=problems(*AUTHED),
             dependencies=[NoBody])
def withdraw(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    """The member leaves the coalition: identifiers stop working, history is kept."""
    with db.session_scope() as session:
        return service.to_read(service.withdraw(session, actor=caller, member_id=member_id))


@router.post("/{member_id}/erase", response_model=MemberRead, responses=problems(*AUTHED),
             dependencies=[NoBody])
def erase(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberRead:
    """Erase all personal data; the history stays, anonymously."""
    with db.session_scope() as session:
        return service.to_read(service.erase(session, actor=caller, member_id=member_id))


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
