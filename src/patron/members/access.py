"""Who may do what to a member, applied: the caller's relation to the member, the verdict of
``patron.tenancy.rules`` and, where it asks for one, the member's proof of presence.

Every member endpoint reaches its member through ``member_for``.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.db import rowcount
from patron.errors import Forbidden, NotFound
from patron.kit.clock import utcnow
from patron.kit.crypto import encrypt, lookup_hash
from patron.members.errors import (
    NoChannelForCode,
    NotHomeMerchant,
    ProofRequired,
    TooManyVerificationCodes,
    VerificationCodeIncorrect,
)
from patron.members.models import (
    DataExport,
    Member,
    Membership,
    MemberVerification,
)
from patron.members.pii import decrypt_email, decrypt_phone, mask_email, mask_phone
from patron.members.pins import verify_pin
from patron.members.schemas import MemberProof, VerificationChannel
from patron.notify.outbox import EventType, emit
from patron.tenancy.models import Role
from patron.tenancy.rules import (
    MemberAction,
    Relation,
    Verdict,
    member_verdict,
)
from patron.tenancy.rules import relation as relation_for
from patron.tenancy.service import Principal

VERIFICATION_CODE = "member.verification_code"
CODE_LIFETIME = timedelta(minutes=10)
CODE_ATTEMPTS = 5
CODES_PER_HOUR = 5


def is_member_of(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID) -> bool:
    return bool(session.scalar(select(exists().where(
        Membership.member_id == member_id, Membership.merchant_id == merchant_id))))


def relation(session: Session, actor: Principal, member: Member) -> Relation:
    is_home = actor.merchant_id is not None and actor.merchant_id == member.merchant_id
    has_membership = (
        actor.merchant_id is not None and not is_home
        and actor.role in (Role.merchant, Role.terminal)
        and is_member_of(session, member_id=member.id, merchant_id=actor.merchant_id))
    return relation_for(role=actor.role, is_home=is_home, has_membership=has_membership,
                        is_self=actor.member_id is not None and actor.member_id == member.id)


def member_for(session: Session, *, actor: Principal, member_id: uuid.UUID,
               action: MemberAction, proof: MemberProof | None = None,
               require: Callable[[Member], None] | None = None) -> Member:
    """The member, if the caller may do ``action`` to them: 404 when the caller may not
    know the member exists, 403 when it may know but not do this, and the member's proof
    checked when the rule asks for it (a wrong PIN counts towards the PIN's lock).
    ``require`` checks the member's state once the caller is known to be allowed, before
    any proof is spent on it."""
    return member_and_relation(session, actor=actor, member_id=member_id, action=action,
                               proof=proof, require=require)[0]


def member_and_relation(session: Session, *, actor: Principal, member_id: uuid.UUID,
                        action: MemberAction, proof: MemberProof | None = None,
                        require: Callable[[Member], None] | None = None
                        ) -> tuple[Member, Relation]:
    """``member_for``, with the caller's relation to the member it decided by."""
    member = session.get(Member, member_id)
    if member is None:
        raise NotFound("no such member")
    found = relation(session, actor, member)
    verdict = member_verdict(action, found)
    if verdict == Verdict.hide:
        raise NotFound("no such member")
    if verdict == Verdict.forbid:
        raise _forbidden(found, action)
    if require is not None:
        require(member)
    if verdict == Verdict.with_proof:
        check_proof(session, member, proof)
    return member, found


def _forbidden(found: Relation, action: MemberAction) -> Forbidden:
    if found == Relation.sales_rep:
        return Forbidden("a sales representative's key does not reach members")
    if action == MemberAction.change:
        return NotHomeMerchant(
            "only the member's enrolling merchant, the operator, or a till with the member "
            "present (their PIN or a one-time code as `proof`) may change this")
    if found in (Relation.home_terminal, Relation.member_terminal):
        return Forbidden("a terminal key may not do this; use the enrolling merchant's "
                         "merchant key")
    return NotHomeMerchant()


# --- proof of the member's presence ----------------------------------------------------

def check_proof(session: Session, member: Member, proof: MemberProof | None) -> None:
    if proof is None:
        raise ProofRequired()
    if proof.pin is not None:
        verify_pin(session, member, proof.pin)
        return
    assert proof.verification_id is not None and proof.code is not None
    use_code(session, member, proof.verification_id, proof.code)


def _code_hash(verification_id: uuid.UUID, code: str) -> str:
    return lookup_hash(get_settings().lookup_key, VERIFICATION_CODE,
                       f"{verification_id}:{code}")


def send_code(session: Session, *, actor: Principal, member_id: uuid.UUID,
              channel: VerificationChannel) -> tuple[MemberVerification, str]:
    """Start a one-time code for ``member_id``, to go to the member's current phone or
    e-mail through the outbox; answers the verification and where it goes (masked)."""
    member = member_for(session, actor=actor, member_id=member_id, action=MemberAction.read)
    address = decrypt_phone(member) if channel == "sms" else decrypt_email(member)
    if address is None:
        raise NoChannelForCode(f"the member has no {'phone' if channel == 'sms' else 'e-mail'}"
                               " on file; ask for their PIN instead", field="channel")
    verification = issue_code(session, member=member, channel=channel,
                              requested_by=actor.merchant_id or member.merchant_id)
    masked = mask_phone(address) if channel == "sms" else mask_email(address)
    return verification, masked


def issue_code(session: Session, *, member: Member, channel: VerificationChannel,
               requested_by: uuid.UUID) -> MemberVerification:
    """A one-time code for ``member``, on its way to their phone or e-mail through the
    outbox (at most ``CODES_PER_HOUR``): a till's proof of presence, and the wallet's
    sign-in on a new device."""
    now = utcnow()
    recent = session.scalar(select(func.count()).select_from(MemberVerification).where(
        MemberVerification.member_id == member.id,
        MemberVerification.created_at > now - timedelta(hours=1)))
    if (recent or 0) >= CODES_PER_HOUR:
        raise TooManyVerificationCodes(retry_after=3600)
    verification_id = uuid.uuid4()
    code = f"{secrets.randbelow(1_000_000):06d}"
    verification = MemberVerification(
        merchant_id=member.merchant_id, id=verification_id, member_id=member.id,
        requested_by_merchant_id=requested_by, channel=channel,
        code_hash=_code_hash(verification_id, code), attempts=0, created_at=now,
        expires_at=now + CODE_LIFETIME)
    session.add(verification)
    session.flush()
    # The code travels to the delivery worker encrypted; nothing else keeps it.
    sealed = encrypt(get_settings().encryption_key, code, context=VERIFICATION_CODE)
    emit(session, type=EventType.verification_code, merchant_id=member.merchant_id,
         member_id=member.id,
         payload={"verification_id": str(verification_id), "channel": channel,
                  "code_encrypted": base64.b64encode(sealed).decode(),
                  "expires_at": verification.expires_at.isoformat()},
         occurred_at=now)
    return verification


def use_code(session: Session, member: Member, verification_id: uuid.UUID,
             code: str) -> None:
    """Spend a one-time code of ``member``'s (``VerificationCodeIncorrect`` otherwise)."""
    now = utcnow()
    # One conditional statement counts the attempt: concurrent guesses cannot exceed it.
    counted = session.execute(
        update(MemberVerification)
        .where(MemberVerification.merchant_id == member.merchant_id,
               MemberVerification.id == verification_id,
               MemberVerification.member_id == member.id,
               MemberVerification.consumed_at.is_(None),
               MemberVerification.expires_at > now,
               MemberVerification.attempts < CODE_ATTEMPTS)
        .values(attempts=MemberVerification.attempts + 1)
        .returning(MemberVerification.code_hash, MemberVerification.attempts)).first()
    if counted is None:
        raise VerificationCodeIncorrect(
            "the code has expired, was used, or had too many attempts; send a new one",
            attempts_left=0)
    code_hash, attempts = counted
    if not secrets.compare_digest(code_hash, _code_hash(verification_id, code)):
        raise VerificationCodeIncorrect(attempts_left=CODE_ATTEMPTS - int(attempts))
    used = rowcount(session.execute(
        update(MemberVerification)
        .where(MemberVerification.merchant_id == member.merchant_id,
               MemberVerification.id == verification_id,
               MemberVerification.consumed_at.is_(None))
        .values(consumed_at=now)))
    if not used:
        raise VerificationCodeIncorrect("the code was just used", attempts_left=0)


# --- exports ----------------------------------------------------------------------------

def record_export(session: Session, *, actor: Principal, member: Member,
                  at: datetime | None = None) -> DataExport:
    """Every export of personal data leaves a row: who, when, which member."""
    row = DataExport(merchant_id=member.merchant_id, id=uuid.uuid4(), member_id=member.id,
                     actor_role=actor.role.value, actor_key_id=actor.key_id,
                     actor_merchant_id=actor.merchant_id, exported_at=at or utcnow())
    session.add(row)
    session.flush()
    return row


def list_exports(session: Session, *, actor: Principal, member_id: uuid.UUID | None,
                 since: datetime | None, before: tuple[datetime, uuid.UUID] | None,
                 limit: int) -> list[DataExport]:
    """The operator's record of exports, newest first (keyset on time and id)."""
    actor.require(Role.operator)
    query = select(DataExport)
    if member_id is not None:
        query = query.where(DataExport.member_id == member_id)
    if since is not None:
        query = query.where(DataExport.exported_at >= since)
    if before is not None:
        at, row_id = before
        query = query.where((DataExport.exported_at < at)
                            | ((DataExport.exported_at == at) & (DataExport.id < row_id)))
    return list(session.scalars(query.order_by(DataExport.exported_at.desc(),
                                               DataExport.id.desc()).limit(limit)))
