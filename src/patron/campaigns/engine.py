"""Deciding a checkout's campaign outcomes, in the checkout's own transaction.

At ``POST /v1/pos/transactions``, once the purchase's points are booked and before the
member's stats count it, ``at_checkout`` runs the merchant's and the coalition's active
checkout campaigns for the store, highest priority first:

1. the campaign's condition on the values it reads — the purchase, the member as they came
   in (stats, scores, segment, tier, profile), the store's local time, holidays and
   weather, the stock of the SKUs it names — built once per checkout and only for the
   groups some active campaign reads;
2. the control group: a held-out member is recorded (for the uplift) and gets nothing;
3. the per-member limit (outcomes in the last ``period_days``) and the budget, taken by
   one conditional ``UPDATE campaigns SET outcomes_count = outcomes_count + 1 WHERE …
   outcomes_count < max_outcomes``: a campaign with budget for 50 issues 50, however many
   checkouts qualify at once;
4. the actions: a personal single-use code of the offer into the member's wallet, bonus
   points or a multiplier on this purchase's points (ledger entries), a message; each
   outcome is written to the outbox (``campaign.outcome``) for the member's phone and
   returned to the register in ``offers``;
5. an exclusive campaign that fired ends the evaluation.

``preview`` answers ``POST /v1/pos/quote``: the same evaluation with nothing taken or
written — the offers the basket would earn now.

The active campaigns' definitions are cached per process and the set that is active is
read on every checkout (``campaigns.live``): a pause, a resume or a new campaign is seen
by the next checkout in every process.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from patron.campaigns import live
from patron.campaigns.conditions import Condition
from patron.campaigns.context import Line, purchase_fields
from patron.campaigns.control import held_out
from patron.campaigns.environment import environment_fields, inventory_fields
from patron.campaigns.live import ActiveCampaign
from patron.campaigns.models import Campaign, CampaignOutcome, StoreWeather, Trigger
from patron.members.models import Member
from patron.notify.outbox import EventType, emit
from patron.vouchers import service as vouchers
from patron.vouchers.models import Offer

BP_ONE = 10_000
OUTCOME_EVENT = EventType.campaign_outcome


@dataclass(frozen=True)
class Checkout:
    """What a checkout tells the engine."""

    merchant_id: uuid.UUID
    merchant_number: int
    country: str
    currency: str
    store_id: uuid.UUID
    timezone: str
    member_id: uuid.UUID
    lines: Sequence[Line]
    total_minor: int
    channel: str
    offers_used: Sequence[str]
    points_earned: int
    tier: str | None
    occurred_at: datetime


@dataclass(frozen=True)
class Decision:
    """The register's ``offers`` and, when asked, why each campaign did or did not."""

    offers: list[dict[str, Any]]
    checks: list[dict[str, Any]]


class PointsGranter(Protocol):
    """How the checkout books a campaign's points (its program's expiry, its ledger)."""

    def __call__(self, *, points: int, idempotency_key: str, reason: str) -> None: ...


Act = Callable[[ActiveCampaign], tuple[str, dict[str, Any] | None]]


def _member_fields(session: Session, checkout: Checkout, now: datetime) -> dict[str, Any]:
    return live.member_fields(session, member_id=checkout.member_id,
                              merchant_id=checkout.merchant_id, store_id=checkout.store_id,
                              tier=checkout.tier, now=now)


def context(session: Session, checkout: Checkout, conditions: Sequence[Condition],
            now: datetime, *, live_weather: bool = True,
            cache: dict[Any, dict[str, Any]] | None = None,
            reads: tuple[frozenset[str], frozenset[str]] | None = None) -> dict[str, Any]:
    """The values the conditions read, built only for the groups some condition reads.
    ``live_weather`` False: the weather is unknown (a replay of past purchases). ``cache``
    keeps the member's and the store stock's values across calls (a replay of many
    purchases reads each once). ``reads``: the groups and inventory SKUs the conditions
    read, when the caller knows them already (``live.reads``)."""
    groups, skus = live.reads(conditions) if reads is None else reads
    values = purchase_fields(checkout.lines, total_minor=checkout.total_minor,
                             channel=checkout.channel, offers_used=checkout.offers_used)
    cache = {} if cache is None else cache
    if "member" in groups:
        member = ("member", checkout.member_id, checkout.merchant_id)
        if member not in cache:
            cache[member] = _member_fields(session, checkout, now)
        values.update(cache[member])
    if "env" in groups:
        weather = session.get(StoreWeather, checkout.store_id) if live_weather else None
        values.update(environment_fields(
            store_id=checkout.store_id, timezone=checkout.timezone,
            country=checkout.country, now=checkout.occurred_at, weather=weather))
    if "inventory" in groups:
        stock = ("inventory", checkout.store_id)
        if stock not in cache:
            cache[stock] = inventory_fields(session, store_id=checkout.store_id, skus=skus)
        values.update(cache[stock])
    return values


