"""What a checkout reads for its campaigns, cheaply: the active campaigns and the member.

**The active campaigns, cached per process and checked on every checkout.** A campaign's
definition — its condition tree, actions, stores, window, limits, priority — never
changes once written: there is no update, only pause and resume (``service.set_status``)
and the budget's counter (``outcomes_count``). So each process keeps the definitions it
has seen, by id, with their trees compiled (``ActiveCampaign``), and every checkout asks
the database one small question: which campaigns of the merchant and of the coalition,
of this trigger, are active now, with their counters (``SELECT id, outcomes_count FROM
campaigns WHERE … status = 'active'``, built once). The answer is never cached: a pause
or a resume committed by any process, on any server, is seen by the next checkout's
read, and a campaign the process has not seen yet (created elsewhere) is loaded then,
once. Only the definitions are kept, and a definition cannot go stale because it cannot
change. (An update of campaigns, if one is ever added, must write a new campaign or
clear ``forget``'s caches in every process; pausing the old one and creating a new one
is what the API offers today.)

**The member's values in two statements** instead of ``scores.service.scores_of``'s six
and its response models: the member's profile with their stats at the merchant, their
stored lifetime scores, the merchant's RFM boundaries and their visits to this store in
one row; their category counts in a second. The values are the ones ``scores_of`` gives
(tested side by side).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.orm import Session

from patron.campaigns.conditions import Condition, compile_condition
from patron.campaigns.models import Campaign, CampaignStatus, Trigger
from patron.members.consent import ALLOWING, consent_reason
from patron.members.models import Channel, Member, Purpose
from patron.scores import rfm
from patron.scores.models import (
    MemberCategoryCount,
    MemberScore,
    MemberStats,
    MemberStoreVisit,
    ScoreModel,
)

SECONDS_PER_DAY = 86_400


@dataclass(frozen=True, slots=True)
class ActiveCampaign:
    """A campaign's definition as the checkout uses it (it never changes once written)."""

    id: uuid.UUID
    merchant_id: uuid.UUID | None
    name: str
    trigger: str
    priority: int
    created_at: datetime
    exclusive: bool
    per_member_count: int | None
    per_member_days: int | None
    max_outcomes: int | None
    control_share_bp: int
    store_ids: frozenset[str]
    valid_from: datetime | None
    valid_until: datetime | None
    actions: tuple[dict[str, Any], ...]
    condition: Condition
    # What the condition reads: the field groups, and the SKUs of ``inventory.*``.
    groups: frozenset[str]
    inventory_skus: frozenset[str]

    @classmethod
    def of(cls, campaign: Campaign) -> ActiveCampaign:
        condition = compile_condition(campaign.conditions)
        return cls(
            id=campaign.id, merchant_id=campaign.merchant_id, name=campaign.name,
            trigger=campaign.trigger, priority=campaign.priority,
            created_at=campaign.created_at, exclusive=campaign.exclusive,
            per_member_count=campaign.per_member_count,
            per_member_days=campaign.per_member_days, max_outcomes=campaign.max_outcomes,
            control_share_bp=campaign.control_share_bp,
            store_ids=frozenset(campaign.store_ids or ()), valid_from=campaign.valid_from,
            valid_until=campaign.valid_until, actions=tuple(campaign.actions),
            condition=condition,
            groups=frozenset(name.split(".", 1)[0] for name in condition.fields),
            inventory_skus=frozenset(key for name, key in condition.keys
                                     if name.startswith("inventory.")))

    def runs(self, *, store: str, now: datetime) -> bool:
        """In its window and at the store."""
        return ((self.valid_from is None or self.valid_from <= now)
                and (self.valid_until is None or self.valid_until > now)
                and (not self.store_ids or store in self.store_ids))


@dataclass(frozen=True)
class Active:
    """A checkout's active campaigns, highest priority first (then the oldest), with
    each one's budget counter as read now."""

    campaigns: list[ActiveCampaign]
    outcomes_count: dict[uuid.UUID, int]

    @property
    def groups(self) -> frozenset[str]:
        return frozenset().union(*(campaign.groups for campaign in self.campaigns))

    @property
    def inventory_skus(self) -> frozenset[str]:
        return frozenset().union(*(campaign.inventory_skus for campaign in self.campaigns))


# The question asked on every checkout; built once.
_ACTIVE_NOW = (
    select(Campaign.id, Campaign.outcomes_count)
    .where(or_(Campaign.merchant_id == bindparam("merchant_id"),
               Campaign.merchant_id.is_(None)),
           Campaign.trigger == bindparam("trigger"),
           Campaign.status == CampaignStatus.active.value))

_lock = threading.Lock()
# Definitions by id, and per (merchant, trigger) the ids last seen active with their
# definitions in evaluation order (rebuilt whenever the set of ids differs).
_definitions: dict[uuid.UUID, ActiveCampaign] = {}
_ordered: dict[tuple[uuid.UUID, str], tuple[frozenset[uuid.UUID], list[ActiveCampaign]]] = {}


def forget() -> None:
    """Empty this process's caches (tests; a process that must re-read definitions)."""
    with _lock:
        _definitions.clear()
        _ordered.clear()


def _load(session: Session, ids: Iterable[uuid.UUID]) -> None:
    wanted = sorted(ids)
    loaded = [ActiveCampaign.of(campaign) for campaign in
              session.scalars(select(Campaign).where(Campaign.id.in_(wanted)))]
    with _lock:
        for definition in loaded:
            _definitions[definition.id] = definition


