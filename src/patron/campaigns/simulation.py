"""Simulating a campaign on the stored transactions of the last days, without side
effects (``POST /v1/campaigns/{id}/simulate``).

Each identified purchase of the window at the campaign's merchant (a coalition
campaign: at every merchant), oldest first, is put through the campaign as the checkout
would: its lines, total, channel and store, at its own local time and holidays; the
member's values as they are now (their stats and scores are not kept per day); the
stores' stock as it is now; the weather unknown (it is not kept per day either, so a
condition on it does not hold). The control group, the per-member limit (counting the
simulated outcomes) and what is left of the budget apply. Reported: the purchases and
members that would trigger, those held out, those the limits would stop, and the cost:
vouchers issued (and their face value for amount-off offers) and points given.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.campaigns.conditions import Condition, compile_condition
from patron.campaigns.context import Line
from patron.campaigns.control import held_out
from patron.campaigns.engine import BP_ONE, Checkout, context
from patron.campaigns.models import Campaign
from patron.campaigns.schemas import SimulationCost, SimulationRead
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.tenancy.models import Merchant, Store
from patron.vouchers.models import Offer, OfferKind

MAX_TRANSACTIONS = 100_000


def simulate(session: Session, *, campaign: Campaign, days: int,
             now: datetime) -> SimulationRead:
    condition = compile_condition(campaign.conditions)  # checked when it was written
    since = now - timedelta(days=days)
    query = (select(PosTransaction)
             .where(PosTransaction.member_id.is_not(None),
                    PosTransaction.occurred_at >= since, PosTransaction.occurred_at <= now)
             .order_by(PosTransaction.occurred_at, PosTransaction.id)
             .limit(MAX_TRANSACTIONS + 1))
    if campaign.merchant_id is not None:
        query = query.where(PosTransaction.merchant_id == campaign.merchant_id)
    transactions = list(session.scalars(query))
    truncated = len(transactions) > MAX_TRANSACTIONS
    transactions = transactions[:MAX_TRANSACTIONS]
    if campaign.store_ids:
        transactions = [t for t in transactions if str(t.store_id) in campaign.store_ids]
    lines = _lines(session, [t.id for t in transactions])
    stores = {store.id: store for store in session.scalars(
        select(Store).where(Store.id.in_({t.store_id for t in transactions})))}
    merchants = {merchant.id: merchant for merchant in session.scalars(
        select(Merchant).where(Merchant.id.in_({t.merchant_id for t in transactions})))}
    tally = _Tally(campaign, condition)
    cache: dict[Any, dict[str, Any]] = {}  # each member's and store's values read once
    for transaction in transactions:
        assert transaction.member_id is not None
        store, merchant = stores[transaction.store_id], merchants[transaction.merchant_id]
        checkout = Checkout(
            merchant_id=merchant.id, merchant_number=merchant.number,
            country=merchant.country, currency=merchant.currency, store_id=store.id,
            timezone=store.timezone, member_id=transaction.member_id,
            lines=lines.get(transaction.id, []), total_minor=transaction.total,
            channel=transaction.channel, offers_used=(), points_earned=transaction.points_earned,
            tier=None, occurred_at=transaction.occurred_at)
        values = context(session, checkout, [condition], now, live_weather=False,
                         cache=cache)
        tally.count(session, transaction, values)
    return SimulationRead(
        campaign_id=campaign.id, days=days, since=since, until=now,
        transactions_evaluated=len(transactions), truncated=truncated,
        transactions_triggered=tally.triggered, members_triggered=len(tally.members),
        transactions_held_out=tally.held_out, members_held_out=len(tally.members_held_out),
        stopped_by_limits=tally.limited, outcomes=tally.outcomes,
        cost=SimulationCost(vouchers=tally.vouchers, amount_off_minor=tally.amount_off,
                            points=tally.points))


def _lines(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, list[Line]]:
    found: dict[uuid.UUID, list[Line]] = defaultdict(list)
    for start in range(0, len(ids), 1000):
        for row in session.execute(
                select(PosTransactionLine.transaction_id, PosTransactionLine.sku,
                       PosTransactionLine.category, PosTransactionLine.quantity)
                .where(PosTransactionLine.transaction_id.in_(ids[start:start + 1000]))
                .order_by(PosTransactionLine.transaction_id, PosTransactionLine.line_no)):
            found[row.transaction_id].append(
                Line(sku=row.sku, category=row.category, quantity=row.quantity))
    return found


class _Tally:
    """The simulated outcomes, in time order, with the campaign's limits."""

    def __init__(self, campaign: Campaign, condition: Condition) -> None:
        self.campaign = campaign
        self.condition = condition
        self.budget = (None if campaign.max_outcomes is None
                       else max(campaign.max_outcomes - campaign.outcomes_count, 0))
        self.given: dict[uuid.UUID, list[datetime]] = defaultdict(list)
        self.triggered = self.held_out = self.limited = self.outcomes = 0
        self.vouchers = self.amount_off = self.points = 0
        self.members: set[uuid.UUID] = set()
        self.members_held_out: set[uuid.UUID] = set()

    def count(self, session: Session, transaction: PosTransaction,
              values: dict[str, Any]) -> None:
        if not self.condition.holds(values):
            return
        member = transaction.member_id
        assert member is not None
        self.triggered += 1
        self.members.add(member)
        if held_out(campaign_id=self.campaign.id, member_id=member,
                    share_bp=self.campaign.control_share_bp):
            self.held_out += 1
            self.members_held_out.add(member)
            return
        if not self._within_limits(member, transaction.occurred_at):
            self.limited += 1
            return
        self.outcomes += 1
        self.given[member].append(transaction.occurred_at)
        if self.budget is not None:
            self.budget -= 1
        for action in self.campaign.actions:
            if action["type"] == "issue_voucher":
                self.vouchers += 1
                offer = session.get(Offer, uuid.UUID(action["offer_id"]))
                if offer is not None and offer.kind == OfferKind.amount_off.value:
                    self.amount_off += offer.value
            elif action["type"] == "bonus_points":
                self.points += action["points"]
            elif action["type"] == "points_multiplier":
                self.points += (transaction.points_earned
                                * (action["multiplier_bp"] - BP_ONE) // BP_ONE)

    def _within_limits(self, member: uuid.UUID, at: datetime) -> bool:
        if self.budget is not None and self.budget <= 0:
            return False
        count, days = self.campaign.per_member_count, self.campaign.per_member_days
        if count is None:
            return True
        since = at - timedelta(days=days or 1)
        return sum(1 for given in self.given[member] if given > since) < count