def _within_member_limit(session: Session, campaign: ActiveCampaign, member_id: uuid.UUID,
                         now: datetime) -> bool:
    if campaign.per_member_count is None:
        return True
    since = now - timedelta(days=campaign.per_member_days or 1)
    given = session.scalar(select(func.count()).select_from(CampaignOutcome).where(
        CampaignOutcome.campaign_id == campaign.id, CampaignOutcome.member_id == member_id,
        CampaignOutcome.held_out.is_(False), CampaignOutcome.created_at >= since)) or 0
    return given < campaign.per_member_count


def _take_budget(session: Session, campaign: ActiveCampaign) -> bool:
    """One outcome of the campaign's budget, atomically; False when it is spent."""
    taken = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id,
               or_(Campaign.max_outcomes.is_(None),
                   Campaign.outcomes_count < Campaign.max_outcomes))
        .values(outcomes_count=Campaign.outcomes_count + 1)
        .execution_options(synchronize_session=False))
    return bool(taken.rowcount)  # type: ignore[attr-defined]


def _refused(session: Session, campaign: ActiveCampaign, member_id: uuid.UUID,
             now: datetime, *, take_budget: bool, outcomes_count: int = 0) -> str | None:
    """Why the campaign gives this member nothing now (its condition held), or None.
    ``take_budget``: take one outcome of the budget (the commit); else only read it
    (``outcomes_count``, as read with the active campaigns)."""
    if held_out(campaign_id=campaign.id, member_id=member_id,
                share_bp=campaign.control_share_bp):
        return "held_out"
    if take_budget and campaign.per_member_count is not None:
        # The member's checkouts at several tills at once take turns from here to their
        # commits, so each counts the outcomes of those before it: the limit holds.
        session.execute(select(Member.id).where(Member.id == member_id)
                        .with_for_update(key_share=True))
    if not _within_member_limit(session, campaign, member_id, now):
        return "member_limit_reached"
    budget_left = (_take_budget(session, campaign) if take_budget else
                   campaign.max_outcomes is None
                   or outcomes_count < campaign.max_outcomes)
    return None if budget_left else "budget_spent"


def _check(campaign: ActiveCampaign, verdict: str, condition: Any = None) -> dict[str, Any]:
    check: dict[str, Any] = {"campaign_id": str(campaign.id), "name": campaign.name,
                             "result": verdict}
    if condition is not None:
        check["condition"] = condition
    return check


def active_at_checkout(session: Session, *, merchant_id: uuid.UUID, store_id: uuid.UUID,
                       now: datetime) -> live.Active:
    """The checkout campaigns active now at the store."""
    return live.active(session, merchant_id=merchant_id, store_id=store_id,
                       trigger=Trigger.checkout, now=now)


def _values(session: Session, checkout: Checkout, found: live.Active,
            now: datetime) -> dict[str, Any]:
    return context(session, checkout, [campaign.condition for campaign in found.campaigns],
                   now, reads=(found.groups, found.inventory_skus))


def any_holds(session: Session, checkout: Checkout, *, now: datetime,
              found: live.Active) -> bool:
    """Whether some active campaign's condition holds for this checkout: then
    ``at_checkout`` has an outcome to decide and write (a held-out member's included).
    Reads only; what the set-wise offline replay asks before it takes a sale
    (docs/offline.md)."""
    if not found.campaigns:
        return False
    values = _values(session, checkout, found, now)
    return any(campaign.condition.holds(values) for campaign in found.campaigns)


def evaluate(session: Session, checkout: Checkout, *, now: datetime, explain: bool,
             act: Act, found: live.Active | None = None) -> Decision:
    """Run the active checkout campaigns (``found``, else read now); ``act(campaign)``
    performs one that fired and returns its offer (or None when its limits refused
    it)."""
    if found is None:
        found = active_at_checkout(session, merchant_id=checkout.merchant_id,
                                   store_id=checkout.store_id, now=now)
    campaigns = found.campaigns
    if not campaigns:
        return Decision(offers=[], checks=[])
    conditions = [campaign.condition for campaign in campaigns]
    values = _values(session, checkout, found, now)
    offers: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    for campaign, condition in zip(campaigns, conditions, strict=True):
        held = condition.holds(values)
        why = condition.explain(values).as_json() if explain else None
        if not held:
            if explain:
                checks.append(_check(campaign, "condition_failed", why))
            continue
        verdict, offer = act(campaign)
        if explain:
            checks.append(_check(campaign, verdict, why))
        if offer is not None:
            offers.append(offer)
            if campaign.exclusive:
                break
    return Decision(offers=offers, checks=checks)


