from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import StreamingResponse

from patron import units
from patron.http import (
    AUTHED,
    ApiKey,
    Caller,
    ClientAddress,
    Db,
    NoBody,
    PageQuery,
    media_response,
    principal,
    problems,
)
from patron.identity import images
from patron.kit.pagination import Page, by_creation
from patron.members.service import get_member
from patron.security.attempts import voucher_attempt
from patron.security.models import SecurityEventKind
from patron.tenancy.models import Role
from patron.vouchers import batches, direct, offers, redemption, service
from patron.vouchers.schemas import (
    BatchRead,
    CodesRead,
    CodesWrite,
    OfferRead,
    OfferWrite,
    RedeemWrite,
    RedemptionRead,
    ReserveWrite,
    RevokeWrite,
    ValidateWrite,
    ValidationRead,
    VoucherRead,
)

router = APIRouter(prefix="/v1", tags=["vouchers"])

_SVG = media_response("image/svg+xml", "SVG image")
_PNG = media_response("image/png", "PNG image", binary=True)

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1,
                                              max_length=128)]

_REFUSALS = """A code that cannot be used is 409 with the reason's `code`: `voucher_expired`,
`voucher_not_yet_valid`, `voucher_wrong_store`, `voucher_wrong_channel`, `voucher_wrong_time`,
`voucher_minimum_spend`, `voucher_no_eligible_items`, `voucher_currency_mismatch`,
`voucher_already_redeemed`, `voucher_revoked`, `voucher_cap_reached`,
`voucher_budget_exhausted`, `voucher_member_limit`, `voucher_not_members`,
`voucher_needs_member`, `voucher_needs_purchase`, `voucher_is_ticket`,
`ticket_already_admitted` (with when and where it admitted). Unknown codes and other
merchants' codes are the same 404 `not_found`; a mistyped code is 422
`invalid_voucher_code`; a `channel` that contradicts the terminal's kind is 422
`channel_not_terminals`.

Each refusal is a security event (`GET /v1/security-events`); a terminal, client address or
member with too many of them in a short time is refused with 429 `too_many_failures` and a
`Retry-After` header, before the code is looked up."""


@router.post("/offers", status_code=201, response_model=OfferRead,
             responses=problems(*AUTHED, 422))
def create_offer(data: OfferWrite, db: Db, caller: Caller) -> OfferRead:
    """Create an offer (a voucher template) with a merchant key, or a coalition offer with
    the operator key. Terms do not change afterwards (revoke and create another): the codes
    already out say what they were issued with. Bad terms are 422 `invalid_offer` naming
    the field."""
    with db.session_scope() as session:
        offer = offers.create_offer(session, actor=caller, data=data)
        return offers.offer_read(session, offer)


@router.get("/offers", response_model=Page[OfferRead], responses=problems(*AUTHED))
def list_offers(db: Db, caller: Caller, paging: PageQuery) -> Page[OfferRead]:
    """The merchant's offers (the operator: all, the coalition's included), oldest first."""
    with db.session_scope() as session:
        return paging.page(offers.list_offers(session, actor=caller), key=by_creation)


@router.get("/offers/{offer_id}", response_model=OfferRead, responses=problems(*AUTHED))
def get_offer(offer_id: uuid.UUID, db: Db, caller: Caller) -> OfferRead:
    """One offer with its redemptions and budget used so far."""
    with db.session_scope() as session:
        return offers.get_offer(session, actor=caller, offer_id=offer_id)


@router.post("/offers/{offer_id}/revoke", response_model=OfferRead,
             responses=problems(*AUTHED), dependencies=[NoBody])
def revoke_offer(offer_id: uuid.UUID, db: Db, caller: Caller) -> OfferRead:
    """Revoke the offer: every one of its codes fails from now on, everywhere."""
    with db.session_scope() as session:
        return offers.revoke_offer(session, actor=caller, offer_id=offer_id)


@router.post("/offers/{offer_id}/codes", status_code=201, response_model=CodesRead,
             responses={202: {"model": CodesRead, "description": "A batch job was started"},
                        **problems(*AUTHED, 422)})
def issue_codes(offer_id: uuid.UUID, data: CodesWrite, db: Db, caller: Caller,
                request: Request) -> Response:
    """Issue 1 to 1,000 codes at once (201 with `codes`): personal single-use codes into a
    member's wallet (`member_id`), or bearer codes used up to `max_redemptions` times each
    (default 1). Each code carries at least 64 random bits and a check character. A
    `member_id` the caller may not see (another merchant's member, or no member at all) is
    the same 404 `not_found`.

    More bearer codes (up to 10,000,000) run as a batch job: 202 with `batch_id` and no
    codes; follow it at `GET /v1/voucher-batches/{batch_id}` and download the codes as CSV
    from `GET /v1/voucher-batches/{batch_id}/codes.csv`."""
    body = units.issue_codes(db, caller=caller, offer_id=offer_id, data=data,
                             in_background=request.app.state.settings.code_batches_in_background)
    return Response(body.model_dump_json(), status_code=202 if body.batch_id else 201,
                    media_type="application/json")


