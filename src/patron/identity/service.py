"""Every way to identify a member, cards, rotating QR tokens and caller ID."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.db import flush_or_raise, rowcount
from patron.errors import NotFound, PatronError
from patron.identity import qr as qr_tokens
from patron.identity.errors import (
    CardAlreadyBlocked,
    CardBlocked,
    CardNotFound,
    InvalidImage,
    MalformedCode,
    MemberErased,
    MemberNotFound,
    MemberWithdrawn,
    NoCallNumber,
    NoCodeInImage,
    QrExpired,
    QrInvalid,
)
from patron.identity.images import ImageDecodeError, decode_image_base64
from patron.identity.models import CallerIdWait, Card, CardStatus, WaitStatus
from patron.identity.numbers import CheckDigitError, NumberFormatError, clean, parse_member_number
from patron.identity.schemas import (
    IdentifyRequest,
    IdentifyResult,
    MemberIdentification,
    Method,
    QrTokenRead,
)
from patron.kit.clock import utcnow
from patron.members import access
from patron.members.errors import CardTaken, InvalidPhone
from patron.members.models import Member, Membership, MemberStatus
from patron.members.pins import refuse_if_locked, verify_pin
from patron.members.schemas import MemberProof
from patron.members.service import (
    card_lookup,
    get_member,
    parse_card_uid,
    parse_phone,
    phone_lookup,
    region_for,
)
from patron.tenancy.models import Role, Terminal
from patron.tenancy.rules import MemberAction, Relation
from patron.tenancy.service import Principal

# --- resolving one identifier to a member ----------------------------------------------

# "No such member", the same answer whatever the reason (docs/identification.md): a number
# nobody has, a number whose check digits do not match, a phone nobody gave, a member who
# withdrew or was erased at a merchant the caller is not one of. Only what the text alone
# shows (not shaped like a number, a phone, a QR token) has its own answer.
NO_MEMBER = "no member matches"


def no_member() -> MemberNotFound:
    return MemberNotFound(NO_MEMBER)


def _member_number(text: str) -> str:
    """The member number a scanned barcode carries (check digits verified: a mismatch is
    no member, as a number nobody has)."""
    try:
        parse_member_number(text)
    except CheckDigitError as exc:
        raise no_member() from exc
    except NumberFormatError as exc:
        raise MalformedCode(f"{exc}", field="barcode") from exc
    return clean(text)


def _by_member_number(session: Session, text: str) -> Member:
    member = session.scalars(select(Member).where(Member.member_number == _member_number(text))
                             ).first()
    if member is None:
        raise no_member()
    return member


def _by_qr(session: Session, token: str) -> Member:
    settings = get_settings()
    step = qr_tokens.time_step(utcnow(), settings.qr_step_seconds)
    try:
        verified = qr_tokens.verify_token(settings.qr_key, token, step)
    except qr_tokens.TokenFormatError as exc:
        raise MalformedCode(str(exc), field="qr") from exc
    except qr_tokens.TokenSignatureError as exc:
        raise QrInvalid(field="qr") from exc
    except qr_tokens.TokenExpiredError as exc:
        raise QrExpired(field="qr") from exc
    member = session.scalars(
        select(Member).where(Member.member_number == verified.member_number)).first()
    if member is None:
        raise no_member()
    return member


def _by_card(session: Session, actor: Principal, text: str) -> Member:
    uid = parse_card_uid(text)
    row = session.execute(select(Card, Member).join(Member, Member.id == Card.member_id)
                          .where(Card.uid_hash == card_lookup(uid))).first()
    if row is None:
        raise CardNotFound()
    card, member = row
    if card.status != CardStatus.active.value:
        if not _known_here(session, actor, member):
            raise CardNotFound()  # another merchant's member's card: as unknown as any
        raise CardBlocked("this card is blocked; use the member's new card or another way "
                          "to identify", card_id=str(card.id))
    return member


def member_by_phone(session: Session, e164: str) -> Member | None:
    candidates = list(session.scalars(select(Member).where(Member.phone_hash ==
                                                           phone_lookup(e164))))
    # Prefer the active member: a withdrawn one may share the number with a re-enrolment.
    candidates.sort(key=lambda m: m.status != MemberStatus.active.value)
    return candidates[0] if candidates else None


def _by_phone(session: Session, actor: Principal, text: str) -> Member:
    e164 = parse_phone(text, region_for(session, actor))
    member = member_by_phone(session, e164)
    if member is None:
        raise no_member()
    return member


def _by_image(session: Session, data: str) -> Member:
    try:
        codes = decode_image_base64(data)
    except ImageDecodeError as exc:
        raise InvalidImage(str(exc), field="image") from exc
    if not codes:
        raise NoCodeInImage(field="image")
    # Several codes in one photo: the first one that is a member code wins; if none
    # is, report the error of the first.
    first_error: Exception | None = None
    for code in codes:
        try:
            if code.format == "qr":
                return _by_qr(session, code.text)
            return _by_member_number(session, code.text)
        except (MalformedCode, MemberNotFound, QrInvalid, QrExpired) as exc:
            first_error = first_error or exc
    assert first_error is not None
    raise first_error


def _check_status(member: Member) -> None:
    if member.status == MemberStatus.withdrawn.value:
        raise MemberWithdrawn()
    if member.status == MemberStatus.erased.value:
        raise MemberErased()


def _known_here(session: Session, actor: Principal, member: Member) -> bool:
    """Whether the caller's merchant knows the member: its own, or one holding a membership
    with it (``members.access``, the who-may rule)."""
    return access.relation(session, actor, member) != Relation.stranger


def _check_identifiable(session: Session, actor: Principal, member: Member,
                        known_here: bool | None = None,
                        missing: Callable[[], PatronError] = no_member) -> None:
    """Whether a member found by what a till gave may be named at all: active (a withdrawn
    or erased member is 410 where they were a member, elsewhere ``missing``: the answer
    to what was given when nobody has it) and not locked out (``refuse_if_locked``)."""
    if member.status != MemberStatus.active.value:
        if not (known_here if known_here is not None
                else _known_here(session, actor, member)):
            raise missing()
        _check_status(member)
    refuse_if_locked(member)


# --- PIN step-up and the lock -----------------------------------------------------------

def _verify_pin(session: Session, member: Member, pin: str | None, required: bool) -> bool:
    """Checks the PIN when one is given or required; the caller has refused a locked
    member already (``refuse_if_locked``)."""
    if pin is None and not required:
        return False
    verify_pin(session, member, pin)
    return True


def identify(session: Session, *, actor: Principal, request: IdentifyRequest) -> IdentifyResult:
    actor.require(Role.operator, Role.merchant, Role.terminal)
    method = request.method
    if method == Method.barcode:
        member = _by_member_number(session, request.barcode or "")
    elif method == Method.qr:
        member = _by_qr(session, request.qr or "")
    elif method == Method.card_uid:
        member = _by_card(session, actor, request.card_uid or "")
    elif method == Method.phone:
        member = _by_phone(session, actor, request.phone or "")
    else:
        member = _by_image(session, request.image or "")
    return _result(session, actor, member, method, request.pin)


def _result(session: Session, actor: Principal, member: Member, method: Method,
            pin: str | None) -> IdentifyResult:
    known_here = _known_here(session, actor, member)
    _check_identifiable(session, actor, member, known_here,
                        CardNotFound if method == Method.card_uid else no_member)
    verified = _verify_pin(session, member, pin, actor.require_pin)
    return IdentifyResult(member_id=member.id, member_number=member.member_number,
                          merchant_id=member.merchant_id, method=method,
                          known_here=known_here, pin_verified=verified)


# --- rotating QR ----------------------------------------------------------------------

def current_qr_token(member: Member) -> QrTokenRead:
    settings = get_settings()
    now = utcnow()
    step = qr_tokens.time_step(now, settings.qr_step_seconds)
    # Accepted until the end of the next step (one step of skew either side).
    expires = (step + 2) * settings.qr_step_seconds
    return QrTokenRead(token=qr_tokens.make_token(settings.qr_key, member.member_number, step),
                       expires_at=datetime.fromtimestamp(expires, tz=UTC),
                       refresh_seconds=settings.qr_step_seconds)


def active_member(session: Session, *, actor: Principal, member_id: uuid.UUID,
                  action: MemberAction = MemberAction.read,
                  proof: MemberProof | None = None) -> Member:
    return access.member_for(session, actor=actor, member_id=member_id, action=action,
                             proof=proof, require=_check_status)


# --- cards ----------------------------------------------------------------------------

def _new_card(session: Session, member: Member, uid_text: str, merchant_id: uuid.UUID) -> Card:
    uid = parse_card_uid(uid_text)
    uid_hash = card_lookup(uid)
    if session.scalars(select(Card.id).where(Card.uid_hash == uid_hash)).first() is not None:
        raise CardTaken(field="uid")
    card = Card(member_id=member.id, merchant_id=merchant_id, uid_hash=uid_hash,
                uid_last4=uid[-4:], status=CardStatus.active.value, created_at=utcnow())
    session.add(card)
    # The check above misses a registration racing this one: the unique index decides.
    flush_or_raise(session, CardTaken(field="uid"))
    return card


def add_card(session: Session, *, actor: Principal, member_id: uuid.UUID, uid: str,
             proof: MemberProof | None = None) -> Card:
    member = active_member(session, actor=actor, member_id=member_id,
                           action=MemberAction.change, proof=proof)
    return _new_card(session, member, uid, actor.merchant_id or member.merchant_id)


def list_cards(session: Session, *, actor: Principal, member_id: uuid.UUID) -> list[Card]:
    member = get_member(session, actor=actor, member_id=member_id)
    return list(session.scalars(select(Card).where(Card.member_id == member.id)
                                .order_by(Card.created_at)))


def _member_card(session: Session, member: Member, card_id: uuid.UUID) -> Card:
    card = session.get(Card, card_id)
    if card is None or card.member_id != member.id:
        raise NotFound("no such card")
    return card


def _block(session: Session, card: Card, reason: str) -> None:
    blocked = rowcount(session.execute(
        update(Card).where(Card.id == card.id, Card.status == CardStatus.active.value)
        .values(status=CardStatus.blocked.value, blocked_at=utcnow(), block_reason=reason)))
    if not blocked:
        raise CardAlreadyBlocked()
    session.refresh(card)


def block_card(session: Session, *, actor: Principal, member_id: uuid.UUID,
               card_id: uuid.UUID, reason: str | None,
               proof: MemberProof | None = None) -> Card:
    """Block a lost or stolen card; a withdrawn member's card may be blocked too."""
    member = access.member_for(session, actor=actor, member_id=member_id,
                               action=MemberAction.change, proof=proof)
    card = _member_card(session, member, card_id)
    _block(session, card, reason or "blocked")
    return card


