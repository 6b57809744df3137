from __future__ import annotations

import uuid

from fastapi import APIRouter

from patron.http import AUTHED, Caller, Db, NoBody, PageQuery, problems
from patron.kit.pagination import Page, by_creation
from patron.vouchers.benefits import service
from patron.vouchers.benefits.schemas import (
    BenefitProgressRead,
    BenefitRuleRead,
    BenefitRuleWrite,
)

router = APIRouter(prefix="/v1/benefit-rules", tags=["benefits"])
members_router = APIRouter(prefix="/v1/members", tags=["benefits"])


@router.post("", status_code=201, response_model=BenefitRuleRead,
             responses=problems(*AUTHED, 422))
def create_rule(data: BenefitRuleWrite, db: Db, caller: Caller) -> BenefitRuleRead:
    """Create a benefit rule: when an identified member's count at the merchant (`points`
    earned, `purchases`, `items` bought — optionally of one `sku` or `category`) reaches
    `threshold` (`mode` `once`) or each multiple of it (`every`), the purchase that gets
    there puts a personal single-use code of `offer_id` into the member's wallet and lists
    it in its answer's `benefits`. A merchant key makes its own rules; coalition `miles`
    rules (miles earned at every merchant, a coalition offer) take the operator key, which
    may also make a merchant's rule by naming `merchant_id`.

    Refusals: `invalid_benefit_threshold`, `invalid_benefit_filter`,
    `invalid_benefit_owner`, `invalid_benefit_offer` (422, naming the field);
    `not_found` (an unknown or other tenant's offer or merchant, 404, naming the field);
    a merchant key asking for a miles rule is 403 `forbidden`."""
    with db.session_scope() as session:
        rule = service.create_rule(session, actor=caller, data=data)
        return service.read_rule(session, rule)


@router.get("", response_model=Page[BenefitRuleRead], responses=problems(*AUTHED))
def list_rules(db: Db, caller: Caller, paging: PageQuery) -> Page[BenefitRuleRead]:
    """The merchant's benefit rules (the operator: all, the coalition's included), oldest
    first, with the benefits each has issued."""
    with db.session_scope() as session:
        return paging.page(service.list_rules(session, actor=caller), key=by_creation)


@router.get("/{rule_id}", response_model=BenefitRuleRead, responses=problems(*AUTHED))
def get_rule(rule_id: uuid.UUID, db: Db, caller: Caller) -> BenefitRuleRead:
    """One benefit rule (the merchant's own; the operator: any)."""
    with db.session_scope() as session:
        return service.get_rule(session, actor=caller, rule_id=rule_id)


@router.post("/{rule_id}/deactivate", response_model=BenefitRuleRead,
             responses=problems(*AUTHED), dependencies=[NoBody])
def deactivate_rule(rule_id: uuid.UUID, db: Db, caller: Caller) -> BenefitRuleRead:
    """Stop the rule: purchases no longer count towards it. Benefits already issued stay
    in the wallets. Deactivating a stopped rule answers the same and changes nothing."""
    with db.session_scope() as session:
        return service.deactivate_rule(session, actor=caller, rule_id=rule_id)


@members_router.get("/{member_id}/benefit-progress", response_model=Page[BenefitProgressRead],
                    responses=problems(*AUTHED))
def member_progress(member_id: uuid.UUID, db: Db, caller: Caller,
                    paging: PageQuery) -> Page[BenefitProgressRead]:
    """The member's place on each active benefit rule, as a stamp card shows it ("7 of
    10"): a merchant's keys see their own merchant's rules and the coalition's, the
    operator every rule of the merchants the member belongs to. Who may: as for reading the
    member (docs/tenancy.md)."""
    with db.read_scope() as session:
        return paging.page(service.member_progress(session, actor=caller,
                                                   member_id=member_id),
                           key=lambda card: (card.created_at, str(card.rule_id)))