@router.get("/voucher-batches/{batch_id}", response_model=BatchRead,
            responses=problems(*AUTHED))
def get_batch(batch_id: uuid.UUID, db: Db, caller: Caller) -> BatchRead:
    """A code batch's progress: `generated` of `requested`, `status` running, done or
    failed (with `error`). A batch whose process stopped is resumed by the scheduler."""
    with db.session_scope() as session:
        return batches.get_batch(session, actor=caller, batch_id=batch_id)


@router.get("/voucher-batches/{batch_id}/codes.csv", response_class=StreamingResponse,
            responses={**media_response("text/csv", "code,barcode per line"),
                       **problems(*AUTHED)})
def batch_codes_csv(batch_id: uuid.UUID, db: Db, caller: Caller) -> StreamingResponse:
    """The batch's codes so far as CSV: the printed form and the numeric barcode form."""
    lines = batches.csv_lines(db, actor=caller, batch_id=batch_id)
    first = next(lines)  # checks the caller may see it before the answer starts
    return StreamingResponse(_prepend(first, lines), media_type="text/csv", headers={
        "Content-Disposition": f'attachment; filename="codes-{batch_id}.csv"'})


def _prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _printed(db: Db, caller: Caller, address: str, code: str) -> tuple[str, str]:
    """The code's printed and numeric forms; a lookup like `GET /v1/vouchers/{code}`
    (counted towards the failure limit when the code is unknown)."""
    with (voucher_attempt(db, caller=caller, address=address,
                          kind=SecurityEventKind.voucher_lookup, codes=[code]) as attempt,
          attempt.session() as session):
        return service.image_payload(session, actor=caller, code=code)


@router.get("/vouchers/{code}/qr.svg", response_class=Response,
            responses={**_SVG, **problems(*AUTHED, 422)})
def voucher_qr_svg(code: str, db: Db, caller: Caller,
                   address: ClientAddress) -> Response:
    """The code as a QR code (its printed form), for a phone wallet or a print."""
    text, _ = _printed(db, caller, address, code)
    return Response(images.qr_svg(text), media_type="image/svg+xml")


@router.get("/vouchers/{code}/qr.png", response_class=Response,
            responses={**_PNG, **problems(*AUTHED, 422)})
def voucher_qr_png(code: str, db: Db, caller: Caller,
                   address: ClientAddress) -> Response:
    """The code as a QR code, PNG."""
    text, _ = _printed(db, caller, address, code)
    return Response(images.qr_png(text), media_type="image/png")


@router.get("/vouchers/{code}/barcode.svg", response_class=Response,
            responses={**_SVG, **problems(*AUTHED, 422)})
def voucher_barcode_svg(code: str, db: Db, caller: Caller,
                        address: ClientAddress) -> Response:
    """The code's numeric form (merchant number + coupon number + check digits) as a
    Code 128 barcode, for POS scanners."""
    _, number = _printed(db, caller, address, code)
    return Response(images.barcode_svg(number), media_type="image/svg+xml")


@router.get("/vouchers/{code}/barcode.png", response_class=Response,
            responses={**_PNG, **problems(*AUTHED, 422)})
def voucher_barcode_png(code: str, db: Db, caller: Caller,
                        address: ClientAddress) -> Response:
    """The code's numeric form as a Code 128 barcode, PNG."""
    _, number = _printed(db, caller, address, code)
    return Response(images.barcode_png(number), media_type="image/png")


@router.get("/vouchers/{code}", response_model=VoucherRead,
            responses=problems(*AUTHED, 422, 429))
def get_voucher(code: str, db: Db, caller: Caller, address: ClientAddress) -> VoucherRead:
    """A code's offer, owner, uses and state (active, used, revoked, expired). Unknown and
    malformed codes count towards the failure limit, as at validation."""
    with (voucher_attempt(db, caller=caller, address=address,
                          kind=SecurityEventKind.voucher_lookup, codes=[code]) as attempt,
          attempt.session() as session):
        return service.get_voucher(session, actor=caller, code=code)


@router.post("/vouchers/validate", response_model=ValidationRead,
             responses=problems(*AUTHED, 422, 429))
