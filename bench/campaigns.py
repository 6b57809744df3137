"""The checkout benchmark's campaigns: the rules benchmark's 100 campaigns, made real.

Issue 5 asks for the checkout benchmark "with those 100 campaigns active": the condition
trees are ``bench.rules.draw_trees`` (the same templates, reading the purchase, the
member, the store's environment and its inventory), naming the SKUs of the checkout
benchmark's catalogue instead of the rules benchmark's made-up ones. Each campaign is
written through the service (``campaigns.service.create_campaign``, checked whole as
``POST /v1/campaigns`` checks it) for the bench shop's merchant, with:

- its tree, and one product of the catalogue the basket must hold (each campaign
  promotes a product: a 5-30-line basket from 600 products holds a given one about 3 %
  of the time), so that a checkout earns about one outcome rather than the 30-odd the
  bare trees would give on a rainy morning;
- actions of every kind in turn — a personal code of a real offer (``issue_voucher``),
  ``bonus_points``, ``points_multiplier``, ``message``, and some with two;
- a per-member limit on every other campaign, a 10 % control group on every fifth, a few
  exclusive ones, and a budget (``max_outcomes``) far above what a run can spend.

What the conditions read is made real too: the stores' weather and stock
(``campaigns.environment``), and the members' RFM scores and P(alive) by the production
refit (``scores.refit.refit_merchant``) over the loaded member statistics.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bench.baskets import catalogue
from bench.rules import draw_trees
from bench.shop import Shop
from patron.campaigns.environment import put_inventory, put_weather
from patron.campaigns.models import Campaign, CampaignOutcome
from patron.campaigns.schemas import CampaignWrite, InventoryWrite, StockItem, WeatherWrite
from patron.campaigns.service import create_campaign
from patron.db import Database
from patron.kit.clock import utcnow
from patron.pos.models import PosTransaction
from patron.scores.refit import refit_merchant
from patron.tenancy.models import Store
from patron.tenancy.service import SYSTEM
from patron.vouchers.offers import create_offer
from patron.vouchers.schemas import OfferWrite

BUDGET = 10_000_000  # outcomes per campaign: a run spends a few thousand in all
CONDITION_SKUS = 200  # the catalogue's SKUs the trees name (the rules benchmark's 200)
WEATHER = (("rain", 11.5), ("sunny", 24.0), ("cloudy", 17.0), ("drizzle", 9.0),
           ("snow", -1.0))


@dataclass(frozen=True)
class Campaigns:
    ids: tuple[uuid.UUID, ...]
    offer_id: uuid.UUID
    created_at: datetime  # checkouts after this run with the campaigns active
    scored_members: int


@dataclass(frozen=True)
class Outcomes:
    """What the campaigns did to the checkouts committed since they were created."""

    checkouts: int
    identified: int
    fired: int  # outcomes given (not held out)
    held_out: int
    checkouts_with_outcome: int
    vouchers: int
    points: int
    campaigns_fired: int  # distinct campaigns that gave at least one outcome

    def line(self) -> str:
        per = self.fired / self.identified if self.identified else float("nan")
        return (f"outcomes issued during the phase (campaign_outcomes): {self.fired:,} "
                f"({self.vouchers:,} vouchers, {self.points:,} points) by "
                f"{self.campaigns_fired} campaigns, {self.held_out:,} held out; "
                f"{self.checkouts:,} checkouts, {self.identified:,} identified, "
                f"{self.checkouts_with_outcome:,} with an outcome "
                f"({per:.2f} outcomes per identified checkout)")


def _actions(index: int, offer_id: uuid.UUID) -> list[dict[str, Any]]:
    voucher = {"type": "issue_voucher", "offer_id": str(offer_id)}
    kinds: list[list[dict[str, Any]]] = [
        [voucher],
        [{"type": "bonus_points", "points": 50 + 10 * (index % 10)}],
        [{"type": "points_multiplier", "multiplier_bp": 15_000}],
        [{"type": "message", "text": f"Thank you! Campaign {index + 1} says hello."}],
        [{"type": "message", "text": "A treat for you"}, voucher],
        [voucher, {"type": "bonus_points", "points": 100}],
    ]
    return kinds[index % len(kinds)]


def create_campaigns(database: Database, shop: Shop, *, count: int, seed: int) -> Campaigns:
    """``count`` active checkout campaigns for the shop's merchant, and what their
    conditions read (weather, stock, scores); committed."""
    rng = random.Random(seed)
    products = catalogue(random.Random(seed))
    # The rules benchmark's SKU vocabulary, mapped onto the catalogue's first 200 SKUs.
    skus = [product.sku for product in products[:CONDITION_SKUS]]
    trees = draw_trees(count, rng, skus)
    now = utcnow()
    with database.session_scope() as session:
        offer = create_offer(session, actor=SYSTEM, data=OfferWrite(
            name="Bench: 100 yen off", kind="amount_off", value=100,
            merchant_id=shop.merchant_id))
        ids = []
        for index, tree in enumerate(trees):
            promoted = rng.choice(products).sku
            conditions = {"all": [tree, {"field": "purchase.sku_quantity", "key": promoted,
                                         "op": "ge", "value": 1}]}
            per_member = {"count": 1, "period_days": 7} if index % 2 else None
            campaign = create_campaign(session, actor=SYSTEM, data=CampaignWrite.model_validate({
                "name": f"Bench campaign {index + 1}", "trigger": "checkout",
                "merchant_id": str(shop.merchant_id), "conditions": conditions,
                "actions": _actions(index, offer.id), "per_member": per_member,
                "max_outcomes": BUDGET, "priority": rng.randrange(0, 100),
                "exclusive": index % 20 == 19,
                "control_share_bp": 1_000 if index % 5 == 0 else 0}))
            ids.append(campaign.id)
        stores = session.scalars(select(Store.id).where(
            Store.merchant_id == shop.merchant_id).order_by(Store.code)).all()
        stock = [StockItem(sku=sku, quantity=number % 40, overstock=number % 7 == 0)
                 for number, sku in enumerate(skus)]
        for number, store_id in enumerate(stores):
            condition, temperature = WEATHER[number % len(WEATHER)]
            put_weather(session, actor=SYSTEM, store_id=store_id, now=now,
                        data=WeatherWrite.model_validate(
                            {"condition": condition, "temperature_c": temperature}))
            put_inventory(session, actor=SYSTEM, store_id=store_id, now=now,
                          data=InventoryWrite(items=stock, replace=True))
        refit = refit_merchant(session, merchant_id=shop.merchant_id, now=now)
        offer_id = offer.id
    return Campaigns(ids=tuple(ids), offer_id=offer_id, created_at=now,
                     scored_members=refit.members)


def outcomes_since(database: Database, shop: Shop, since: datetime) -> Outcomes:
    """The checkouts committed since ``since`` and the campaign outcomes written for them
    (read from ``pos_transactions`` and ``campaign_outcomes``)."""
    with database.session_scope() as session:
        checkouts, identified = session.execute(
            select(func.count(), func.count(PosTransaction.member_id))
            .where(PosTransaction.merchant_id == shop.merchant_id,
                   PosTransaction.created_at >= since)).one()
        given = (CampaignOutcome.merchant_id == shop.merchant_id,
                 CampaignOutcome.created_at >= since)
        fired, vouchers, points, with_outcome, campaigns = session.execute(
            select(func.count(), func.count(CampaignOutcome.voucher_id),
                   func.coalesce(func.sum(CampaignOutcome.points), 0),
                   func.count(func.distinct(CampaignOutcome.transaction_id)),
                   func.count(func.distinct(CampaignOutcome.campaign_id)))
            .where(*given, CampaignOutcome.held_out.is_(False))).one()
        held_out = session.scalar(select(func.count()).select_from(CampaignOutcome)
                                  .where(*given, CampaignOutcome.held_out.is_(True)))
    return Outcomes(checkouts=checkouts, identified=identified, fired=fired,
                    held_out=held_out or 0, checkouts_with_outcome=with_outcome,
                    vouchers=vouchers, points=int(points), campaigns_fired=campaigns)


def active_count(database: Database, shop: Shop) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Campaign).where(
            Campaign.merchant_id == shop.merchant_id, Campaign.status == "active")) or 0
