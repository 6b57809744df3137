"""The set-wise offline replay and the one-by-one replay agree with campaigns, referrals,
benefit rules and tiers active (issue 15, item 9).

Each Hypothesis example builds two identical merchants — a points program with tiers,
checkout campaigns giving bonus points, a points multiplier (on a condition that reads
the member) and a personal code, a tier-change campaign, a referral program with pending
referrals, a stamp-card benefit rule, members holding points and allowances — and
replays one random queue of sales into each: one as the server does (runs of plain sales
as sets), the other with every entry forced through the one-by-one path (the online
commit). Then balances, ledger postings, voucher states, campaign outcomes and budgets,
referral states, benefit progress, member statistics, outbox events and every entry's
answer are compared, named by member, receipt, campaign and offer.

A batch of sales per example keeps the worlds few: ``EXAMPLES`` examples of ``SALES``
sales each, at least ``MIN_SALES`` sales in all on every backend (the test fails if it
replayed fewer). The run also shows each kind of effect stopping a set run at least once.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from patron.campaigns.models import Campaign, CampaignOutcome
from patron.db import Database
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.models import JournalEntry, LedgerAccount, Posting
from patron.notify.models import OutboxEvent
from patron.offline import service
from patron.pos.models import PosTransaction
from patron.referrals.models import Referral
from patron.scores.models import MemberCategoryCount, MemberStats, MemberStoreVisit
from patron.vouchers.benefits.models import BenefitProgress
from patron.vouchers.models import Offer, Voucher
from tests.conftest import Tenant, auth, make_tenant, operator_key
from tests.offline.conftest import allowance
from tests.pos.conftest import enrol

EXAMPLES = 10  # whatever PATRON_HYPOTHESIS_EXAMPLES says: MIN_SALES in all
SALES = (50, 70)  # per example
MIN_SALES = 500

PROGRAM: dict[str, Any] = {
    "earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
    "category_multipliers_bp": {"coffee": 20_000}, "excluded_categories": ["tobacco"],
    "point_value_minor": 1, "min_burn": 100, "expiry_months": 6,
    "tiers": [{"name": "Blue", "threshold_points": 0},
              {"name": "Silver", "threshold_points": 150, "earn_multiplier_bp": 12_500},
              {"name": "Gold", "threshold_points": 600, "earn_multiplier_bp": 15_000}]}
CATALOGUE: list[dict[str, Any]] = [
    {"sku": "CF-1", "name": "Coffee", "category": "coffee", "unit_price": 350},
    {"sku": "BR-1", "name": "Bread", "category": "bakery", "unit_price": 420},
    {"sku": "WN-1", "name": "Wine", "category": "wine", "unit_price": 2_980},
    {"sku": "TB-1", "name": "Cigarettes", "category": "tobacco", "unit_price": 600},
    {"sku": "MK-1", "name": "Milk", "unit_price": 198},
    {"sku": "TV-1", "name": "Kettle", "category": "home", "unit_price": 9_800},
]
# Members by index: referrers, their referees (pending referrals), holders of points and
# an allowance, and the rest.
REFERRER_A, REFERRER_B, REFEREE_A1, REFEREE_A2, REFEREE_B1, HOLDER_1, HOLDER_2, PLAIN = (
    range(8))
MEMBERS = 8
REFERRED_BY = {REFEREE_A1: REFERRER_A, REFEREE_A2: REFERRER_A, REFEREE_B1: REFERRER_B}
HOLDERS = {HOLDER_1: 3_000, HOLDER_2: 450}  # points at the start

NUMBERS = itertools.count(52_001)


@dataclass
class Side:
    label: str
    tenant: Tenant
    members: list[dict[str, Any]]
    signed: dict[int, dict[str, Any]]
    answers: list[dict[str, Any]] = field(default_factory=list)
    applied: dict[str, Any] = field(default_factory=dict)


@dataclass
class Totals:
    sales: int = 0
    examples: int = 0
    set_wise: int = 0
    because: Counter[str] = field(default_factory=Counter)


def _post(client: TestClient, key: str, url: str, body: dict[str, Any],
          status: int = 201) -> dict[str, Any]:
    response = client.post(url, headers=auth(key), json=body)
    assert response.status_code == status, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _put(client: TestClient, key: str, url: str, body: dict[str, Any]) -> None:
    response = client.put(url, headers=auth(key), json=body)
    assert response.status_code == 200, response.text


def build(client: TestClient, database: Database, op_key: str, label: str) -> Side:
    """A merchant with every effect a sale can set off, built through the API."""
    number = next(NUMBERS)
    tenant = make_tenant(client, op_key, number=number, country="JP", currency="JPY",
                         timezone="Asia/Tokyo")
    key = tenant.merchant_key
    _put(client, key, f"/v1/merchants/{tenant.merchant_id}/program", PROGRAM)
    free_coffee = _post(client, key, "/v1/offers", {
        "name": "Free coffee", "kind": "free_item", "item_sku": "CF-1"})["id"]
    welcome = _post(client, key, "/v1/offers", {
        "name": "Welcome 100 off", "kind": "amount_off", "value": 100})["id"]
    stamp = _post(client, key, "/v1/offers", {
        "name": "Wine stamp reward", "kind": "amount_off", "value": 500})["id"]
    for campaign in [
            {"name": "Big basket", "trigger": "checkout", "priority": 30,
             "conditions": {"field": "purchase.total_minor", "op": "ge", "value": 12_000},
             "actions": [{"type": "bonus_points", "points": 50}]},
            {"name": "Coffee lover", "trigger": "checkout", "priority": 20,
             "conditions": {"field": "purchase.category_quantity", "key": "coffee",
                            "op": "ge", "value": 3},
             "actions": [{"type": "issue_voucher", "offer_id": free_coffee}],
             "max_outcomes": 6},
            {"name": "Regular", "trigger": "checkout", "priority": 10,
             "conditions": {"all": [
                 {"field": "member.purchases", "op": "ge", "value": 3},
                 {"field": "purchase.category_quantity", "key": "bakery", "op": "ge",
                  "value": 2}]},
             "actions": [{"type": "points_multiplier", "multiplier_bp": 20_000}],
             "per_member": {"count": 1, "period_days": 30}},
            {"name": "Moved up", "trigger": "tier_change",
             "conditions": {"field": "member.tier", "op": "eq", "value": "Gold"},
             "actions": [{"type": "bonus_points", "points": 25}]}]:
        _post(client, key, "/v1/campaigns", campaign)
    _put(client, key, f"/v1/merchants/{tenant.merchant_id}/referral-program", {
        "referrer_points": 300, "referee_points": 100, "min_purchase_minor": 3_000,
        "referee_offer_id": welcome, "monthly_cap": 1})
    _post(client, key, "/v1/benefit-rules", {
        "name": "Third wine", "measure": "items", "mode": "every", "threshold": 3,
        "category": "wine", "offer_id": stamp})
    members: list[dict[str, Any]] = []
    for index in range(MEMBERS):
        fields: dict[str, Any] = {"email": f"m{index}.{number}@example.com"}
        if index in REFERRED_BY:
            referrer = members[REFERRED_BY[index]]
            code = client.get(f"/v1/members/{referrer['id']}/referral",
                              headers=auth(key)).json()["code"]
            fields["referral_code"] = code
        members.append(enrol(client, tenant, **fields))
    with database.session_scope() as session:
        for index, points in HOLDERS.items():
            ledger.earn(session, merchant_id=uuid.UUID(tenant.merchant_id),
                        member_id=uuid.UUID(members[index]["id"]), points=points,
                        expires_at=None, idempotency_key=f"seed:{members[index]['id']}",
                        source="test", occurred_at=utcnow() - timedelta(days=1))
    signed = {index: allowance(client, tenant.pos_key, {"member_id": members[index]["id"]})
              for index in HOLDERS}
    return Side(label=label, tenant=tenant, members=members, signed=signed)


# --- the queue --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sale:
    member: int | None
    by_barcode: bool
    items: tuple[tuple[int, int], ...]  # (catalogue index, quantity)
    burn: int


sales = st.builds(
    Sale,
    member=st.none() | st.integers(0, MEMBERS - 1),
    by_barcode=st.booleans(),
    items=st.lists(st.tuples(st.integers(0, len(CATALOGUE) - 1), st.integers(1, 3)),
                   min_size=1, max_size=4).map(tuple),
    burn=st.sampled_from([0, 0, 0, 100, 250, 700]))
queues = st.lists(sales, min_size=SALES[0], max_size=SALES[1])


def realise(side: Side, queue: list[Sale], base: datetime) -> list[dict[str, Any]]:
    entries = []
    for index, sale in enumerate(queue):
        lines = [{**CATALOGUE[item], "quantity": quantity} for item, quantity in sale.items]
        transaction: dict[str, Any] = {
            "receipt_no": f"Q-{index + 1:04d}",
            "occurred_at": (base + timedelta(seconds=index - len(queue))).isoformat(),
            "currency": "JPY", "channel": "store", "lines": lines}
        signed = None
        if sale.member is not None:
            member = side.members[sale.member]
            transaction["member"] = ({"barcode": member["member_number"]} if sale.by_barcode
                                     else {"member_id": member["id"]})
            if sale.member in side.signed and sale.burn:
                transaction["points_to_burn"] = sale.burn
                signed = side.signed[sale.member]
        entries.append({"seq": index + 1, "queued_at": base.isoformat(), "allowance": signed,
                        "transaction": transaction,
                        "provisional": {"points_earned": 0,
                                        "points_burned": transaction.get("points_to_burn", 0),
                                        "discounts": {"points": transaction.get(
                                            "points_to_burn", 0)}}})
    return entries


def send(client: TestClient, side: Side, entries: list[dict[str, Any]]) -> None:
    response = client.post("/v1/pos/offline/batches", headers=auth(side.tenant.pos_key),
                           json={"entries": entries})
    assert response.status_code == 200, response.text
    answer = response.json()
    side.answers = answer["results"]
    side.applied = answer["applied"]


@contextlib.contextmanager
def one_by_one(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with monkeypatch.context() as patch:
        patch.setattr(service._Classifier, "plain", lambda self, entry, verified: "forced")
        yield


# --- what is compared -------------------------------------------------------------------------

def view(session: Session, side: Side) -> dict[str, Any]:
    """The world's books and effects, with its own ids named away."""
    merchant = uuid.UUID(side.tenant.merchant_id)
    who = {uuid.UUID(member["id"]): f"m{index}" for index, member in enumerate(side.members)}
    receipts = {transaction_id: receipt_no for transaction_id, receipt_no in session.execute(
        select(PosTransaction.id, PosTransaction.receipt_no)
        .where(PosTransaction.merchant_id == merchant))}
    referral_names = {referral_id: f"referral of {who[referee]}" for referral_id, referee in
                      session.execute(select(Referral.id, Referral.referee_id)
                                      .where(Referral.merchant_id == merchant))}
    offers = {offer_id: name for offer_id, name in session.execute(
        select(Offer.id, Offer.name).where(Offer.merchant_id == merchant))}
    campaigns = {campaign_id: name for campaign_id, name in session.execute(
        select(Campaign.id, Campaign.name).where(Campaign.merchant_id == merchant))}
    tenant = side.tenant
    names: dict[str, str] = {str(key): value for key, value in
                             [*who.items(), *receipts.items(), *referral_names.items(),
                              *offers.items(), *campaigns.items(),
                              (tenant.merchant_id, "merchant"), (tenant.store_id, "store"),
                              (tenant.pos_id, "till")]}

    def named(text: str | None) -> str | None:
        if text is None:
            return None
        for key, value in names.items():
            text = text.replace(key, value)
        return text

    balances = {f"m{index}": ledger.points_balance(session, merchant_id=merchant,
                                                    member_id=uuid.UUID(member["id"]))
                for index, member in enumerate(side.members)}
    postings = sorted(
        (who.get(member_id, "-") if member_id else "-", kind, reason, named(key), account,
         int(amount))
        for member_id, kind, reason, key, account, amount in session.execute(
            select(JournalEntry.member_id, JournalEntry.kind, JournalEntry.reason,
                   JournalEntry.idempotency_key, LedgerAccount.kind, Posting.amount)
            .join(Posting, Posting.entry_id == JournalEntry.id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(JournalEntry.merchant_id == merchant)))
    vouchers = sorted(
        (who.get(member_id, "-") if member_id else "-", offers[offer_id], source,
         int(count), revoked is not None)
        for member_id, offer_id, source, count, revoked in session.execute(
            select(Voucher.member_id, Voucher.offer_id, Voucher.source,
                   Voucher.redemptions_count, Voucher.revoked_at)
            .where(Voucher.merchant_id == merchant)))
    outcomes = sorted(
        (campaigns[campaign_id], who[member_id],
         receipts.get(transaction_id, "-") if transaction_id else "-", named(occasion),
         held_out, int(points), voucher_id is not None)
        for campaign_id, member_id, transaction_id, occasion, held_out, points, voucher_id
        in session.execute(select(
            CampaignOutcome.campaign_id, CampaignOutcome.member_id,
            CampaignOutcome.transaction_id, CampaignOutcome.occasion,
            CampaignOutcome.held_out, CampaignOutcome.points, CampaignOutcome.voucher_id)
            .where(CampaignOutcome.merchant_id == merchant)))
    budgets = {campaigns[campaign_id]: int(count) for campaign_id, count in session.execute(
        select(Campaign.id, Campaign.outcomes_count).where(Campaign.merchant_id == merchant))}
    referrals = sorted(
        (who[row.referee_id], who[row.referrer_id], row.status,
         receipts.get(row.transaction_id, "-") if row.transaction_id else "-",
         int(row.referee_points), int(row.referrer_points), row.referrer_refusal,
         row.referee_voucher_id is not None, row.referrer_voucher_id is not None)
        for row in session.scalars(select(Referral).where(Referral.merchant_id == merchant)))
    progress = sorted((who[member_id], int(count)) for member_id, count in session.execute(
        select(BenefitProgress.member_id, BenefitProgress.count)
        .where(BenefitProgress.merchant_id == merchant)))
    stats = sorted(
        (who[row.member_id], int(row.purchase_count), int(row.spend_minor),
         row.first_purchase_at.isoformat(), row.last_purchase_at.isoformat())
        for row in session.scalars(select(MemberStats)
                                   .where(MemberStats.merchant_id == merchant)))
    categories = sorted((who[row.member_id], row.category, int(row.quantity))
                        for row in session.scalars(select(MemberCategoryCount).where(
                            MemberCategoryCount.merchant_id == merchant)))
    visits = sorted((who[row.member_id], int(row.visit_count))
                    for row in session.scalars(select(MemberStoreVisit).where(
                        MemberStoreVisit.merchant_id == merchant)))
    events = sorted(
        (event_type, who.get(member_id, "-") if member_id else "-",
         json.dumps(_payload(payload, named), sort_keys=True))
        for event_type, member_id, payload in session.execute(
            select(OutboxEvent.type, OutboxEvent.member_id, OutboxEvent.payload)
            .where(OutboxEvent.merchant_id == merchant,
                   OutboxEvent.type != "member.enrolled")))
    return {"balances": balances, "postings": postings, "vouchers": vouchers,
            "campaign outcomes": outcomes, "campaign budgets": budgets,
            "referrals": referrals, "benefit progress": progress, "member stats": stats,
            "member categories": categories, "member visits": visits, "events": events}


# Values that differ between two worlds without meaning anything: codes, fresh ids.
_RANDOM = {"code", "barcode", "voucher_id", "benefit_id", "entry_id", "id", "display",
           "rule_id", "valid_from", "valid_until", "issued_at"}


def _payload(value: Any, named: Any) -> Any:
    if isinstance(value, dict):
        return {key: ("<random>" if key in _RANDOM else _payload(item, named))
                for key, item in value.items()}
    if isinstance(value, list):
        return [_payload(item, named) for item in value]
    if isinstance(value, str):
        return named(value)
    return value


def answer_view(side: Side) -> list[dict[str, Any]]:
    """Each entry's answer, the committed sale's figures and what it gave."""
    shown = []
    for result in side.answers:
        transaction = result["transaction"] or {}
        shown.append({
            "receipt_no": result["receipt_no"], "status": result["status"],
            "problem": (result["problem"] or {}).get("code"),
            "differences": result["differences"],
            "exceptions": len(result["exceptions"]),
            **{name: transaction.get(name) for name in (
                "subtotal", "total", "points_earned", "points_burned", "points_discount",
                "balance_after", "miles_earned")},
            "lines": [(line["points_earned"], line["points_burned"], line["points_discount"])
                      for line in transaction.get("lines", [])],
            "offers": sorted((offer.get("name"), offer.get("points"), "voucher" in offer)
                             for offer in transaction.get("offers", [])),
            "benefits": len(transaction.get("benefits", []))})
    return shown


# --- the test -----------------------------------------------------------------------------------

def test_the_set_path_agrees_with_the_one_by_one_path_with_every_effect_active(
        client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    op_key = operator_key(database)
    totals = Totals()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(queue=queues)
    def replay_both_ways(queue: list[Sale]) -> None:
        sides = {label: build(client, database, op_key, label)
                 for label in ("set", "one_by_one")}
        base = utcnow()
        for label, side in sides.items():
            entries = realise(side, queue, base)
            if label == "set":
                send(client, side, entries)
            else:
                with one_by_one(monkeypatch):
                    send(client, side, entries)
        with database.read_scope() as session:
            views = {label: view(session, side) for label, side in sides.items()}
        assert answer_view(sides["set"]) == answer_view(sides["one_by_one"])
        for name in views["set"]:
            assert views["set"][name] == views["one_by_one"][name], name
        # Every entry is accounted for: taken as a set or applied alone, and why.
        applied = sides["set"].applied
        assert applied["set_wise"] + applied["one_by_one"] == len(queue)
        assert sum(applied["one_by_one_because"].values()) == applied["one_by_one"]
        assert sides["one_by_one"].applied == {
            "set_wise": 0, "one_by_one": len(queue),
            "one_by_one_because": {"forced": len(queue)}}
        totals.sales += len(queue)
        totals.examples += 1
        totals.set_wise += applied["set_wise"]
        totals.because.update(applied["one_by_one_because"])

    replay_both_ways()
    assert totals.sales >= MIN_SALES, totals
    # The set path did part of the work, and each effect stopped a run at least once.
    assert totals.set_wise >= totals.sales // 5, totals
    assert {"checkout_campaign", "referral", "benefit_rule",
            "tier_change_campaign"} <= set(totals.because), totals