def validate(data: ValidateWrite, db: Db, caller: Caller,
             address: ClientAddress) -> ValidationRead:
    """Whether a code can be used at this register now (and on this basket, if given),
    and exactly why not: `reason` is the refusal's code. No side effects (an answer
    `valid: false` is recorded as a security event)."""
    with voucher_attempt(db, caller=caller, address=address,
                         kind=SecurityEventKind.voucher_validation,
                         codes=[data.code]) as attempt:
        with attempt.session() as session:
            answer = redemption.validate(session, actor=caller, data=data)
        attempt.refused(answer.reason)
    return answer


validate.__doc__ = (validate.__doc__ or "") + "\n\n" + _REFUSALS


@router.post("/vouchers/{code}/reserve", status_code=201, response_model=RedemptionRead,
             responses=problems(*AUTHED, 409, 422, 429))
def reserve(code: str, data: ReserveWrite, db: Db, caller: Caller,
            address: ClientAddress) -> RedemptionRead:
    """Hold one use of the code for this register while the sale is rung up (1 to 1,800
    seconds, default 300). Name the hold (`reservation_id`) in the purchase's `vouchers`
    to use it; release it when the sale is aborted; it ends by itself when its time is up.
    A code revoked while held fails the purchase with `voucher_revoked`."""
    with (voucher_attempt(db, caller=caller, address=address,
                          kind=SecurityEventKind.voucher_reservation, codes=[code]) as attempt,
          attempt.session() as session):
        return redemption.reserve(session, actor=caller, code=code, data=data)


reserve.__doc__ = (reserve.__doc__ or "") + "\n\n" + _REFUSALS


@router.post("/vouchers/reservations/{reservation_id}/release", response_model=RedemptionRead,
             responses=problems(*AUTHED, 409), dependencies=[NoBody])
def release(reservation_id: uuid.UUID, db: Db, caller: Caller) -> RedemptionRead:
    """Give a hold back (the sale was aborted): the code can be used again. 409
    `reservation_ended` when it was already used, released or expired."""
    with db.session_scope() as session:
        return redemption.release(session, actor=caller, reservation_id=reservation_id)


@router.post("/vouchers/{code}/redeem", response_model=RedemptionRead,
             responses=problems(*AUTHED, 409, 422, 429))
def redeem(code: str, data: RedeemWrite, db: Db, key: ApiKey, address: ClientAddress,
           idempotency_key: IdempotencyKey = None) -> Response:
    """Use a code now, outside a purchase, with a terminal key: a gate admitting a ticket,
    a bonus-points voucher at a desk, an amount-off voucher the till applies itself. (In a
    purchase, list codes in `vouchers` of `POST /v1/pos/transactions`.) With an
    `Idempotency-Key`, a retry gets the first answer again; the key with another body is
    409 `idempotency_key_reused`. The body is checked before the key here: a malformed
    body is 422 whoever sends it (the key is read with the code, in one statement)."""
    # The common case reads the key, the till, the throttle and the code at once, in this
    # worker thread (``direct``); anything else is rolled back and answered in full.
    try:
        with db.statement_scope() as session:
            body = direct.redeem(session, key=key.credentials if key else None,
                                 address=address, code=code, data=data,
                                 idempotency_key=idempotency_key)
    except direct.NotDirect:
        caller = principal(db, key)
        with (voucher_attempt(db, caller=caller, address=address,
                              kind=SecurityEventKind.voucher_redemption,
                              codes=[code]) as attempt,
              attempt.session() as session):
            body = redemption.redeem(session, actor=caller, code=code, data=data,
                                     idempotency_key=idempotency_key)
    return Response(content=body, media_type="application/json")


redeem.__doc__ = (redeem.__doc__ or "") + "\n\n" + _REFUSALS


@router.post("/vouchers/{code}/revoke", response_model=VoucherRead,
             responses=problems(*AUTHED, 422))
def revoke(code: str, data: RevokeWrite, db: Db, caller: Caller) -> VoucherRead:
    """Revoke a code (merchant key; coalition codes: the operator). It fails at once
    everywhere: validation, holds at their commit, stand-alone redemption, and the next
    offline sync."""
    with db.session_scope() as session:
        return service.revoke(session, actor=caller, code=code, reason=data.reason)


@router.get("/members/{member_id}/vouchers", response_model=Page[VoucherRead],
            responses=problems(*AUTHED))
def member_wallet(member_id: uuid.UUID, db: Db, caller: Caller,
                  paging: PageQuery) -> Page[VoucherRead]:
    """A member's wallet: their personal codes at the caller's merchant and the
    coalition's (the operator sees all), used and expired ones included with their state;
    oldest first (by issue)."""
    with db.session_scope() as session:
        member = get_member(session, actor=caller, member_id=member_id)
        merchant_id = None if caller.role == Role.operator else caller.merchant_id
        return paging.page(service.wallet(session, member_id=member.id,
                                          merchant_id=merchant_id),
                           key=lambda voucher: (voucher.issued_at, voucher.code))
