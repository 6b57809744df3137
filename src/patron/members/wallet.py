"""The member's wallet in a browser (docs/web.md, "The member's wallet"): enrolment on the
join page binds the browser as the member's first device; another device is added with a
one-time code sent to the member's e-mail or phone. A device's session is the member
acting on their own record (``tenancy.rules.Relation.self``)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.db import rowcount
from patron.errors import NotFound
from patron.kit.clock import utcnow
from patron.kit.crypto import random_token, token_hash
from patron.members import access
from patron.members.errors import InvalidPhone, VerificationCodeIncorrect
from patron.members.models import Member, MemberDevice, MemberStatus, MemberVerification
from patron.members.schemas import Consents, MemberCreate, VerificationChannel
from patron.members.service import email_lookup, enrol, parse_phone, phone_lookup
from patron.referrals import codes as referral_codes
from patron.referrals.models import ReferralCode
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal

JOIN_SOURCE = "wallet"


@dataclass(frozen=True, slots=True)
class WalletSession:
    """The member a device's cookie stands for."""

    member_id: uuid.UUID
    merchant_id: uuid.UUID
    device_id: uuid.UUID
    language: str | None

    @property
    def principal(self) -> Principal:
        return Principal(key_id=None, role=Role.member, member_id=self.member_id)


def merchant_for_join(session: Session, *, number: int | None = None,
                      referral_code: str | None = None) -> Merchant | None:
    """The merchant a join link enrols with: the one its 5-digit number names, or the one
    whose member's referral code it carries."""
    if referral_code:
        try:
            canonical = referral_codes.parse(referral_code)
        except referral_codes.ReferralCodeFormatError:
            return None
        return session.scalars(
            select(Merchant).join(Member, Member.merchant_id == Merchant.id)
            .join(ReferralCode, ReferralCode.member_id == Member.id)
            .where(ReferralCode.code == canonical)).first()
    if number is not None:
        return session.scalars(select(Merchant).where(Merchant.number == number)).first()
    return None


def join(session: Session, *, merchant_id: uuid.UUID, install_id: str | None,
         language: str | None, email: str | None = None, referral_code: str | None = None,
         marketing: Consents | None = None, label: str | None = None) -> tuple[Member, str]:
    """Enrol a member from the join page — anonymous unless they give an e-mail — by the
    rules of every enrolment (``members.service.enrol``: the referral code's checks with
    this browser's installation id, an e-mail no other member has), and bind this browser
    as their wallet. Answers the member and the device's session token."""
    data = MemberCreate(language=language, email=email, referral_code=referral_code,
                        device_id=install_id, consents=marketing, source=JOIN_SOURCE)
    member = enrol(session, actor=Principal(key_id=None, role=Role.merchant,
                                            merchant_id=merchant_id), data=data)
    return member, bind_device(session, member=member, source="join", label=label)


def bind_device(session: Session, *, member: Member, source: str,
                label: str | None) -> str:
    token = random_token(32)
    now = utcnow()
    session.add(MemberDevice(merchant_id=member.merchant_id, id=uuid.uuid4(),
                             member_id=member.id, token_hash=token_hash(token), source=source,
                             label=(label or "")[:100] or None, created_at=now,
                             last_seen_at=now))
    session.flush()
    return token


# A device is touched at most this often: a write per page view would cost more than
# the page.
_TOUCH = timedelta(hours=1)


def session_of_device(session: Session, token: str | None) -> WalletSession | None:
    """The active member whose wallet this cookie opens, if the device is still bound and
    was used within ``wallet_device_days``; None otherwise."""
    if not token:
        return None
    now = utcnow()
    row = session.execute(
        select(MemberDevice.id, MemberDevice.merchant_id, MemberDevice.member_id,
               MemberDevice.last_seen_at, Member.language)
        .join(Member, Member.id == MemberDevice.member_id)
        .where(MemberDevice.token_hash == token_hash(token),
               MemberDevice.revoked_at.is_(None),
               Member.status == MemberStatus.active.value)).first()
    if row is None:
        return None
    if row.last_seen_at < now - timedelta(days=get_settings().wallet_device_days):
        return None
    if row.last_seen_at < now - _TOUCH:
        session.execute(update(MemberDevice).where(MemberDevice.merchant_id == row.merchant_id,
                                                   MemberDevice.id == row.id)
                        .values(last_seen_at=now))
    return WalletSession(member_id=row.member_id, merchant_id=row.merchant_id,
                         device_id=row.id, language=row.language)


def sign_out(session: Session, *, token: str) -> None:
    session.execute(update(MemberDevice).where(MemberDevice.token_hash == token_hash(token),
                                               MemberDevice.revoked_at.is_(None))
                    .values(revoked_at=utcnow()))


def devices(session: Session, *, member_id: uuid.UUID) -> list[MemberDevice]:
    return list(session.scalars(select(MemberDevice).where(
        MemberDevice.member_id == member_id, MemberDevice.revoked_at.is_(None))
        .order_by(MemberDevice.created_at)))


def revoke_device(session: Session, *, member_id: uuid.UUID, device_id: uuid.UUID) -> None:
    if not rowcount(session.execute(update(MemberDevice).where(
            MemberDevice.member_id == member_id, MemberDevice.id == device_id,
            MemberDevice.revoked_at.is_(None)).values(revoked_at=utcnow()))):
        raise NotFound("no such device")


# --- signing in on another device -------------------------------------------------------

def request_code(session: Session, *, address: str, channel: VerificationChannel,
                 region: str) -> uuid.UUID:
    """Send a one-time code to the active member whose e-mail or phone this is. The answer
    is a verification id whether or not such a member exists, so the page tells nobody
    which addresses belong to members."""
    if channel == "email":
        found = session.scalars(select(Member).where(
            Member.email_hash == email_lookup(address), Member.status == "active")).first()
    else:
        try:
            e164 = parse_phone(address, region)
        except InvalidPhone:  # an unparsable number is no member's
            return uuid.uuid4()
        found = session.scalars(select(Member).where(
            Member.phone_hash == phone_lookup(e164), Member.status == "active")).first()
    if found is None:
        return uuid.uuid4()
    return access.issue_code(session, member=found, channel=channel,
                             requested_by=found.merchant_id).id


def sign_in_with_code(session: Session, *, verification_id: uuid.UUID, code: str,
                      label: str | None) -> tuple[Member, str]:
    """Spend the code (a wrong one counts, ``members.access.use_code``) and bind this
    browser to the member it was sent to."""
    member = session.scalars(
        select(Member).join(MemberVerification, MemberVerification.member_id == Member.id)
        .where(MemberVerification.id == verification_id,
               Member.status == MemberStatus.active.value)).first()
    if member is None:
        raise VerificationCodeIncorrect(
            "the code has expired, was used, or had too many attempts; send a new one",
            attempts_left=0)
    access.use_code(session, member, verification_id, code)
    return member, bind_device(session, member=member, source="code", label=label)
