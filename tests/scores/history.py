"""Merchants with a realistic year of purchases, written through the services: what the
refit sees on a real shop (several receipts on one day, free purchases, members who stop
coming), fast enough for a unit test (one ``record_purchases`` call for the whole year)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert, update

from patron.db import Database
from patron.identity.numbers import format_member_number
from patron.kit.clock import utcnow
from patron.members.models import Member, Membership
from patron.scores.service import Purchase, record_purchases
from patron.tenancy.schemas import MerchantCreate, StoreCreate
from patron.tenancy.service import SYSTEM, create_merchant, create_store


@dataclass(frozen=True)
class Shop:
    merchant_id: uuid.UUID
    store_id: uuid.UUID
    members: list[uuid.UUID]


def make_shop(database: Database, *, number: int, members: int,
              timezone: str = "Asia/Tokyo") -> Shop:
    """A merchant and its store through the services; its anonymous members (card-less,
    phone-less, as a till enrols them) inserted set-wise, which is all the scores need."""
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=number, name=f"Shop {number}", currency="JPY", timezone=timezone,
            country="JP"))
        store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code="main", name="Main street"))
        now = utcnow()
        people = sorted(uuid.uuid4() for _ in range(members))
        session.execute(insert(Member), [
            {"id": member_id, "merchant_id": merchant.id, "enrolled_store_id": store.id,
             "customer_no": customer_no,
             "member_number": format_member_number(number, customer_no),
             "status": "active", "pin_failures": 0, "created_at": now, "updated_at": now}
            for customer_no, member_id in enumerate(people, start=1)])
        session.execute(insert(Membership), [
            {"id": uuid.uuid4(), "member_id": member_id, "merchant_id": merchant.id,
             "joined_at": now, "source": "api"} for member_id in people])
        session.execute(update(type(merchant)).where(type(merchant).id == merchant.id)
                        .values(next_customer_no=members + 1))
        return Shop(merchant_id=merchant.id, store_id=store.id, members=people)


def year_of_purchases(shop: Shop, *, now: datetime, seed: int, days: int = 365,
                      free_share: float = 0.03) -> list[Purchase]:
    """Each member joins on a day of the year, visits as a Poisson process (a rate drawn
    per member: most come a few times a month, some weekly), stops for good after a visit
    with a probability drawn per member; a visit is one receipt, or two on the same day
    one time in five; a receipt spends about ¥1,200 (log-normal), and ``free_share`` of
    them are free (a reward redeemed in full: amount 0)."""
    rng = np.random.default_rng(seed)
    purchases: list[Purchase] = []
    for member in shop.members:
        joined = float(rng.uniform(0, days))
        rate = float(rng.gamma(1.2, 1 / 25))  # visits per day, mean ~ 1 a month
        dropout = float(rng.beta(1.0, 6.0))
        taste = float(rng.lognormal(np.log(1200), 0.3))
        moments = [joined]
        while True:
            step = float(rng.exponential(1 / rate)) if rate > 0 else days
            if moments[-1] + step > days or (rng.random() < dropout and len(moments) > 1):
                break
            moments.append(moments[-1] + step)
        for moment in moments:
            receipts = 2 if rng.random() < 0.2 else 1
            for receipt in range(receipts):
                at = now - timedelta(days=days - moment) + timedelta(minutes=7 * receipt)
                spend = 0 if rng.random() < free_share else int(
                    rng.lognormal(np.log(taste), 0.4))
                purchases.append(Purchase(
                    member_id=member, merchant_id=shop.merchant_id, store_id=shop.store_id,
                    occurred_at=min(at, now), spend_minor=spend,
                    category_quantities={"coffee": 1}))
    return purchases


def record(database: Database, purchases: list[Purchase]) -> None:
    with database.session_scope() as session:
        record_purchases(session, purchases)