def replace_card(session: Session, *, actor: Principal, member_id: uuid.UUID,
                 card_id: uuid.UUID, uid: str, reason: str | None,
                 proof: MemberProof | None = None) -> Card:
    member = active_member(session, actor=actor, member_id=member_id,
                           action=MemberAction.change, proof=proof)
    old = _member_card(session, member, card_id)
    if old.status == CardStatus.active.value:
        _block(session, old, reason or "replaced")
    new = _new_card(session, member, uid, actor.merchant_id or member.merchant_id)
    old.replaced_by_id = new.id
    session.flush()
    return new


# --- caller ID ------------------------------------------------------------------------

def start_caller_id_wait(session: Session, *, actor: Principal) -> CallerIdWait:
    actor.require(Role.terminal)
    terminal = session.get(Terminal, actor.terminal_id)
    assert terminal is not None and actor.merchant_id is not None
    if not terminal.call_number:
        raise NoCallNumber("set the terminal's call_number before using caller ID")
    now = utcnow()
    session.execute(update(CallerIdWait).where(CallerIdWait.terminal_id == terminal.id,
                                               CallerIdWait.status == WaitStatus.waiting.value)
                    .values(status=WaitStatus.cancelled.value, resolved_at=now))
    wait = CallerIdWait(terminal_id=terminal.id, merchant_id=actor.merchant_id,
                        call_number=terminal.call_number, status=WaitStatus.waiting.value,
                        created_at=now, expires_at=now + timedelta(
                            seconds=get_settings().caller_id_wait_seconds))
    session.add(wait)
    session.flush()
    return wait


