"""The referral program: codes, referees, rewards on the first qualifying purchase, the
fraud checks and the claw-back (docs/referrals.md).

1. Every member has a referral code (made when first asked for) and a link.
2. A member who enrols with a code of a member of the same merchant, while that merchant's
   program is active, is that member's referee — unless any phone, e-mail, wallet device
   or card the referee enrols with is or was the referrer's (``SelfReferral``: 422, the
   attempt recorded as a security event, nothing else stored).
3. The referee's first purchase at the merchant whose total reaches the program's minimum
   qualifies, once (the referral's row is locked): the referee gets their reward, and the
   referrer theirs unless the monthly cap is reached — one conditional UPDATE of the
   referrer's code row takes each reward of the month, so the cap holds however many
   referees qualify at once — or they are no longer an active member.
4. A return that leaves the qualifying purchase below the minimum, or returns it in full,
   claws back both rewards: the points (a debt if already spent, as with any return) and
   the reward codes not yet used (revoked).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session

from patron.campaigns import occasions
from patron.campaigns.models import Trigger
from patron.config import get_settings
from patron.db import insert_for, rowcount
from patron.identity.models import Card
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.members.models import IdentifierKind, Member, MemberIdentifier, MemberStatus
from patron.notify.outbox import EventType, emit
from patron.referrals import codes
from patron.referrals.errors import (
    InvalidReferralProgram,
    NoReferralProgram,
    ReferralDeviceReused,
    SelfReferral,
    UnknownReferralCode,
)
from patron.referrals.models import Referral, ReferralCode, ReferralProgram, ReferralStatus
from patron.referrals.schemas import (
    MemberReferralRead,
    ReferralCounts,
    ReferralProgramRead,
    ReferralProgramWrite,
    ReferredBy,
)
from patron.security.models import SecurityEventKind
from patron.security.service import record_security_event
from patron.tenancy.models import Role
from patron.tenancy.service import Principal, get_merchant
from patron.vouchers import service as vouchers
from patron.vouchers.models import Offer, Voucher

REWARDED_EVENT = EventType.referral_rewarded
CLAWED_BACK_EVENT = EventType.referral_clawed_back
SECURITY_KIND = SecurityEventKind.referral
CODE_ATTEMPTS = 5


# --- the program ----------------------------------------------------------------------

def read_program(session: Session, *, actor: Principal,
                 merchant_id: uuid.UUID) -> ReferralProgramRead:
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    return _program_read(merchant.id, session.get(ReferralProgram, merchant.id))


def put_program(session: Session, *, actor: Principal, merchant_id: uuid.UUID,
                data: ReferralProgramWrite) -> ReferralProgramRead:
    """Replace the merchant's program (its own key or the operator's)."""
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    actor.require(Role.operator, Role.merchant)
    for field in ("referrer_offer_id", "referee_offer_id"):
        _check_offer(session, merchant.id, getattr(data, field), field=field)
    if data.active and not (data.referrer_points or data.referrer_offer_id
                            or data.referee_points or data.referee_offer_id):
        raise InvalidReferralProgram("an active program gives something: points or an offer "
                                     "to the referrer or the referee", field="active")
    values = {**data.model_dump(), "updated_at": utcnow()}
    session.execute(insert_for(session, ReferralProgram)
                    .values(merchant_id=merchant.id, **values)
                    .on_conflict_do_update(index_elements=["merchant_id"], set_=values))
    program = session.get(ReferralProgram, merchant.id, populate_existing=True)
    return _program_read(merchant.id, program)


def _check_offer(session: Session, merchant_id: uuid.UUID, offer_id: uuid.UUID | None, *,
                 field: str) -> None:
    if offer_id is None:
        return
    offer = session.get(Offer, offer_id)
    if offer is None or offer.merchant_id not in (merchant_id, None):
        raise InvalidReferralProgram("no such offer of this merchant or the coalition",
                                     field=field)
    if offer.revoked_at is not None:
        raise InvalidReferralProgram("the offer is revoked", field=field)


def _program_read(merchant_id: uuid.UUID,
                  program: ReferralProgram | None) -> ReferralProgramRead:
    if program is None:
        return ReferralProgramRead(
            merchant_id=merchant_id, configured=False, active=False, referrer_points=0,
            referrer_offer_id=None, referee_points=0, referee_offer_id=None,
            min_purchase_minor=0, monthly_cap=None, updated_at=None)
    return ReferralProgramRead.model_validate(
        {**{column: getattr(program, column) for column in ReferralProgramRead.model_fields
            if column != "configured"}, "configured": True})


# --- codes ------------------------------------------------------------------------------

def code_of(session: Session, member_id: uuid.UUID, *, now: datetime) -> str:
    """The member's referral code, made the first time it is asked for."""
    for _ in range(CODE_ATTEMPTS):
        found = session.scalar(select(ReferralCode.code)
                               .where(ReferralCode.member_id == member_id))
        if found is not None:
            return found
        # A concurrent first request, or (rarely) another member's equal code: skipped,
        # then read again — the member's row, or a new code.
        session.execute(insert_for(session, ReferralCode).values(
            member_id=member_id, code=codes.new_code(), reward_month=None,
            rewards_in_month=0, created_at=now).on_conflict_do_nothing())
    raise RuntimeError("no free referral code after several attempts")


