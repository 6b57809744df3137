"""Member stats: one atomic upsert per row touched by a purchase, in its transaction.

A purchase costs 3 statements whatever the member's history and however many categories
it has (one multi-row upsert for them all): no reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from patron.db import insert_for
from patron.scores.models import MemberCategoryCount, MemberStats, MemberStoreVisit


def record_purchase(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID,
                    store_id: uuid.UUID, occurred_at: datetime, spend_minor: int,
                    category_quantities: Mapping[str, int]) -> None:
    """Count one purchase (``category_quantities``: units bought per category)."""
    stats = insert_for(session, MemberStats).values(
        member_id=member_id, merchant_id=merchant_id, first_purchase_at=occurred_at,
        last_purchase_at=occurred_at, purchase_count=1, spend_minor=spend_minor)
    excluded = stats.excluded
    session.execute(stats.on_conflict_do_update(
        index_elements=[MemberStats.member_id, MemberStats.merchant_id],
        set_={
            # Purchases may arrive out of order (offline tills): keep the extremes.
            "first_purchase_at": case(
                (excluded.first_purchase_at < MemberStats.first_purchase_at,
                 excluded.first_purchase_at), else_=MemberStats.first_purchase_at),
            "last_purchase_at": case(
                (excluded.last_purchase_at > MemberStats.last_purchase_at,
                 excluded.last_purchase_at), else_=MemberStats.last_purchase_at),
            "purchase_count": MemberStats.purchase_count + 1,
            "spend_minor": MemberStats.spend_minor + excluded.spend_minor,
        }))
    if category_quantities:
        # One multi-row upsert for all the categories (each row still changes atomically;
        # rows in category order, so concurrent purchases lock them in the same order).
        counts = insert_for(session, MemberCategoryCount).values([
            {"member_id": member_id, "merchant_id": merchant_id, "category": category,
             "purchase_count": 1, "quantity": category_quantities[category]}
            for category in sorted(category_quantities)])
        session.execute(counts.on_conflict_do_update(
            index_elements=[MemberCategoryCount.member_id, MemberCategoryCount.merchant_id,
                            MemberCategoryCount.category],
            set_={"purchase_count": MemberCategoryCount.purchase_count + 1,
                  "quantity": MemberCategoryCount.quantity + counts.excluded.quantity}))
    visit = insert_for(session, MemberStoreVisit).values(
        member_id=member_id, merchant_id=merchant_id, store_id=store_id, visit_count=1,
        last_visit_at=occurred_at)
    session.execute(visit.on_conflict_do_update(
        index_elements=[MemberStoreVisit.member_id, MemberStoreVisit.store_id],
        set_={"visit_count": MemberStoreVisit.visit_count + 1,
              "last_visit_at": case(
                  (visit.excluded.last_visit_at > MemberStoreVisit.last_visit_at,
                   visit.excluded.last_visit_at), else_=MemberStoreVisit.last_visit_at)}))


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
                  refund_minor: int) -> None:
    """A return gives money back: the member's spend is what they kept paying for. The
    purchase itself still counts as a visit and a purchase."""
    if refund_minor:
        session.execute(update(MemberStats)
                        .where(MemberStats.member_id == member_id,
                               MemberStats.merchant_id == merchant_id)
                        .values(spend_minor=MemberStats.spend_minor - refund_minor)
                        .execution_options(synchronize_session=False))
