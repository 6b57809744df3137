from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from patron import units
from patron.http import (
    AUTHED,
    Caller,
    ClientAddress,
    Db,
    NoBody,
    PageQuery,
    media_response,
    problems,
)
from patron.identity import images, service
from patron.identity.schemas import (
    CallerIdWaitRead,
    CardAdd,
    CardBlock,
    CardRead,
    CardReplace,
    IdentifyRequest,
    IdentifyResult,
    QrTokenRead,
)
from patron.kit.pagination import Page, by_creation
from patron.tenancy.rules import MemberAction

router = APIRouter(prefix="/v1", tags=["identification"])

_SVG = media_response("image/svg+xml", "SVG image")
_PNG = media_response("image/png", "PNG image", binary=True)
_NO_STORE = {"Cache-Control": "no-store"}


@router.post("/identify", response_model=IdentifyResult,
             responses=problems(*AUTHED, 410, 423, 429))
def identify(data: IdentifyRequest, db: Db, caller: Caller,
             address: ClientAddress) -> IdentifyResult:
    """Identify a member by exactly one of: member number (`barcode`), rotating `qr` token,
    contactless `card_uid`, `phone` in any common format, or `image` (a photo or screenshot
    of their barcode or QR, base64). Send `pin` where the terminal requires it.

    Refusals have their own codes: `malformed_code`, `qr_invalid`, `qr_expired`,
    `member_not_found`, `card_not_found`, `card_blocked`, `member_withdrawn`,
    `member_erased`, `pin_required`, `pin_incorrect`, `pin_locked`, `no_code_in_image`.
    No member found is the same `member_not_found` whatever the reason (a number nobody
    has, wrong check digits, a member who left elsewhere); `pin_locked` (423) refuses a
    locked-out member at every terminal. Failed identifications are throttled (429
    `too_many_failures`, docs/identification.md).
    """
    return units.identify(db, caller=caller, address=address, data=data)


@router.get("/members/{member_id}/barcode.svg", response_class=Response,
            responses={**_SVG, **problems(*AUTHED, 410)})
def barcode_svg(member_id: uuid.UUID, db: Db, caller: Caller) -> Response:
    """The member number as a Code 128 barcode."""
    with db.session_scope() as session:
        member = service.active_member(session, actor=caller, member_id=member_id)
        return Response(images.barcode_svg(member.member_number), media_type="image/svg+xml")


@router.get("/members/{member_id}/barcode.png", response_class=Response,
            responses={**_PNG, **problems(*AUTHED, 410)})
def barcode_png(member_id: uuid.UUID, db: Db, caller: Caller) -> Response:
    with db.session_scope() as session:
        member = service.active_member(session, actor=caller, member_id=member_id)
        return Response(images.barcode_png(member.member_number), media_type="image/png")


@router.get("/members/{member_id}/qr-token", response_model=QrTokenRead,
            responses=problems(*AUTHED, 410))
def qr_token(member_id: uuid.UUID, db: Db, caller: Caller) -> QrTokenRead:
    """The current rotating QR token; it stops working about a minute later. A credential:
    the operator and the enrolling merchant's merchant key only (for the member's app)."""
    with db.session_scope() as session:
        member = service.active_member(session, actor=caller, member_id=member_id,
                                       action=MemberAction.read_credential)
        return service.current_qr_token(member)


@router.get("/members/{member_id}/qr.svg", response_class=Response,
            responses={**_SVG, **problems(*AUTHED, 410)})
def qr_svg(member_id: uuid.UUID, db: Db, caller: Caller) -> Response:
    """The current rotating QR code (short-lived: refresh it every 30 seconds)."""
    with db.session_scope() as session:
        member = service.active_member(session, actor=caller, member_id=member_id,
                                       action=MemberAction.read_credential)
        token = service.current_qr_token(member).token
        return Response(images.qr_svg(token), media_type="image/svg+xml", headers=_NO_STORE)


@router.get("/members/{member_id}/qr.png", response_class=Response,
            responses={**_PNG, **problems(*AUTHED, 410)})
def qr_png(member_id: uuid.UUID, db: Db, caller: Caller) -> Response:
    with db.session_scope() as session:
        member = service.active_member(session, actor=caller, member_id=member_id,
                                       action=MemberAction.read_credential)
        token = service.current_qr_token(member).token
        return Response(images.qr_png(token), media_type="image/png", headers=_NO_STORE)


@router.get("/members/{member_id}/cards", response_model=Page[CardRead],
            responses=problems(*AUTHED))
def list_cards(member_id: uuid.UUID, db: Db, caller: Caller,
               paging: PageQuery) -> Page[CardRead]:
    """The member's cards, oldest first."""
    with db.session_scope() as session:
        return paging.page([CardRead.model_validate(card) for card in service.list_cards(
            session, actor=caller, member_id=member_id)], key=by_creation)


@router.post("/members/{member_id}/cards", status_code=201, response_model=CardRead,
             responses=problems(*AUTHED, 409, 410))
def add_card(member_id: uuid.UUID, data: CardAdd, db: Db,
             caller: Caller) -> CardRead:
    """Register another contactless card for the member (a terminal sends the member's
    `proof`)."""
    with db.session_scope() as session:
        return CardRead.model_validate(
            service.add_card(session, actor=caller, member_id=member_id, uid=data.uid,
                             proof=data.proof))


@router.post("/members/{member_id}/cards/{card_id}/block", response_model=CardRead,
             responses=problems(*AUTHED, 409))
def block_card(member_id: uuid.UUID, card_id: uuid.UUID, data: CardBlock, db: Db,
               caller: Caller) -> CardRead:
    """Block a lost or stolen card; it stops identifying the member at once."""
    with db.session_scope() as session:
        return CardRead.model_validate(service.block_card(
            session, actor=caller, member_id=member_id, card_id=card_id, reason=data.reason,
            proof=data.proof))


@router.post("/members/{member_id}/cards/{card_id}/replace", status_code=201,
             response_model=CardRead, responses=problems(*AUTHED, 409, 410))
def replace_card(member_id: uuid.UUID, card_id: uuid.UUID, data: CardReplace,
                 db: Db, caller: Caller) -> CardRead:
    """Block a card and register its replacement in one step; answers the new card."""
    with db.session_scope() as session:
        return CardRead.model_validate(service.replace_card(
            session, actor=caller, member_id=member_id, card_id=card_id, uid=data.uid,
            reason=data.reason, proof=data.proof))


@router.post("/identify/caller-id", status_code=201, response_model=CallerIdWaitRead,
             responses=problems(*AUTHED, 409), dependencies=[NoBody])
def start_caller_id(db: Db, caller: Caller) -> CallerIdWaitRead:
    """A register waits for the customer to call its number (terminal key); poll the wait
    until it is `matched` (with `member_id`), `unknown_caller` or `expired`."""
    with db.session_scope() as session:
        return CallerIdWaitRead.model_validate(service.start_caller_id_wait(session, actor=caller))


@router.get("/identify/caller-id/{wait_id}", response_model=CallerIdWaitRead,
            responses=problems(*AUTHED))
def get_caller_id(wait_id: uuid.UUID, db: Db, caller: Caller) -> CallerIdWaitRead:
    with db.session_scope() as session:
        return CallerIdWaitRead.model_validate(
            service.get_caller_id_wait(session, actor=caller, wait_id=wait_id))