def member_referral(session: Session, *, member: Member, now: datetime) -> MemberReferralRead:
    code = codes.display(code_of(session, member.id, now=now))
    settings = get_settings()
    own = session.scalars(select(Referral).where(Referral.referee_id == member.id)).first()
    counts: dict[str, int] = {status: count for status, count in session.execute(
        select(Referral.status, func.count()).where(Referral.referrer_id == member.id)
        .group_by(Referral.status))}
    month = session.execute(select(ReferralCode.reward_month, ReferralCode.rewards_in_month)
                            .where(ReferralCode.member_id == member.id)).one()
    return MemberReferralRead(
        member_id=member.id, code=code,
        link=settings.referral_link.format(base=settings.public_base_url.rstrip("/"),
                                           code=code),
        referred_by=ReferredBy(
            referral_id=own.id, status=own.status, created_at=own.created_at,
            rewarded_at=own.rewarded_at, clawed_back_at=own.clawed_back_at) if own else None,
        referrals=ReferralCounts(
            pending=counts.get(ReferralStatus.pending.value, 0),
            rewarded=counts.get(ReferralStatus.rewarded.value, 0),
            clawed_back=counts.get(ReferralStatus.clawed_back.value, 0),
            referrer_rewards_this_month=(month.rewards_in_month
                                         if month.reward_month == _month(now) else 0)))


# --- enrolment ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Identifiers:
    """A new member's identifiers, by keyed hash."""

    phone: str | None = None
    email: str | None = None
    card: str | None = None
    device: str | None = None


@dataclass(frozen=True)
class Accepted:
    """A code accepted at an enrolment: the referrer, at the program's merchant."""

    referrer_id: uuid.UUID
    merchant_id: uuid.UUID


def check_code(session: Session, *, merchant_id: uuid.UUID, code: str,
               referee: Identifiers, now: datetime) -> Accepted:
    """The referrer of a code given at an enrolment at the merchant, or the reason not."""
    try:
        canonical = codes.parse(code)
    except codes.ReferralCodeFormatError as exc:
        raise UnknownReferralCode(str(exc), field="referral_code") from None
    referrer = session.execute(
        select(Member.id, Member.merchant_id, Member.status)
        .join(ReferralCode, ReferralCode.member_id == Member.id)
        .where(ReferralCode.code == canonical)).first()
    # Another merchant's member's code is unknown here, as codes that do not exist are.
    if (referrer is None or referrer.merchant_id != merchant_id
            or referrer.status != MemberStatus.active.value):
        raise UnknownReferralCode(field="referral_code")
    program = session.get(ReferralProgram, merchant_id)
    if program is None or not program.active:
        raise NoReferralProgram(field="referral_code")
    shared = _shared_identifier(session, referrer.id, referee)
    if shared is not None:
        record_security_event(session, merchant_id=merchant_id, kind=SECURITY_KIND,
                              refusal="self_referral", member_id=referrer.id,
                              detail=f"enrolment with the referrer's {shared}",
                              occurred_at=now)
        raise SelfReferral(f"the {shared} is the referrer's own: a member cannot refer "
                           f"themselves", field="referral_code")
    if referee.device and _device_referred(session, referrer.id, referee.device):
        record_security_event(session, merchant_id=merchant_id, kind=SECURITY_KIND,
                              refusal="referral_device_reused", member_id=referrer.id,
                              detail="a second enrolment with the code from one wallet "
                                     "device", occurred_at=now)
        raise ReferralDeviceReused("another member already enrolled with this referral code "
                                   "from the same wallet device", field="referral_code")
    return Accepted(referrer_id=referrer.id, merchant_id=merchant_id)


def _device_referred(session: Session, referrer_id: uuid.UUID, device: str) -> bool:
    """Whether a referee of this referrer enrolled (or later appeared) with this wallet
    device. The referrer's code row is locked first, so two enrolments with one device
    and one code take turns and the second sees the first (PostgreSQL; SQLite's writers
    are serial already)."""
    session.execute(select(ReferralCode.member_id).where(ReferralCode.member_id == referrer_id)
                    .with_for_update())
    return session.scalar(select(MemberIdentifier.member_id).join(
        Referral, Referral.referee_id == MemberIdentifier.member_id).where(
        Referral.referrer_id == referrer_id,
        MemberIdentifier.kind == IdentifierKind.device.value,
        MemberIdentifier.hash == device).limit(1)) is not None


