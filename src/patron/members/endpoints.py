from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from patron.http import AUTHED, Caller, Db, NoBody, problems
from patron.ledger.service import forfeit_all
from patron.members import service
from patron.members.schemas import (
    ConsentChange,
    ConsentHistory,
    MemberCreate,
    MemberRead,
    MemberUpdate,
    PinSet,
)

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
    """Erase all personal data; the history stays, anonymously. The points and miles the
    member still holds are forfeited by ledger entries (the merchants' liability is
    released)."""
    with db.session_scope() as session:
        member = service.erase(session, actor=caller, member_id=member_id)
        forfeit_all(session, member_id=member.id, source="erasure",
                    reason="points forfeited: member erased")
        return service.to_read(member)


@router.get("/{member_id}/export", responses=problems(*AUTHED))
def export(member_id: uuid.UUID, db: Db, caller: Caller) -> dict[str, Any]:
    """Everything Patron holds about the member, as JSON."""
    with db.session_scope() as session:
        return service.export(session, actor=caller, member_id=member_id)