def get_caller_id_wait(session: Session, *, actor: Principal,
                       wait_id: uuid.UUID) -> CallerIdWait:
    actor.require(Role.terminal, Role.merchant, Role.operator)
    wait = session.get(CallerIdWait, wait_id)
    if wait is None or not actor.sees_merchant(wait.merchant_id) or (
            actor.role == Role.terminal and wait.terminal_id != actor.terminal_id):
        raise NotFound("no such caller-ID wait")
    if wait.status == WaitStatus.waiting.value and wait.expires_at <= utcnow():
        wait.status = WaitStatus.expired.value
    return wait


def inbound_call(session: Session, *, caller: str, called: str) -> CallerIdWait | None:
    """A call reached a register's number: attach the caller to the oldest waiting register."""
    settings = get_settings()
    try:
        called_e164 = parse_phone(called, settings.default_region)
    except InvalidPhone:
        return None
    now = utcnow()
    waits = session.scalars(
        select(CallerIdWait).where(CallerIdWait.call_number == called_e164,
                                   CallerIdWait.status == WaitStatus.waiting.value,
                                   CallerIdWait.expires_at > now)
        .order_by(CallerIdWait.created_at)).all()
    for wait in waits:
        member: Member | None = None
        try:
            member = member_by_phone(session, parse_phone(caller, settings.default_region))
        except InvalidPhone:
            member = None  # withheld or malformed caller ID: an unknown caller
        found = member is not None and member.status == MemberStatus.active.value
        status = WaitStatus.matched if found else WaitStatus.unknown_caller
        claimed = rowcount(session.execute(
            update(CallerIdWait).where(CallerIdWait.id == wait.id,
                                       CallerIdWait.status == WaitStatus.waiting.value)
            .values(status=status.value, member_id=member.id if found and member else None,
                    resolved_at=now)))
        if claimed:
            session.refresh(wait)
            return wait
    return None


