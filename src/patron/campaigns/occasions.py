"""Campaigns on the triggers that are not a checkout: enrolment, a visit (a tap at a
reader), a tier change, a qualified referral, the member's birthday month and a schedule.

Each is an ``Occasion``: the trigger, the member, the merchant, a store when there is one,
and a key that names the occasion ("enrolment", "visit:<tap>", "tier:<purchase>",
"referral:<id>", "birthday:2026", "schedule:2026-12-07"). ``fire`` runs the merchant's and
the coalition's active campaigns of that trigger (those limited to stores only at one of
them) in priority order, as the checkout does: the condition on the member (as they are
now), the store's environment and stock when there is a store, the merchant's local time
otherwise; then the same gate — control group, member limit, budget — and the same actions
(``engine.give``). A campaign fires at most once per member and occasion: the outcome's
unique (campaign, member, occasion) makes a repeated occasion (a retried tap, a job run
twice) give nothing more. The outcomes go to the outbox for the member's phone.

The birthday and schedule occasions come from a scheduled job (``run_calendar``); the
others from the request that makes them happen, in its transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.campaigns import live
from patron.campaigns.engine import give
from patron.campaigns.environment import environment_fields, inventory_fields
from patron.campaigns.models import (
    Campaign,
    CampaignOutcome,
    CampaignStatus,
    StoreWeather,
    Trigger,
)
from patron.db import Database
from patron.ledger import service as ledger
from patron.members.models import Member, Membership, MemberStatus
from patron.programs import rules
from patron.programs.service import get_program, member_tier
from patron.tenancy.models import Merchant, Store

# Members read and decided per transaction by the calendar job.
CHUNK = 500
# Birthday campaigns run at this hour of the merchant's day, on the first day of the
# member's birth month the job runs then (a member gets each at most once a year).
BIRTHDAY_HOUR = 9


@dataclass(frozen=True)
class Occasion:
    trigger: Trigger
    key: str
    merchant_id: uuid.UUID
    member_id: uuid.UUID
    occurred_at: datetime
    store_id: uuid.UUID | None = None


def visit_key(visit_id: uuid.UUID) -> str:
    """The occasion of a visit (a tap at a reader): what its outcomes are found by."""
    return f"visit:{visit_id}"


def fire(session: Session, occasion: Occasion, *, now: datetime,
         only: frozenset[uuid.UUID] | None = None) -> list[dict[str, Any]]:
    """Run the occasion's campaigns (``only`` these, when given) for its member (the
    caller commits); what was given."""
    found = live.active(session, merchant_id=occasion.merchant_id,
                        store_id=occasion.store_id, trigger=occasion.trigger, now=now)
    if only is not None:
        found = live.Active(campaigns=[campaign for campaign in found.campaigns
                                       if campaign.id in only],
                            outcomes_count=found.outcomes_count)
    if not found.campaigns:
        return []
    before = set(session.scalars(select(CampaignOutcome.campaign_id).where(
        CampaignOutcome.member_id == occasion.member_id,
        CampaignOutcome.occasion == occasion.key)))
    pending = [campaign for campaign in found.campaigns if campaign.id not in before]
    if not pending:
        return []
    merchant = session.get(Merchant, occasion.merchant_id)
    store = session.get(Store, occasion.store_id) if occasion.store_id else None
    assert merchant is not None
    timezone = store.timezone if store is not None else merchant.timezone
    program = get_program(session, merchant_id=merchant.id)
    values = _values(session, occasion, found, merchant=merchant, timezone=timezone,
                     tier=_tier(session, occasion, program, found, now), now=now)
    expires_at = rules.points_expire_at(program.rules, earned_at=occasion.occurred_at,
                                        timezone=timezone)

    def grant(*, points: int, idempotency_key: str, reason: str) -> None:
        ledger.earn(session, merchant_id=merchant.id, member_id=occasion.member_id,
                    points=points, expires_at=expires_at, idempotency_key=idempotency_key,
                    source=f"campaign:{occasion.trigger.value}", reason=reason,
                    occurred_at=occasion.occurred_at)

    offers: list[dict[str, Any]] = []
    for campaign in pending:
        if not campaign.condition.holds(values):
            continue
        outcome = CampaignOutcome(
            id=uuid.uuid4(), campaign_id=campaign.id, merchant_id=merchant.id,
            member_id=occasion.member_id, transaction_id=None, occasion=occasion.key,
            held_out=False, voucher_id=None, points=0, created_at=now)
        _, offer = give(session, campaign, outcome, merchant_number=merchant.number,
                        points_earned=0,
                        key=f"campaign:{campaign.id}:{occasion.member_id}:{occasion.key}",
                        occurred_at=occasion.occurred_at, now=now, grant_points=grant,
                        about={"trigger": occasion.trigger.value, "occasion": occasion.key})
        if offer is not None:
            offers.append(offer)
            if campaign.exclusive:
                break
    return offers


def _tier(session: Session, occasion: Occasion, program: Any, found: live.Active,
          now: datetime) -> str | None:
    if "member" not in found.groups:
        return None
    progress = member_tier(session, merchant_id=occasion.merchant_id,
                           member_id=occasion.member_id, now=now, program=program)
    return progress.current.name if progress.current else None


def _values(session: Session, occasion: Occasion, found: live.Active, *, merchant: Merchant,
            timezone: str, tier: str | None, now: datetime) -> dict[str, Any]:
    """The values the campaigns read: no purchase (their conditions cannot name one)."""
    values: dict[str, Any] = {}
    if "member" in found.groups:
        values.update(live.member_fields(
            session, member_id=occasion.member_id, merchant_id=merchant.id,
            store_id=occasion.store_id, tier=tier, now=now))
    if "env" in found.groups:
        weather = (session.get(StoreWeather, occasion.store_id)
                   if occasion.store_id is not None else None)
        values.update(environment_fields(
            store_id=occasion.store_id, timezone=timezone, country=merchant.country,
            now=occasion.occurred_at, weather=weather))
    if "inventory" in found.groups:
        values.update(inventory_fields(session, store_id=occasion.store_id,
                                       skus=found.inventory_skus)
                      if occasion.store_id is not None else
                      {"inventory.stock": {}, "inventory.overstock": {}})
    return values


# --- the calendar: birthdays and schedules ------------------------------------------------

def run_calendar(database: Database, now: datetime) -> str:
    """Fire the birthday campaigns of members whose birth month it is (at
    ``BIRTHDAY_HOUR``), and the schedule campaigns whose day and hour it is, in each
    merchant's time zone. Run hourly (a missed hour is not made up); running again gives
    nothing twice."""
    with database.read_scope() as session:
        campaigns = session.execute(
            select(Campaign.id, Campaign.merchant_id, Campaign.trigger, Campaign.schedule)
            .where(Campaign.trigger.in_([Trigger.birthday.value, Trigger.schedule.value]),
                   Campaign.status == CampaignStatus.active.value)).all()
        zones = {merchant_id: timezone for merchant_id, timezone in
                 session.execute(select(Merchant.id, Merchant.timezone))}
    given = 0
    birthday_merchants = {row.merchant_id for row in campaigns
                          if row.trigger == Trigger.birthday.value}
    for merchant_id, timezone in sorted(zones.items()):
        local = now.astimezone(ZoneInfo(timezone))
        if local.hour == BIRTHDAY_HOUR and (None in birthday_merchants
                                            or merchant_id in birthday_merchants):
            given += _fire_for(database, merchant_id, Trigger.birthday,
                               f"birthday:{local.year}", now, birth_month=local.month)
        due = frozenset(row.id for row in campaigns if row.trigger == Trigger.schedule.value
                        and row.merchant_id in (None, merchant_id) and row.schedule
                        and local.isoweekday() in row.schedule["weekdays"]
                        and local.hour == row.schedule["hour"])
        if due:
            given += _fire_for(database, merchant_id, Trigger.schedule,
                               f"schedule:{local.date().isoformat()}", now, only=due)
    return f"{given} campaign outcome(s) on birthdays and schedules"


def _fire_for(database: Database, merchant_id: uuid.UUID, trigger: Trigger, key: str,
              now: datetime, *, birth_month: int | None = None,
              only: frozenset[uuid.UUID] | None = None) -> int:
    """The occasion for each active member of the merchant (birthdays: born this month),
    a chunk of members per transaction."""
    given = 0
    for members in _member_chunks(database, merchant_id, birth_month):
        with database.session_scope() as session:
            for member_id in members:
                given += len(fire(session, Occasion(
                    trigger=trigger, key=key, merchant_id=merchant_id, member_id=member_id,
                    occurred_at=now), now=now, only=only))
    return given


def _member_chunks(database: Database, merchant_id: uuid.UUID,
                   birth_month: int | None) -> Iterator[list[uuid.UUID]]:
    after: uuid.UUID | None = None
    while True:
        query = (select(Member.id).join(Membership, Membership.member_id == Member.id)
                 .where(Membership.merchant_id == merchant_id,
                        Member.status == MemberStatus.active.value)
                 .order_by(Member.id).limit(CHUNK))
        if birth_month is not None:
            query = query.where(Member.birth_month == birth_month)
        if after is not None:
            query = query.where(Member.id > after)
        with database.read_scope() as session:
            members = list(session.scalars(query))
        if not members:
            return
        yield members
        after = members[-1]

