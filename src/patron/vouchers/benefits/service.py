"""Benefit rules, and the benefits a purchase earns or a return undoes.

Inside the POS commit (``on_purchase``), for each live rule the purchase counts towards,
in rule-id order (the lock order):
1. record what the purchase counted (``benefit_contributions``), so a return takes back
   exactly that and nothing for a rule that did not count it;
2. add it to the member's count with one upsert that returns the new count
   (``INSERT … ON CONFLICT DO UPDATE SET count = count + n RETURNING count``). The row
   lock it takes serialises concurrent purchases of the member at this rule, and each
   sees the count the previous one left: the counts ``(after - n, after]`` are this
   purchase's alone, and so are the crossings in them;
3. issue one personal single-use code per crossing not already held (a used benefit keeps
   its crossing after a return, docs/vouchers.md), through
   ``vouchers.service.insert_codes(source="benefit")``; ``issued_benefits`` is unique per
   (rule, member, crossing) among live benefits, so the database refuses a second one;
4. an outbox ``benefit.issued`` per code.

A return (``on_return``) takes back what the purchase counted, in rule-id order, with one
``UPDATE … SET count = count - n RETURNING count``; the crossings above the new count are
undone: an unused code is revoked (and its crossing freed), a used or held one stays.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import Session

from patron.db import insert_for, rowcount
from patron.errors import Forbidden
from patron.kit.clock import utcnow
from patron.members.models import Membership
from patron.members.service import get_member
from patron.notify.outbox import EventType, emit
from patron.pos.models import PosTransactionLine
from patron.pos.schemas import IssuedBenefitRead
from patron.programs.rules import normalise_category
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal
from patron.vouchers import codes
from patron.vouchers import service as vouchers
from patron.vouchers.benefits import rules
from patron.vouchers.benefits.errors import (
    BenefitRuleNotFound,
    InvalidBenefitFilter,
    InvalidBenefitOffer,
    InvalidBenefitOwner,
    InvalidBenefitThreshold,
)
from patron.vouchers.benefits.models import (
    BenefitContribution,
    BenefitProgress,
    BenefitRule,
    IssuedBenefit,
)
from patron.vouchers.benefits.rules import Measure, Mode
from patron.vouchers.benefits.schemas import (
    BenefitProgressRead,
    BenefitRuleRead,
    BenefitRuleWrite,
)
from patron.vouchers.errors import OfferNotFound
from patron.vouchers.models import Offer, Voucher

REVOKED_REASON = "benefit undone by a return"


# --- rules ------------------------------------------------------------------------------

def _owner(session: Session, actor: Principal, data: BenefitRuleWrite) -> Merchant | None:
    """The merchant whose purchases count; None for a coalition (miles) rule."""
    actor.require(Role.operator, Role.merchant)
    if actor.role == Role.merchant:
        if data.merchant_id is not None and data.merchant_id != actor.merchant_id:
            raise BenefitRuleNotFound("no such merchant", field="merchant_id")
        if data.measure == Measure.miles:
            raise Forbidden("coalition miles rules are the operator's", field="measure")
        merchant = session.get(Merchant, actor.merchant_id)
        assert merchant is not None
        return merchant
    if data.measure == Measure.miles:
        if data.merchant_id is not None:
            raise InvalidBenefitOwner("a miles rule belongs to the coalition (miles count at "
                                      "every merchant): leave merchant_id out",
                                      field="merchant_id")
        return None
    if data.merchant_id is None:
        raise InvalidBenefitOwner(f"a {data.measure.value} rule counts at one merchant: "
                                  f"give merchant_id", field="merchant_id")
    merchant = session.get(Merchant, data.merchant_id)
    if merchant is None:
        raise BenefitRuleNotFound("no such merchant", field="merchant_id")
    return merchant


def _check_definition(data: BenefitRuleWrite) -> None:
    if not 1 <= data.threshold <= rules.MAX_THRESHOLD:
        raise InvalidBenefitThreshold(f"threshold must be 1 to {rules.MAX_THRESHOLD}",
                                      field="threshold")
    if data.sku is not None or data.category is not None:
        field = "sku" if data.sku is not None else "category"
        if data.measure not in rules.STAMP_MEASURES:
            raise InvalidBenefitFilter(f"a {data.measure.value} rule counts everything; sku "
                                       f"and category are for purchases and items rules",
                                       field=field)
        if data.sku is not None and data.category is not None:
            raise InvalidBenefitFilter("count one SKU or one category, not both",
                                       field="category")


def _offer(session: Session, actor: Principal, data: BenefitRuleWrite,
           merchant: Merchant | None) -> Offer:
    offer = session.get(Offer, data.offer_id)
    # A merchant key sees only its own offers: others' are unknown to it.
    if offer is None or (actor.role == Role.merchant and offer.merchant_id != actor.merchant_id):
        raise OfferNotFound("no such offer", field="offer_id")
    owner = merchant.id if merchant is not None else None
    if offer.merchant_id != owner:
        raise InvalidBenefitOffer("a merchant's rule issues that merchant's offer; a "
                                  "coalition rule a coalition offer", field="offer_id")
    if offer.revoked_at is not None:
        raise InvalidBenefitOffer("the offer is revoked", field="offer_id")
    return offer


def create_rule(session: Session, *, actor: Principal, data: BenefitRuleWrite) -> BenefitRule:
    merchant = _owner(session, actor, data)
    _check_definition(data)
    offer = _offer(session, actor, data, merchant)
    rule = BenefitRule(
        id=uuid.uuid4(), merchant_id=merchant.id if merchant else None, name=data.name,
        measure=data.measure.value, mode=data.mode.value, threshold=data.threshold,
        offer_id=offer.id, sku=data.sku,
        category=normalise_category(data.category) if data.category is not None else None,
        created_at=utcnow())
    session.add(rule)
    session.flush()
    return rule


def _visible_rule(session: Session, actor: Principal, rule_id: uuid.UUID) -> BenefitRule:
    """The rule if the caller's tenant holds it (404 otherwise, before the role: a key
    learns nothing about other tenants' rules), then the role."""
    rule = session.get(BenefitRule, rule_id)
    if rule is None or not actor.holds(rule.merchant_id):
        raise BenefitRuleNotFound("no such benefit rule")
    actor.require(Role.operator, Role.merchant)
    return rule


