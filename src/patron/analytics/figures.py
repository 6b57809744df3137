"""A merchant's figures of the day (the console's first page): sales, the identified share,
new members, the points it owes its members. Portable SQL; reads only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from patron.ledger.models import AccountKind, LedgerAccount
from patron.members.models import Membership
from patron.pos.models import PosTransaction


@dataclass(frozen=True)
class DayFigures:
    day_start: datetime
    sales_minor: int
    transactions: int
    identified: int
    new_members: int
    points_outstanding: int

    @property
    def identified_share_bp(self) -> int | None:
        """Identified purchases per 10,000 (None without purchases)."""
        return self.identified * 10_000 // self.transactions if self.transactions else None


def local_day_start(now: datetime, timezone: str) -> datetime:
    zone = ZoneInfo(timezone)
    return datetime.combine(now.astimezone(zone).date(), time.min, tzinfo=zone)


def day_figures(session: Session, *, merchant_id: uuid.UUID, timezone: str,
                now: datetime) -> DayFigures:
    """Today (in the merchant's time zone) so far: what its tills sold, how many of those
    sales had a member, how many members it gained (enrolled there, or a first purchase
    there of another merchant's member), and the points its members hold."""
    start = local_day_start(now, timezone)
    end = start + timedelta(days=1)
    sales = session.execute(
        select(func.coalesce(func.sum(PosTransaction.total), 0), func.count(),
               func.coalesce(func.sum(case((PosTransaction.member_id.is_not(None), 1),
                                           else_=0)), 0))
        .where(PosTransaction.merchant_id == merchant_id,
               PosTransaction.occurred_at >= start, PosTransaction.occurred_at < end)).one()
    joined = session.scalar(select(func.count()).select_from(Membership).where(
        Membership.merchant_id == merchant_id, Membership.joined_at >= start,
        Membership.joined_at < end))
    outstanding = session.scalar(select(func.coalesce(func.sum(LedgerAccount.balance), 0))
                                 .where(LedgerAccount.merchant_id == merchant_id,
                                        LedgerAccount.kind == AccountKind.member_points.value,
                                        LedgerAccount.balance > 0))
    return DayFigures(day_start=start, sales_minor=int(sales[0]), transactions=int(sales[1]),
                      identified=int(sales[2]), new_members=int(joined or 0),
                      points_outstanding=int(outstanding or 0))
