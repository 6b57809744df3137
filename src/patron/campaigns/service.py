"""Writing and reading campaigns. A campaign is checked whole before anything is stored:
its condition tree (``conditions.compile_condition``), its actions' offers, its stores
and its dates; every problem is a 422 pointing at its place."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.campaigns.conditions import compile_condition
from patron.campaigns.models import Campaign, CampaignStatus, Trigger
from patron.campaigns.schemas import CampaignRead, CampaignWrite, IssueVoucher, PerMember
from patron.errors import InvalidInput, NotFound
from patron.kit.clock import utcnow
from patron.tenancy.models import Merchant, Role, Store
from patron.tenancy.service import Principal
from patron.vouchers.models import Offer


class InvalidCampaign(InvalidInput):
    code = "invalid_campaign"
    title = "Invalid campaign"


class CampaignNotFound(NotFound):
    title = "No such campaign"


def _refuse(loc: list[str | int], message: str, kind: str) -> InvalidCampaign:
    return InvalidCampaign(f"{'.'.join(str(part) for part in loc)}: {message}",
                           errors=[{"loc": loc, "msg": message, "type": kind}])


def _owner(session: Session, actor: Principal, data: CampaignWrite) -> uuid.UUID | None:
    actor.require(Role.operator, Role.merchant)
    if actor.role == Role.merchant:
        if data.merchant_id is not None and data.merchant_id != actor.merchant_id:
            raise _refuse(["body", "merchant_id"], "a merchant key writes its own "
                          "merchant's campaigns", "forbidden_merchant")
        return actor.merchant_id
    if data.merchant_id is not None and session.get(Merchant, data.merchant_id) is None:
        raise _refuse(["body", "merchant_id"], "no such merchant", "unknown_merchant")
    return data.merchant_id


def _purchase_fields(node: Any, loc: list[str | int]) -> list[tuple[list[str | int], str]]:
    """Where a (valid) condition tree reads a ``purchase.*`` field, and which."""
    if not isinstance(node, dict):
        return []
    found: list[tuple[list[str | int], str]] = []
    for combinator in ("all", "any"):
        for index, child in enumerate(node.get(combinator) or []):
            found += _purchase_fields(child, [*loc, combinator, index])
    if "not" in node:
        found += _purchase_fields(node["not"], [*loc, "not"])
    field = node.get("field")
    if isinstance(field, str) and field.startswith("purchase."):
        found.append(([*loc, "field"], field))
    return found


def _check_trigger(data: CampaignWrite) -> None:
    """What a trigger without a purchase cannot use, and the schedule only a schedule
    campaign has."""
    scheduled = data.trigger == Trigger.schedule
    if scheduled and data.schedule is None:
        raise _refuse(["body", "schedule"], "a schedule campaign says when it runs",
                      "missing_schedule")
    if not scheduled and data.schedule is not None:
        raise _refuse(["body", "schedule"], f"a {data.trigger.value} campaign runs on its "
                      "occasion, not on a schedule", "unexpected_schedule")
    if data.trigger == Trigger.checkout:
        return
    for loc, field in _purchase_fields(data.conditions, ["body", "conditions"]):
        raise _refuse(loc, f"a {data.trigger.value} campaign has no purchase to read "
                      f"{field} from", "no_purchase")
    for index, action in enumerate(data.actions):
        if action.type == "points_multiplier":
            raise _refuse(["body", "actions", index, "type"], f"a {data.trigger.value} "
                          "campaign has no purchase's points to multiply", "no_purchase")


def create_campaign(session: Session, *, actor: Principal, data: CampaignWrite) -> Campaign:
    merchant_id = _owner(session, actor, data)
    compile_condition(data.conditions, loc=("body", "conditions"))
    _check_trigger(data)
    for index, action in enumerate(data.actions):
        if isinstance(action, IssueVoucher):
            offer = session.get(Offer, action.offer_id)
            # A merchant's campaign issues its own offers or the coalition's; the
            # coalition's, the coalition's only.
            if offer is None or offer.merchant_id not in (None, merchant_id):
                raise _refuse(["body", "actions", index, "offer_id"],
                              f"no such offer: {action.offer_id}", "unknown_offer")
            if offer.revoked_at is not None:
                raise _refuse(["body", "actions", index, "offer_id"],
                              "the offer is revoked", "revoked_offer")
    for index, store_id in enumerate(data.store_ids):
        store = session.get(Store, store_id)
        if store is None or merchant_id is None or store.merchant_id != merchant_id:
            raise _refuse(["body", "store_ids", index], "no such store of this merchant",
                          "unknown_store")
    if data.valid_from and data.valid_until and data.valid_until <= data.valid_from:
        raise _refuse(["body", "valid_until"], "must be after valid_from", "invalid_window")
    if data.valid_until and data.valid_until <= utcnow():
        raise _refuse(["body", "valid_until"], "is already past: a campaign that has ended "
                      "could never run; give a time in the future", "already_ended")
    campaign = Campaign(
        id=uuid.uuid4(), merchant_id=merchant_id, name=data.name,
        trigger=data.trigger.value, status=data.status.value, conditions=data.conditions,
        actions=[action.model_dump(mode="json") for action in data.actions],
        store_ids=sorted({str(store_id) for store_id in data.store_ids}),
        priority=data.priority, exclusive=data.exclusive,
        per_member_count=data.per_member.count if data.per_member else None,
        per_member_days=data.per_member.period_days if data.per_member else None,
        max_outcomes=data.max_outcomes, outcomes_count=0,
        control_share_bp=data.control_share_bp, valid_from=data.valid_from,
        valid_until=data.valid_until,
        schedule=data.schedule.model_dump() if data.schedule else None, created_at=utcnow())
    session.add(campaign)
    session.flush()
    return campaign


def visible_campaign(session: Session, actor: Principal, campaign_id: uuid.UUID) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or not actor.holds(campaign.merchant_id):
        raise CampaignNotFound("no such campaign")
    actor.require(Role.operator, Role.merchant)
    return campaign


def list_campaigns(session: Session, *, actor: Principal) -> Sequence[Campaign]:
    actor.require(Role.operator, Role.merchant)
    query = select(Campaign).order_by(Campaign.created_at, Campaign.id)
    if actor.role != Role.operator:
        query = query.where(Campaign.merchant_id == actor.merchant_id)
    return session.scalars(query).all()


def set_status(session: Session, *, actor: Principal, campaign_id: uuid.UUID,
               status: CampaignStatus) -> Campaign:
    campaign = visible_campaign(session, actor, campaign_id)
    campaign.status = status.value
    session.flush()
    return campaign


def to_read(campaign: Campaign) -> CampaignRead:
    data: dict[str, Any] = {
        column: getattr(campaign, column) for column in (
            "id", "merchant_id", "name", "trigger", "status", "store_ids", "conditions",
            "actions", "max_outcomes", "outcomes_count", "priority", "exclusive",
            "control_share_bp", "valid_from", "valid_until", "schedule", "created_at")}
    data["per_member"] = (None if campaign.per_member_count is None else PerMember(
        count=campaign.per_member_count, period_days=campaign.per_member_days or 1))
    return CampaignRead.model_validate(data)