def _issued_counts(session: Session, rule_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not rule_ids:
        return {}
    rows = session.execute(
        select(IssuedBenefit.rule_id, func.count())
        .where(IssuedBenefit.rule_id.in_(rule_ids), IssuedBenefit.revoked_at.is_(None))
        .group_by(IssuedBenefit.rule_id))
    return {rule_id: int(count) for rule_id, count in rows}


def rule_read(rule: BenefitRule, issued: int) -> BenefitRuleRead:
    return BenefitRuleRead(
        id=rule.id, merchant_id=rule.merchant_id, name=rule.name,
        measure=Measure(rule.measure), mode=Mode(rule.mode), threshold=rule.threshold,
        offer_id=rule.offer_id, sku=rule.sku, category=rule.category,
        active=rule.deactivated_at is None, issued=issued, created_at=rule.created_at,
        deactivated_at=rule.deactivated_at)


def read_rule(session: Session, rule: BenefitRule) -> BenefitRuleRead:
    return rule_read(rule, _issued_counts(session, [rule.id]).get(rule.id, 0))


def get_rule(session: Session, *, actor: Principal, rule_id: uuid.UUID) -> BenefitRuleRead:
    return read_rule(session, _visible_rule(session, actor, rule_id))


def list_rules(session: Session, *, actor: Principal) -> list[BenefitRuleRead]:
    """The merchant's rules (the operator: every rule, the coalition's included)."""
    actor.require(Role.operator, Role.merchant)
    query = select(BenefitRule).order_by(BenefitRule.created_at, BenefitRule.id)
    if actor.role == Role.merchant:
        query = query.where(BenefitRule.merchant_id == actor.merchant_id)
    found = list(session.scalars(query))
    issued = _issued_counts(session, [rule.id for rule in found])
    return [rule_read(rule, issued.get(rule.id, 0)) for rule in found]


def deactivate_rule(session: Session, *, actor: Principal,
                    rule_id: uuid.UUID) -> BenefitRuleRead:
    """Purchases stop counting towards the rule from now on; benefits already issued stay
    (and a return still takes back what earlier purchases counted). Deactivating again
    changes nothing."""
    rule = _visible_rule(session, actor, rule_id)
    session.execute(update(BenefitRule).where(BenefitRule.id == rule.id,
                                              BenefitRule.deactivated_at.is_(None))
                    .values(deactivated_at=utcnow()))
    session.refresh(rule)
    return read_rule(session, rule)


def member_progress(session: Session, *, actor: Principal,
                    member_id: uuid.UUID) -> list[BenefitProgressRead]:
    """The member's place on every active rule that counts for them: for a merchant's keys
    their own merchant's rules and the coalition's; for the operator and the member
    themselves every merchant the member belongs to, and the coalition's. Rules without a
    count yet show 0."""
    member = get_member(session, actor=actor, member_id=member_id)
    merchants: list[uuid.UUID] | None
    if actor.role in (Role.operator, Role.member):
        merchants = list(session.scalars(select(Membership.merchant_id).where(
            Membership.member_id == member.id)))
    else:
        merchants = [actor.merchant_id] if actor.merchant_id else []
    rows = session.execute(
        select(BenefitRule, Offer.name, Merchant.name, BenefitProgress.count)
        .join(Offer, Offer.id == BenefitRule.offer_id)
        .outerjoin(Merchant, Merchant.id == BenefitRule.merchant_id)
        .outerjoin(BenefitProgress, (BenefitProgress.rule_id == BenefitRule.id)
                   & (BenefitProgress.member_id == member.id))
        .where(BenefitRule.deactivated_at.is_(None),
               BenefitRule.merchant_id.in_(merchants) | BenefitRule.merchant_id.is_(None))
        .order_by(Merchant.name, BenefitRule.created_at, BenefitRule.id))
    answer = []
    for rule, offer_name, merchant_name, count in rows:
        mode = Mode(rule.mode)
        filled, completed = rules.position(mode, threshold=rule.threshold,
                                           count=int(count or 0))
        answer.append(BenefitProgressRead(
            rule_id=rule.id, merchant_id=rule.merchant_id, merchant_name=merchant_name,
            name=rule.name, measure=Measure(rule.measure), mode=mode,
            threshold=rule.threshold, count=int(count or 0), filled=filled,
            completed=completed, offer_name=offer_name, created_at=rule.created_at))
    return answer


# --- a purchase -------------------------------------------------------------------------

def _filter(rule: BenefitRule) -> rules.Filter:
    return rules.Filter(sku=rule.sku, category=rule.category)


def _line(sku: str, category: str | None, quantity: int, returned: int = 0) -> rules.Line:
    return rules.Line(sku=sku, category=normalise_category(category) if category else None,
                      quantity=quantity, returned=returned)


def _add(session: Session, *, rule: BenefitRule, member_id: uuid.UUID, amount: int) -> int:
    """Adds to the member's count atomically; the count after."""
    statement = insert_for(session, BenefitProgress).values(
        rule_id=rule.id, member_id=member_id, merchant_id=rule.merchant_id, count=amount)
    statement = statement.on_conflict_do_update(
        index_elements=[BenefitProgress.rule_id, BenefitProgress.member_id],
        set_={"count": BenefitProgress.count + statement.excluded.count},
    ).returning(BenefitProgress.count)
    return int(session.execute(statement).scalar_one())


def _payload(rule: BenefitRule, benefit: IssuedBenefit, code: str, *,
             merchant_id: uuid.UUID) -> dict[str, Any]:
    return {"benefit_id": str(benefit.id), "rule_id": str(rule.id),
            "offer_id": str(rule.offer_id), "measure": rule.measure, "mode": rule.mode,
            "threshold": rule.threshold, "crossing": benefit.crossing, "code": code,
            "member_id": str(benefit.member_id), "merchant_id": str(merchant_id),
            "transaction_id": str(benefit.transaction_id)}


def _issue(session: Session, *, rule: BenefitRule, offer: Offer, member_id: uuid.UUID,
           crossings: list[int], transaction_id: uuid.UUID, merchant_id: uuid.UUID,
           occurred_at: datetime, now: datetime) -> list[IssuedBenefitRead]:
    # Read under the count's row lock, which every issue and undo of this (rule, member)
    # takes first: nothing can add or revoke a benefit of it meanwhile. The unique index
    # stands behind it.
    held = set(session.scalars(select(IssuedBenefit.crossing).where(
        IssuedBenefit.rule_id == rule.id, IssuedBenefit.member_id == member_id,
        IssuedBenefit.crossing.in_(crossings), IssuedBenefit.revoked_at.is_(None))))
    new = [crossing for crossing in crossings if crossing not in held]
    if not new:
        return []
    issued_codes = vouchers.insert_codes(session, offer=offer, count=len(new),
                                         member_id=member_id, max_redemptions=1,
                                         source="benefit", now=now)
    by_code = {code: (voucher_id, valid_until) for code, voucher_id, valid_until in
               session.execute(select(Voucher.code, Voucher.id, Voucher.valid_until)
                               .where(Voucher.code.in_(issued_codes)))}
    answers = []
    for crossing, code in zip(new, issued_codes, strict=True):
        voucher_id, valid_until = by_code[code]
        benefit = IssuedBenefit(id=uuid.uuid4(), rule_id=rule.id, member_id=member_id,
                                   merchant_id=rule.merchant_id, crossing=crossing,
                                   voucher_id=voucher_id, transaction_id=transaction_id,
                                   issued_at=now)
        session.add(benefit)
        display = codes.display(code)
        answers.append(IssuedBenefitRead(code=display, offer_id=offer.id, name=offer.name,
                                     rule_id=rule.id, crossing=crossing,
                                     valid_until=valid_until))
        session.flush()
        emit(session, type=EventType.benefit_issued, merchant_id=merchant_id,
             member_id=member_id, occurred_at=occurred_at,
             payload={**_payload(rule, benefit, display, merchant_id=merchant_id),
                      "valid_until": valid_until.isoformat() if valid_until else None})
    return answers


def _live_rules(merchant_id: uuid.UUID, *, miles: bool) -> Select[BenefitRule, Offer]:
    """The live rules a purchase at this merchant counts towards: the merchant's own, and
    the coalition's miles rules when it earned miles."""
    owners = [BenefitRule.merchant_id == merchant_id]
    if miles:
        owners.append(and_(BenefitRule.merchant_id.is_(None),
                           BenefitRule.measure == Measure.miles.value))
    return (select(BenefitRule, Offer).join(Offer, Offer.id == BenefitRule.offer_id)
            .where(or_(*owners), BenefitRule.deactivated_at.is_(None),
                   Offer.revoked_at.is_(None)))


def live_rules(session: Session, *, merchant_id: uuid.UUID,
               miles: bool) -> list[tuple[BenefitRule, Offer]]:
    """The live rules a purchase at this merchant counts towards (``miles``: it earned
    miles), in the order they are counted."""
    return [(rule, offer) for rule, offer in session.execute(
        _live_rules(merchant_id, miles=miles).order_by(BenefitRule.id))]


def counted_towards(live: Sequence[tuple[BenefitRule, Offer]], *, points_earned: int,
                    miles_earned: int, lines: Sequence[tuple[str, str | None, int]]
                    ) -> list[tuple[BenefitRule, Offer, int]]:
    """Each live rule the purchase counts towards, with what it counts (more than 0).
    ``lines``: (sku, category as sent, quantity) of each purchase line. Pure: also what
    the set-wise offline replay asks before it takes a sale (docs/offline.md)."""
    purchase_lines = [_line(sku, category, quantity) for sku, category, quantity in lines]
    found = []
    for rule, offer in live:
        amount = rules.counted(Measure(rule.measure), points=points_earned, miles=miles_earned,
                               lines=purchase_lines, only=_filter(rule))
        if amount > 0:
            found.append((rule, offer, amount))
    return found


def on_purchase(session: Session, *, merchant_id: uuid.UUID, member_id: uuid.UUID,
                transaction_id: uuid.UUID, points_earned: int, miles_earned: int,
                lines: Sequence[tuple[str, str | None, int]], occurred_at: datetime,
                now: datetime) -> list[IssuedBenefitRead]:
    """Count an identified member's purchase towards every live rule it meets and issue
    the benefits of the thresholds it crosses; inside the POS commit, after the earn.

    ``lines``: (sku, category as sent, quantity) of each purchase line.
    """
    live = live_rules(session, merchant_id=merchant_id, miles=bool(miles_earned))
    if not live:
        return []
    issued: list[IssuedBenefitRead] = []
    for rule, offer, amount in counted_towards(live, points_earned=points_earned,
                                               miles_earned=miles_earned, lines=lines):
        session.add(BenefitContribution(transaction_id=transaction_id, rule_id=rule.id,
                                        member_id=member_id, merchant_id=merchant_id,
                                        counted=amount, taken_back=0))
        after = _add(session, rule=rule, member_id=member_id, amount=amount)
        span = rules.crossings(Mode(rule.mode), threshold=rule.threshold, low=after - amount,
                               high=after)
        crossings = rules.to_issue(span)
        if crossings:
            issued += _issue(session, rule=rule, offer=offer, member_id=member_id,
                             crossings=crossings, transaction_id=transaction_id,
                             merchant_id=merchant_id, occurred_at=occurred_at, now=now)
    session.flush()
    return issued


# --- a return ---------------------------------------------------------------------------

def _take_back(session: Session, *, contribution: BenefitContribution, amount: int) -> bool:
    """Marks ``amount`` of the purchase's contribution taken back; False when it would
    exceed what the purchase counted (a stamp already taken back)."""
    return bool(rowcount(session.execute(
        update(BenefitContribution).where(
            BenefitContribution.transaction_id == contribution.transaction_id,
            BenefitContribution.rule_id == contribution.rule_id,
            BenefitContribution.taken_back + amount <= BenefitContribution.counted)
        .values(taken_back=BenefitContribution.taken_back + amount),
        execution_options={"synchronize_session": False})))


def _revoke_unused(session: Session, *, benefit: IssuedBenefit, return_id: uuid.UUID,
                   now: datetime) -> str | None:
    """Revokes the benefit's code if nobody has used or holds it; its display form.

    A code that another transaction has locked right now (a purchase or a hold using it)
    is skipped, not waited for: it counts as used. Waiting could deadlock, since that
    purchase takes the member's counts after its codes and this return the other way
    round."""
    unused = session.scalar(
        select(Voucher.code).where(Voucher.id == benefit.voucher_id, Voucher.revoked_at.is_(None),
                                   Voucher.redemptions_count == 0)
        .with_for_update(skip_locked=True))
    if unused is None:
        return None
    revoked = session.execute(
        update(Voucher).where(Voucher.id == benefit.voucher_id, Voucher.revoked_at.is_(None),
                              Voucher.redemptions_count == 0)
        .values(revoked_at=now, revoked_reason=REVOKED_REASON),
        execution_options={"synchronize_session": False})
    if not rowcount(revoked):
        return None
    session.execute(update(IssuedBenefit).where(IssuedBenefit.id == benefit.id)
                    .values(revoked_at=now, revoked_by_return_id=return_id),
                    execution_options={"synchronize_session": False})
    return codes.display(unused)


def on_return(session: Session, *, transaction_id: uuid.UUID, return_id: uuid.UUID,
              merchant_id: uuid.UUID, member_id: uuid.UUID, returned: Mapping[int, int],
              points_clawed_back: int, miles_clawed_back: int, occurred_at: datetime,
              now: datetime) -> list[str]:
    """Take back what the purchase counted, as far as this return undoes it; revoke the
    unused benefits of the crossings undone. The codes revoked (display forms).

    ``returned``: units this return brings back, by line number (the lines'
    ``returned_quantity`` already counts them). Returns of one purchase are serialised by
    the caller (the purchase's row lock).
    """
    found = session.execute(
        select(BenefitContribution, BenefitRule)
        .join(BenefitRule, BenefitRule.id == BenefitContribution.rule_id)
        .where(BenefitContribution.transaction_id == transaction_id,
               BenefitContribution.taken_back < BenefitContribution.counted)
        .order_by(BenefitContribution.rule_id)
        .execution_options(populate_existing=True)).all()
    if not found:
        return []
    lines = [(_line(line.sku, line.category, line.quantity, line.returned_quantity),
              returned.get(line.line_no, 0))
             for line in session.scalars(
                 select(PosTransactionLine)
                 .where(PosTransactionLine.transaction_id == transaction_id)
                 .order_by(PosTransactionLine.line_no)
                 .execution_options(populate_existing=True))]
    revoked: list[str] = []
    for contribution, rule in found:
        amount = min(rules.taken_back(Measure(rule.measure),
                                      points_clawed_back=points_clawed_back,
                                      miles_clawed_back=miles_clawed_back, lines=lines,
                                      only=_filter(rule)),
                     contribution.counted - contribution.taken_back)
        if amount <= 0 or not _take_back(session, contribution=contribution, amount=amount):
            continue
        after = int(session.execute(
            update(BenefitProgress).where(BenefitProgress.rule_id == rule.id,
                                          BenefitProgress.member_id == member_id)
            .values(count=BenefitProgress.count - amount).returning(BenefitProgress.count),
            execution_options={"synchronize_session": False}).scalar_one())
        span = rules.crossings(Mode(rule.mode), threshold=rule.threshold, low=after,
                               high=after + amount)
        if span is None:
            continue
        undone = session.scalars(
            select(IssuedBenefit).where(
                IssuedBenefit.rule_id == rule.id, IssuedBenefit.member_id == member_id,
                IssuedBenefit.revoked_at.is_(None),
                IssuedBenefit.crossing.between(*span))
            .order_by(IssuedBenefit.crossing))
        for benefit in list(undone):
            code = _revoke_unused(session, benefit=benefit, return_id=return_id, now=now)
            if code is None:
                continue
            revoked.append(code)
            emit(session, type=EventType.benefit_revoked, merchant_id=merchant_id,
                 member_id=member_id, occurred_at=occurred_at,
                 payload={**_payload(rule, benefit, code, merchant_id=merchant_id),
                          "return_id": str(return_id)})
    session.flush()
    return revoked