def _shared_identifier(session: Session, referrer_id: uuid.UUID,
                       referee: Identifiers) -> str | None:
    """Which of the referee's identifiers the referrer has or had, if any."""
    pairs = [(kind, hashed) for kind, hashed in ((IdentifierKind.phone, referee.phone),
                                                 (IdentifierKind.email, referee.email),
                                                 (IdentifierKind.device, referee.device))
             if hashed]
    if pairs:
        found = session.scalars(select(MemberIdentifier.kind).where(
            MemberIdentifier.member_id == referrer_id,
            or_(*(((MemberIdentifier.kind == kind.value) & (MemberIdentifier.hash == hashed))
                  for kind, hashed in pairs)))).first()
        if found is not None:
            return {"phone": "phone number", "email": "e-mail address",
                    "device": "wallet device"}[found]
    if referee.card and session.scalars(select(Card.id).where(
            Card.member_id == referrer_id, Card.uid_hash == referee.card)).first():
        return "card"
    return None


def attach(session: Session, accepted: Accepted, *, referee_id: uuid.UUID,
           now: datetime) -> Referral:
    referral = Referral(id=uuid.uuid4(), merchant_id=accepted.merchant_id,
                        referrer_id=accepted.referrer_id, referee_id=referee_id,
                        status=ReferralStatus.pending.value, created_at=now)
    session.add(referral)
    return referral


# --- the qualifying purchase --------------------------------------------------------------

@dataclass(frozen=True)
class Purchase:
    """What the checkout tells the program of an identified member's purchase."""

    merchant_id: uuid.UUID
    merchant_number: int
    member_id: uuid.UUID
    transaction_id: uuid.UUID
    total_minor: int
    occurred_at: datetime
    points_expire_at: datetime | None
    source: str


def qualifies(program: ReferralProgram | None, *, total_minor: int) -> bool:
    """Whether a purchase of this total rewards the referee's pending referral."""
    return (program is not None and program.active
            and total_minor >= program.min_purchase_minor)


def pending_referees(session: Session, *, merchant_id: uuid.UUID,
                     member_ids: Sequence[uuid.UUID]) -> frozenset[uuid.UUID]:
    """Which of these members have a pending referral at the merchant (read only)."""
    if not member_ids:
        return frozenset()
    return frozenset(session.scalars(
        select(Referral.referee_id).where(Referral.merchant_id == merchant_id,
                                          Referral.referee_id.in_(member_ids),
                                          Referral.status == ReferralStatus.pending.value)))


def program_of(session: Session, merchant_id: uuid.UUID) -> ReferralProgram | None:
    return session.get(ReferralProgram, merchant_id)


def on_purchase(session: Session, purchase: Purchase, *, now: datetime) -> dict[str, Any] | None:
    """Reward a pending referral when this purchase qualifies; the referee's reward as the
    register shows it (an entry of the answer's ``offers``), else None."""
    # One statement on every identified checkout; it locks only a pending referral's row,
    # so two purchases of the referee at once take turns and the second finds it rewarded.
    referral = session.scalars(
        select(Referral).where(Referral.referee_id == purchase.member_id,
                               Referral.merchant_id == purchase.merchant_id,
                               Referral.status == ReferralStatus.pending.value)
        .with_for_update().execution_options(populate_existing=True)).one_or_none()
    if referral is None:
        return None
    program = session.get(ReferralProgram, purchase.merchant_id)
    if program is None or not qualifies(program, total_minor=purchase.total_minor):
        return None
    referral.status = ReferralStatus.rewarded.value
    referral.transaction_id = purchase.transaction_id
    referral.rewarded_at = now
    given = _reward(session, referral, program, purchase, member_id=purchase.member_id,
                    role="referee", now=now)
    refusal = _referrer_refusal(session, referral, program, now=now)
    referral.referrer_refusal = refusal
    if refusal is None:
        _reward(session, referral, program, purchase, member_id=referral.referrer_id,
                role="referrer", now=now)
    session.flush()
    if refusal != "referrer_not_active":
        # The referrer's referral-qualified campaigns (their outcomes go to the phone).
        occasions.fire(session, occasions.Occasion(
            trigger=Trigger.referral_qualified, key=f"referral:{referral.id}",
            merchant_id=purchase.merchant_id, member_id=referral.referrer_id,
            occurred_at=purchase.occurred_at), now=now)
    return {"referral_id": str(referral.id), "name": "Referral reward", **given} if given else None


