from __future__ import annotations

import uuid

from fastapi import APIRouter, Query

from patron.errors import Forbidden, NotFound
from patron.http import AUTHED, Caller, Db, problems
from patron.kit.clock import utcnow
from patron.members.service import get_member
from patron.programs.service import member_tier
from patron.scores.schemas import MemberScoresRead
from patron.scores.service import scores_of
from patron.tenancy.models import Merchant, Role

router = APIRouter(prefix="/v1/members", tags=["scores"])


@router.get("/{member_id}/scores", response_model=MemberScoresRead,
            responses=problems(*AUTHED))
def member_scores(member_id: uuid.UUID, db: Db, caller: Caller,
                  merchant_id: uuid.UUID | None = Query(
                      default=None, description="operator keys: the merchant whose "
                      "scores to show (default: the member's home merchant)")
                  ) -> MemberScoresRead:
    """The member's scores at a merchant: recency, purchases and spend counted up to the
    last committed purchase; the RFM scores (1-5) and named segment against the
    merchant's quintile boundaries; category affinities; visits per store; tier; and the
    lifetime scores — P(alive), expected purchases and CLV over the next 90 days — as of
    the last scheduled refit (`computed_at`). A merchant or terminal key sees its own
    merchant's scores of its members."""
    with db.read_scope() as session:
        member = get_member(session, actor=caller, member_id=member_id)
        if caller.role == Role.operator:
            scope = merchant_id or member.merchant_id
        else:
            if merchant_id is not None and merchant_id != caller.merchant_id:
                raise Forbidden("a merchant key sees its own merchant's scores only")
            assert caller.merchant_id is not None
            scope = caller.merchant_id
        merchant = session.get(Merchant, scope)
        if merchant is None:
            raise NotFound("no such merchant")
        now = utcnow()
        tier = member_tier(session, merchant_id=scope, member_id=member.id, now=now).current
        return scores_of(session, member_id=member.id, merchant_id=scope,
                         currency=merchant.currency, tier=tier.name if tier else None,
                         now=now)
