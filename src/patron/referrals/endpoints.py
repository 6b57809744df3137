from __future__ import annotations

import uuid

from fastapi import APIRouter

from patron.http import AUTHED, Caller, Db, problems
from patron.kit.clock import utcnow
from patron.members.service import get_member
from patron.referrals import service
from patron.referrals.schemas import (
    MemberReferralRead,
    ReferralProgramRead,
    ReferralProgramWrite,
)

router = APIRouter(prefix="/v1", tags=["referrals"])


@router.get("/merchants/{merchant_id}/referral-program", response_model=ReferralProgramRead,
            responses=problems(*AUTHED))
def get_referral_program(merchant_id: uuid.UUID, db: Db, caller: Caller) -> ReferralProgramRead:
    """The merchant's referral program; `configured: false` when it never set one up
    (then enrolments with a referral code are refused: `no_referral_program`)."""
    with db.read_scope() as session:
        return service.read_program(session, actor=caller, merchant_id=merchant_id)


@router.put("/merchants/{merchant_id}/referral-program", response_model=ReferralProgramRead,
            responses=problems(*AUTHED, 422))
def put_referral_program(merchant_id: uuid.UUID, data: ReferralProgramWrite, db: Db,
                         caller: Caller) -> ReferralProgramRead:
    """Replace the merchant's referral program (merchant or operator key): the rewards of
    the referrer and of the referee (points, a personal code of an offer), the minimum
    total of the qualifying purchase, the referrer's monthly cap. 422
    `invalid_referral_program`: an unknown or revoked offer, an active program that gives
    nothing."""
    with db.session_scope() as session:
        return service.put_program(session, actor=caller, merchant_id=merchant_id, data=data)


@router.get("/members/{member_id}/referral", response_model=MemberReferralRead,
            responses=problems(*AUTHED))
def get_member_referral(member_id: uuid.UUID, db: Db, caller: Caller) -> MemberReferralRead:
    """The member's referral code and link (made on the first request), their own
    referral if they were referred, and the members they referred."""
    with db.session_scope() as session:
        member = get_member(session, actor=caller, member_id=member_id)
        return service.member_referral(session, member=member, now=utcnow())