def _in_order(session: Session, key: tuple[uuid.UUID, str],
              ids: frozenset[uuid.UUID]) -> list[ActiveCampaign]:
    known = _ordered.get(key)
    if known is not None and known[0] == ids:
        return known[1]
    missing = [campaign_id for campaign_id in ids if campaign_id not in _definitions]
    if missing:
        _load(session, missing)
    ordered = sorted((_definitions[campaign_id] for campaign_id in ids),
                     key=lambda campaign: (-campaign.priority, campaign.created_at,
                                           campaign.id))
    with _lock:
        _ordered[key] = (ids, ordered)
    return ordered


def active(session: Session, *, merchant_id: uuid.UUID, store_id: uuid.UUID | None,
           trigger: Trigger, now: datetime) -> Active:
    """The merchant's and the coalition's campaigns of a trigger active now at the store
    (without a store: those not limited to stores): one statement, the definitions from
    this process's cache."""
    counts = {campaign_id: count for campaign_id, count in session.execute(
        _ACTIVE_NOW, {"merchant_id": merchant_id, "trigger": trigger.value})}
    if not counts:
        return Active(campaigns=[], outcomes_count={})
    ordered = _in_order(session, (merchant_id, trigger.value), frozenset(counts))
    store = str(store_id) if store_id is not None else ""
    return Active(campaigns=[campaign for campaign in ordered
                             if campaign.runs(store=store, now=now)],
                  outcomes_count=counts)


# --- the member ----------------------------------------------------------------------

_MEMBER = (
    select(Member.birth_year, Member.birth_month, Member.gender, Member.region, Member.language,
           # Marketing consent for the campaign's merchant, by the delivery's own rule.
           *(consent_reason(merchant_id=bindparam("merchant_id"), channel=channel,
                            purpose=Purpose.marketing).label(f"consent_{channel.value}")
             for channel in Channel),
           Member.created_at,
           MemberStats.purchase_count, MemberStats.spend_minor,
           MemberStats.first_purchase_at, MemberStats.last_purchase_at,
           ScoreModel.rfm_boundaries, MemberScore.p_alive, MemberScore.clv_90d_minor,
           MemberStoreVisit.visit_count)
    .select_from(Member)
    .outerjoin(MemberStats, and_(MemberStats.member_id == Member.id,
                                 MemberStats.merchant_id == bindparam("merchant_id")))
    .outerjoin(ScoreModel, ScoreModel.merchant_id == bindparam("merchant_id"))
    .outerjoin(MemberScore, and_(MemberScore.member_id == Member.id,
                                 MemberScore.merchant_id == bindparam("merchant_id")))
    .outerjoin(MemberStoreVisit, and_(MemberStoreVisit.member_id == Member.id,
                                      MemberStoreVisit.merchant_id == bindparam("merchant_id"),
                                      MemberStoreVisit.store_id == bindparam("store_id")))
    .where(Member.id == bindparam("member_id")))
_CATEGORIES = (
    select(MemberCategoryCount.category, MemberCategoryCount.purchase_count)
    .where(MemberCategoryCount.member_id == bindparam("member_id"),
           MemberCategoryCount.merchant_id == bindparam("merchant_id")))


def age_band(birth_year: int | None, now: datetime) -> str | None:
    if birth_year is None:
        return None
    age = now.year - birth_year
    if age < 20:
        return "under-20"
    if age >= 70:
        return "70-plus"
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def member_fields(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                  store_id: uuid.UUID | None, tier: str | None,
                  now: datetime) -> dict[str, Any]:
    """``member.*`` as the member came in: the values ``scores_of`` would give (visits
    are to ``store_id``; none without a store)."""
    params = {"member_id": member_id, "merchant_id": merchant_id, "store_id": store_id}
    row = session.execute(_MEMBER, params).one()
    purchases = row.purchase_count or 0
    scored: rfm.Rfm | None = None
    if row.purchase_count is not None and row.rfm_boundaries is not None:
        recency_days = max((now - row.last_purchase_at).total_seconds(), 0) / SECONDS_PER_DAY
        scored = rfm.score(rfm.Boundaries.from_json(row.rfm_boundaries),
                           recency_days=recency_days, frequency=purchases,
                           spend_minor=row.spend_minor,
                           days_since_first=(now - row.first_purchase_at).total_seconds()
                           / SECONDS_PER_DAY)
    affinity = {category: round(count / purchases, 4) if purchases else 0.0
                for category, count in session.execute(_CATEGORIES, params)}
    consents = frozenset(channel.value for channel in Channel
                         if getattr(row, f"consent_{channel.value}") in ALLOWING)
    return {
        "member.age_band": age_band(row.birth_year, now),
        "member.birth_month": row.birth_month, "member.gender": row.gender,
        "member.region": row.region, "member.language": row.language, "member.tier": tier,
        "member.segment": scored.segment.value if scored else None,
        "member.recency_score": scored.recency if scored else None,
        "member.frequency_score": scored.frequency if scored else None,
        "member.monetary_score": scored.monetary if scored else None,
        "member.p_alive": row.p_alive, "member.clv_90d_minor": row.clv_90d_minor,
        "member.purchases": purchases, "member.spend_minor": row.spend_minor or 0,
        "member.affinity": affinity, "member.store_visits": row.visit_count or 0,
        "member.consents": consents,
        "member.days_since_enrolment": max((now - row.created_at).days, 0),
    }


def reads(conditions: Sequence[Condition]) -> tuple[frozenset[str], frozenset[str]]:
    """The field groups the conditions read, and the SKUs of their ``inventory.*``."""
    groups = frozenset(name.split(".", 1)[0] for condition in conditions
                       for name in condition.fields)
    skus = frozenset(key for condition in conditions for name, key in condition.keys
                     if name.startswith("inventory."))
    return groups, skus
