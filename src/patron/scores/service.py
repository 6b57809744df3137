"""Member stats: one atomic upsert per row touched by a purchase, in its transaction.

A purchase costs 4 statements whatever the member's history and however many categories
it has (one multi-row upsert for them all): no reads (the store, whose time zone decides
the purchase's day, is already in the session). A batch of purchases costs the same 4.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from patron.db import insert_for_dialect, table_of, upsert_rows
from patron.scores import rfm
from patron.scores.models import (
    MemberCategoryCount,
    MemberPurchaseDay,
    MemberScore,
    MemberStats,
    MemberStoreVisit,
    ScoreModel,
)
from patron.scores.schemas import (
    AffinityRead,
    LifetimeRead,
    MemberScoresRead,
    RfmRead,
    VisitRead,
)
from patron.tenancy.models import Store


@dataclass(frozen=True)
class Purchase:
    """One identified purchase as the member stats count it."""

    member_id: uuid.UUID
    merchant_id: uuid.UUID
    store_id: uuid.UUID
    occurred_at: datetime
    spend_minor: int
    category_quantities: Mapping[str, int]


def record_purchase(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                    store_id: uuid.UUID, occurred_at: datetime, spend_minor: int,
                    category_quantities: Mapping[str, int]) -> None:
    """Count one purchase (``category_quantities``: units bought per category)."""
    record_purchases(session, [Purchase(
        member_id=member_id, merchant_id=merchant_id, store_id=store_id,
        occurred_at=occurred_at, spend_minor=spend_minor,
        category_quantities=category_quantities)])


def purchase_day(occurred_at: datetime, timezone: str) -> date:
    """The store-local day of a purchase: a member's purchases on one day are one
    transaction of the lifetime models."""
    return occurred_at.astimezone(ZoneInfo(timezone)).date()


def _store_zones(session: Session, store_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    zones = {}
    for store_id in store_ids:
        store = session.get(Store, store_id)
        if store is None:
            raise LookupError(f"no store {store_id}")
        zones[store_id] = store.timezone
    return zones


def record_purchases(session: Session, purchases: Sequence[Purchase]) -> None:
    """Count purchases: one multi-row upsert per table, each row once (the purchases of
    one member are added up first), rows in key order so that concurrent writers lock
    them in the same order."""
    if not purchases:
        return
    stats: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = {}
    counts: dict[tuple[uuid.UUID, uuid.UUID, str], dict[str, Any]] = {}
    visits: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = {}
    days: dict[tuple[uuid.UUID, uuid.UUID, date], dict[str, Any]] = {}
    zones = _store_zones(session, {item.store_id for item in purchases})
    for item in purchases:
        day_key = (item.merchant_id, item.member_id,
                   purchase_day(item.occurred_at, zones[item.store_id]))
        day = days.get(day_key)
        if day is None:
            days[day_key] = {"merchant_id": item.merchant_id, "member_id": item.member_id,
                             "day": day_key[2], "purchase_count": 1,
                             "spend_minor": item.spend_minor}
        else:
            day["purchase_count"] += 1
            day["spend_minor"] += item.spend_minor
        row = stats.get((item.member_id, item.merchant_id))
        if row is None:
            stats[item.member_id, item.merchant_id] = {
                "member_id": item.member_id, "merchant_id": item.merchant_id,
                "first_purchase_at": item.occurred_at, "last_purchase_at": item.occurred_at,
                "purchase_count": 1, "spend_minor": item.spend_minor,
                "first_spend_minor": item.spend_minor}
        else:
            if item.occurred_at < row["first_purchase_at"]:
                row["first_purchase_at"] = item.occurred_at
                row["first_spend_minor"] = item.spend_minor
            row["last_purchase_at"] = max(row["last_purchase_at"], item.occurred_at)
            row["purchase_count"] += 1
            row["spend_minor"] += item.spend_minor
        for category, quantity in item.category_quantities.items():
            key = (item.member_id, item.merchant_id, category)
            count = counts.get(key)
            if count is None:
                counts[key] = {"member_id": item.member_id, "merchant_id": item.merchant_id,
                               "category": category, "purchase_count": 1,
                               "quantity": quantity}
            else:
                count["purchase_count"] += 1
                count["quantity"] += quantity
        visit = visits.get((item.member_id, item.store_id))
        if visit is None:
            visits[item.member_id, item.store_id] = {
                "member_id": item.member_id, "merchant_id": item.merchant_id,
                "store_id": item.store_id, "visit_count": 1,
                "last_visit_at": item.occurred_at}
        else:
            visit["visit_count"] += 1
            visit["last_visit_at"] = max(visit["last_visit_at"], item.occurred_at)
    statements = _upserts(session.get_bind().dialect.name)
    upsert_rows(session, statements.stats, [stats[key] for key in sorted(stats)])
    upsert_rows(session, statements.counts, [counts[key] for key in sorted(counts)])
    upsert_rows(session, statements.visits, [visits[key] for key in sorted(visits)])
    upsert_rows(session, statements.days, [days[key] for key in sorted(days)])


@dataclass(frozen=True)
class _Upserts:
    stats: Any
    counts: Any
    visits: Any
    days: Any


@functools.cache
def _upserts(dialect: str) -> _Upserts:
    """The three upserts, built once per backend and run with a list of rows each."""
    stats = insert_for_dialect(dialect, table_of(MemberStats))
    excluded = stats.excluded
    columns = stats.table.c
    stats = stats.on_conflict_do_update(
        index_elements=["member_id", "merchant_id"],
        set_={
            # Purchases may arrive out of order (offline tills): keep the extremes.
            "first_purchase_at": case(
                (excluded.first_purchase_at < columns.first_purchase_at,
                 excluded.first_purchase_at), else_=columns.first_purchase_at),
            "last_purchase_at": case(
                (excluded.last_purchase_at > columns.last_purchase_at,
                 excluded.last_purchase_at), else_=columns.last_purchase_at),
            "first_spend_minor": case(
                (excluded.first_purchase_at < columns.first_purchase_at,
                 excluded.first_spend_minor), else_=columns.first_spend_minor),
            "purchase_count": columns.purchase_count + excluded.purchase_count,
            "spend_minor": columns.spend_minor + excluded.spend_minor,
        })
    counts = insert_for_dialect(dialect, table_of(MemberCategoryCount))
    columns = counts.table.c
    counts = counts.on_conflict_do_update(
        index_elements=["member_id", "merchant_id", "category"],
        set_={"purchase_count": columns.purchase_count + counts.excluded.purchase_count,
              "quantity": columns.quantity + counts.excluded.quantity})
    visits = insert_for_dialect(dialect, table_of(MemberStoreVisit))
    columns = visits.table.c
    visits = visits.on_conflict_do_update(
        index_elements=["member_id", "store_id"],
        set_={"visit_count": columns.visit_count + visits.excluded.visit_count,
              "last_visit_at": case(
                  (visits.excluded.last_visit_at > columns.last_visit_at,
                   visits.excluded.last_visit_at), else_=columns.last_visit_at)})
    days = insert_for_dialect(dialect, table_of(MemberPurchaseDay))
    columns = days.table.c
    days = days.on_conflict_do_update(
        index_elements=["merchant_id", "member_id", "day"],
        set_={"purchase_count": columns.purchase_count + days.excluded.purchase_count,
              "spend_minor": columns.spend_minor + days.excluded.spend_minor})
    return _Upserts(stats=stats, counts=counts, visits=visits, days=days)


def member_stats(session: Session, *, member_id: uuid.UUID,
                 merchant_id: uuid.UUID) -> MemberStats | None:
    return session.get(MemberStats, (member_id, merchant_id))


def category_counts(session: Session, *, member_id: uuid.UUID,
                    merchant_id: uuid.UUID) -> dict[str, tuple[int, int]]:
    """category → (purchases containing it, units bought)."""
    rows = session.execute(
        select(MemberCategoryCount.category, MemberCategoryCount.purchase_count,
               MemberCategoryCount.quantity)
        .where(MemberCategoryCount.member_id == member_id,
               MemberCategoryCount.merchant_id == merchant_id)).all()
    return {category: (int(count), int(quantity)) for category, count, quantity in rows}


def record_refund(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                  store_id: uuid.UUID, purchased_at: datetime, refund_minor: int) -> None:
    """A return gives money back: the member's spend, and that of the purchase's day, is
    what they kept paying for. The purchase itself still counts as a visit and a purchase
    (and its day as a transaction)."""
    if refund_minor:
        session.execute(update(MemberStats)
                        .where(MemberStats.member_id == member_id,
                               MemberStats.merchant_id == merchant_id)
                        .values(spend_minor=MemberStats.spend_minor - refund_minor)
                        .execution_options(synchronize_session=False))
        day = purchase_day(purchased_at, _store_zones(session, {store_id})[store_id])
        session.execute(update(MemberPurchaseDay)
                        .where(MemberPurchaseDay.merchant_id == merchant_id,
                               MemberPurchaseDay.member_id == member_id,
                               MemberPurchaseDay.day == day)
                        .values(spend_minor=MemberPurchaseDay.spend_minor - refund_minor)
                        .execution_options(synchronize_session=False))


def scores_of(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
              currency: str, tier: str | None, now: datetime) -> MemberScoresRead:
    """A member's scores at a merchant as of ``now``: the live stats, RFM against the
    merchant's last boundaries, the stored lifetime scores. A handful of key look-ups."""
    stats = member_stats(session, member_id=member_id, merchant_id=merchant_id)
    model = session.get(ScoreModel, merchant_id)
    lifetime = session.get(MemberScore, (member_id, merchant_id))
    purchases = stats.purchase_count if stats else 0
    spend = stats.spend_minor if stats else 0
    recency_days = (None if stats is None
                    else max((now - stats.last_purchase_at).total_seconds(), 0) / 86_400)
    rfm_read = None
    if stats is not None and model is not None:
        scored = rfm.score(rfm.Boundaries.from_json(model.rfm_boundaries),
                           recency_days=recency_days or 0.0, frequency=purchases,
                           spend_minor=spend,
                           days_since_first=(now - stats.first_purchase_at).total_seconds()
                           / 86_400)
        rfm_read = RfmRead(recency=scored.recency, frequency=scored.frequency,
                           monetary=scored.monetary, segment=scored.segment,
                           boundaries_computed_at=model.fitted_at)
    counts = category_counts(session, member_id=member_id, merchant_id=merchant_id)
    affinities = sorted(
        (AffinityRead(category=category, purchases=count, quantity=quantity,
                      share=round(count / purchases, 4) if purchases else 0.0)
         for category, (count, quantity) in counts.items()),
        key=lambda item: (-item.purchases, item.category))
    visits = [VisitRead(store_id=row.store_id, visits=row.visit_count,
                        last_visit_at=row.last_visit_at)
              for row in session.scalars(
                  select(MemberStoreVisit)
                  .where(MemberStoreVisit.member_id == member_id,
                         MemberStoreVisit.merchant_id == merchant_id)
                  .order_by(MemberStoreVisit.visit_count.desc(), MemberStoreVisit.store_id))]
    return MemberScoresRead(
        member_id=member_id, merchant_id=merchant_id, as_of=now, currency=currency,
        purchases=purchases, spend_minor=spend,
        average_spend_minor=round(spend / purchases) if purchases else None,
        first_purchase_at=stats.first_purchase_at if stats else None,
        last_purchase_at=stats.last_purchase_at if stats else None,
        recency_days=None if recency_days is None else round(recency_days, 3),
        tier=tier, rfm=rfm_read,
        lifetime=None if lifetime is None else LifetimeRead(
            p_alive=lifetime.p_alive, expected_purchases_90d=lifetime.expected_purchases_90d,
            clv_90d_minor=lifetime.clv_90d_minor, computed_at=lifetime.computed_at,
            # The refit keeps the scores it could not recompute, with the reason.
            stale=model is not None and model.note is not None,
            stale_reason=model.note if model is not None else None),
        note=model.note if model is not None else "the scores have not been computed yet",
        affinities=affinities, visits=visits)