def _referrer_refusal(session: Session, referral: Referral, program: ReferralProgram, *,
                      now: datetime) -> str | None:
    """Why the referrer gets nothing for this referee, or None (the month's reward taken)."""
    status = session.scalar(select(Member.status).where(Member.id == referral.referrer_id))
    if status != MemberStatus.active.value:
        return "referrer_not_active"
    if program.monthly_cap is None:
        return None
    if program.monthly_cap == 0:
        return "monthly_cap_reached"
    month = _month(now)
    taken = rowcount(session.execute(
        update(ReferralCode)
        .where(ReferralCode.member_id == referral.referrer_id,
               or_(ReferralCode.reward_month.is_(None), ReferralCode.reward_month != month,
                   ReferralCode.rewards_in_month < program.monthly_cap))
        .values(reward_month=month, rewards_in_month=case(
            (ReferralCode.reward_month == month, ReferralCode.rewards_in_month + 1),
            else_=1))))
    return None if taken else "monthly_cap_reached"


def _reward(session: Session, referral: Referral, program: ReferralProgram,
            purchase: Purchase, *, member_id: uuid.UUID, role: str,
            now: datetime) -> dict[str, Any]:
    """Give one side its points and code; what it got."""
    points = program.referee_points if role == "referee" else program.referrer_points
    offer_id = program.referee_offer_id if role == "referee" else program.referrer_offer_id
    given: dict[str, Any] = {}
    if points:
        entry = ledger.earn(session, merchant_id=purchase.merchant_id, member_id=member_id,
                            points=points, expires_at=purchase.points_expire_at,
                            idempotency_key=f"referral:{referral.id}:{role}",
                            source=purchase.source, reason=f"referral ({role})",
                            occurred_at=purchase.occurred_at)
        setattr(referral, f"{role}_points", points)
        setattr(referral, f"{role}_entry_id", entry.id)
        given["points"] = points
    offer = session.get(Offer, offer_id) if offer_id is not None else None
    if offer is not None and offer.revoked_at is None:  # revoked since: nothing to give
        voucher_id, given["voucher"] = vouchers.issue_personal(
            session, offer=offer, member_id=member_id,
            merchant_number=purchase.merchant_number, source="referral", now=now)
        setattr(referral, f"{role}_voucher_id", voucher_id)
    emit(session, type=REWARDED_EVENT, merchant_id=purchase.merchant_id, member_id=member_id,
         occurred_at=purchase.occurred_at,
         payload={"referral_id": str(referral.id), "role": role, "member_id": str(member_id),
                  "transaction_id": str(purchase.transaction_id), **given})
    return given


# --- the return -------------------------------------------------------------------------------

def on_return(session: Session, *, transaction_id: uuid.UUID, net_minor: int,
              fully_returned: bool, source: str, occurred_at: datetime,
              now: datetime) -> uuid.UUID | None:
    """Claw back the rewards of the referral this purchase qualified, when the return
    leaves it below the program's minimum or returns it in full; the referral's id then."""
    referral = session.scalars(
        select(Referral).where(Referral.transaction_id == transaction_id,
                               Referral.status == ReferralStatus.rewarded.value)
        .with_for_update().execution_options(populate_existing=True)).one_or_none()
    if referral is None:
        return None
    program = session.get(ReferralProgram, referral.merchant_id)
    minimum = program.min_purchase_minor if program is not None else 0
    if not (fully_returned or net_minor < minimum):
        return None
    for role in ("referee", "referrer"):
        entry_id = getattr(referral, f"{role}_entry_id")
        if entry_id is not None:
            ledger.claw_back(session, earn_entry_id=entry_id,
                             points=getattr(referral, f"{role}_points"),
                             idempotency_key=f"referral:{referral.id}:{role}:claw-back",
                             source=source, reason=f"referral ({role}) returned",
                             occurred_at=occurred_at)
    reward_codes = [voucher_id for voucher_id in (referral.referee_voucher_id,
                                                  referral.referrer_voucher_id) if voucher_id]
    if reward_codes:
        # A code already used stays used: its discount was part of a purchase of its own.
        session.execute(update(Voucher).where(
            Voucher.id.in_(reward_codes), Voucher.revoked_at.is_(None),
            Voucher.redemptions_count == 0).values(
            revoked_at=now, revoked_reason="referral purchase returned"))
    referral.status = ReferralStatus.clawed_back.value
    referral.clawed_back_at = now
    for member_id in (referral.referee_id, referral.referrer_id):
        emit(session, type=CLAWED_BACK_EVENT, merchant_id=referral.merchant_id,
             member_id=member_id, occurred_at=occurred_at,
             payload={"referral_id": str(referral.id), "member_id": str(member_id),
                      "transaction_id": str(transaction_id)})
    session.flush()
    return referral.id


def _month(moment: datetime) -> str:
    return moment.strftime("%Y-%m")