def members_for(session: Session, *, actor: Principal,
                identifications: Sequence[MemberIdentification]
                ) -> list[Member | PatronError]:
    """``member_for`` for many identifications at once, each answered with its member or
    the error ``member_for`` raises: members named by id or by barcode are read with one
    statement (and their memberships here with another), any other way one by one.

    Only for identifications without a PIN at a till that does not require one: naming a
    member then writes nothing."""
    if actor.require_pin or any(item.pin is not None for item in identifications):
        raise ValueError("members_for does not check PINs")
    numbers: dict[int, str | PatronError] = {}
    for index, item in enumerate(identifications):
        if item.member_id is None and item.barcode is not None:
            try:
                numbers[index] = _member_number(item.barcode)
            except PatronError as exc:
                numbers[index] = exc
    ids = {item.member_id for item in identifications if item.member_id is not None}
    wanted = {number for number in numbers.values() if isinstance(number, str)}
    by_id: dict[uuid.UUID, Member] = {}
    by_number: dict[str, Member] = {}
    if ids or wanted:
        for row in session.scalars(select(Member).where(
                or_(Member.id.in_(ids), Member.member_number.in_(wanted)))):
            by_id[row.id] = row
            by_number[row.member_number] = row
    visible: set[uuid.UUID] = set()
    if ids and actor.role != Role.operator:
        visible = set(session.scalars(select(Membership.member_id).where(
            Membership.merchant_id == actor.merchant_id, Membership.member_id.in_(ids))))
    answers: list[Member | PatronError] = []
    for index, item in enumerate(identifications):
        member: Member | None
        try:
            if item.member_id is not None:
                actor.require(Role.operator, Role.merchant, Role.terminal)
                member = by_id.get(item.member_id)
                # As get_member: another merchant's member is not there for this key.
                if member is None or (actor.role != Role.operator
                                      and member.id not in visible):
                    raise NotFound("no such member")
            elif index in numbers:
                actor.require(Role.operator, Role.merchant, Role.terminal)
                number = numbers[index]
                if isinstance(number, PatronError):
                    raise number
                member = by_number.get(number)
                if member is None:
                    raise no_member()
            else:
                member = member_for(session, actor=actor, identification=item)
                assert member is not None
            if item.member_id is not None:
                _check_status(member)  # named by id: the caller sees the member
            _check_identifiable(session, actor, member)
            answers.append(member)
        except PatronError as exc:
            answers.append(exc)
    return answers


def member_for(session: Session, *, actor: Principal,
               identification: MemberIdentification | None) -> Member | None:
    """The member a till names (by id or as `POST /v1/identify` takes them); None when
    the sale is anonymous."""
    if identification is None:
        return None
    if identification.member_id is not None:
        named = active_member(session, actor=actor, member_id=identification.member_id)
        refuse_if_locked(named)
        return named
    request = IdentifyRequest(barcode=identification.barcode, qr=identification.qr,
                              card_uid=identification.card_uid, phone=identification.phone,
                              pin=identification.pin)
    result = identify(session, actor=actor, request=request)
    member = session.get(Member, result.member_id)
    assert member is not None
    return member