def preview(session: Session, checkout: Checkout, *, now: datetime,
            explain: bool) -> Decision:
    """The offers the basket would earn now; nothing is taken or written."""
    found = active_at_checkout(session, merchant_id=checkout.merchant_id,
                                   store_id=checkout.store_id, now=now)

    def act(campaign: ActiveCampaign) -> tuple[str, dict[str, Any] | None]:
        refused = _refused(session, campaign, checkout.member_id, now, take_budget=False,
                           outcomes_count=found.outcomes_count[campaign.id])
        if refused is not None:
            return refused, None
        return "would_fire", {"campaign_id": str(campaign.id), "name": campaign.name,
                              "actions": list(campaign.actions)}

    return evaluate(session, checkout, now=now, explain=explain, act=act, found=found)


def at_checkout(session: Session, checkout: Checkout, *, transaction_id: uuid.UUID,
                now: datetime, grant_points: PointsGranter, explain: bool = False
                ) -> Decision:
    """Decide and perform the checkout's outcomes (the caller commits)."""
    def act(campaign: ActiveCampaign) -> tuple[str, dict[str, Any] | None]:
        outcome = CampaignOutcome(
            id=uuid.uuid4(), campaign_id=campaign.id, merchant_id=checkout.merchant_id,
            member_id=checkout.member_id, transaction_id=transaction_id, occasion=None,
            held_out=False, voucher_id=None, points=0, created_at=now)
        return give(session, campaign, outcome, merchant_number=checkout.merchant_number,
                    points_earned=checkout.points_earned,
                    key=f"campaign:{campaign.id}:{transaction_id}",
                    occurred_at=checkout.occurred_at, now=now, grant_points=grant_points,
                    about={"transaction_id": str(transaction_id)})

    return evaluate(session, checkout, now=now, explain=explain, act=act)


def give(session: Session, campaign: ActiveCampaign, outcome: CampaignOutcome, *,
         merchant_number: int, points_earned: int, key: str, occurred_at: datetime,
         now: datetime, grant_points: PointsGranter,
         about: dict[str, str]) -> tuple[str, dict[str, Any] | None]:
    """The gate (control group, member limit, budget) and, past it, the actions of a
    campaign whose condition held: the verdict, and the offer given (None when refused).
    ``key`` makes the points idempotent; ``about`` goes into the outbox event."""
    refused = _refused(session, campaign, outcome.member_id, now, take_budget=True)
    if refused == "held_out":
        outcome.held_out = True  # recorded: the control group's purchases are counted
        session.add(outcome)
    if refused is not None:
        return refused, None
    offer = _perform(session, campaign, outcome, merchant_number=merchant_number,
                     points_earned=points_earned, key=key, now=now, grant_points=grant_points)
    session.add(outcome)
    session.flush()
    emit(session, type=OUTCOME_EVENT, merchant_id=outcome.merchant_id,
         member_id=outcome.member_id, occurred_at=occurred_at,
         payload={**offer, "member_id": str(outcome.member_id), **about})
    return "fired", offer


def _perform(session: Session, campaign: ActiveCampaign, outcome: CampaignOutcome, *,
             merchant_number: int, points_earned: int, key: str, now: datetime,
             grant_points: PointsGranter) -> dict[str, Any]:
    given: dict[str, Any] = {"campaign_id": str(campaign.id), "name": campaign.name}
    for index, action in enumerate(campaign.actions):
        kind = action["type"]
        if kind == "issue_voucher":
            offer = session.get(Offer, uuid.UUID(action["offer_id"]))
            if offer is None or offer.revoked_at is not None:
                continue  # revoked since the campaign was written: nothing to give
            outcome.voucher_id, given["voucher"] = vouchers.issue_personal(
                session, offer=offer, member_id=outcome.member_id,
                merchant_number=merchant_number, source="campaign", now=now)
        elif kind in ("bonus_points", "points_multiplier"):
            points = (action["points"] if kind == "bonus_points" else
                      points_earned * (action["multiplier_bp"] - BP_ONE) // BP_ONE)
            if points > 0:
                grant_points(points=points, idempotency_key=f"{key}:{index}",
                             reason=f"campaign {campaign.name}")
                outcome.points += points
                given["points"] = given.get("points", 0) + points
        elif kind == "message":
            given["message"] = action["text"]
    return given
