"""Deliveries: how many the worker sends per second to local sinks, and how long a
checkout's voucher takes to reach the member's inbox.

Acceptance (issue 16): on 2 cores, at least 200 deliveries a second to local sinks, for
e-mail and for webhooks; commit-to-inbox latency p99 <= 2 s under 20 checkouts a second.

What it does, on a fresh database (SQLite unless ``--database-url``):

1. **Throughput.** A merchant (through the services) with ``--members`` members, each with
   an e-mail address and e-mail marketing consent, and a webhook endpoint on the local
   HTTP sink. ``--events`` ``tier.changed`` events are written to the outbox in one
   transaction (each makes one webhook delivery and one e-mail); the worker's rounds
   (``Deliverer.run_once``: dispatch, claim, send, record — the code ``patron serve``
   runs) go on until every delivery is delivered. Printed: deliveries per second, for
   webhooks and e-mail apart (each measured alone: the other channel's endpoint or consent
   is off for its run), with the worker's default batch and concurrency.
2. **Latency.** ``patron serve`` (one worker process, its delivery worker inside) with
   SMTP pointed at the local sink; a campaign gives every coffee buyer a voucher;
   ``--rate`` checkouts a second for ``--seconds`` seconds (an open loop: each sent at its
   time whatever the others do), each by another member. For each, the time from the
   commit's answer to the sink receiving the e-mail with the voucher's code. Printed: p50,
   p99, max, and how many arrived.

    python -m bench deliveries [--events 2000] [--members 500] [--rate 20] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import delete, func, select, update

from bench.environment import add_database_option, describe_machine, fresh_database, say, verdict
from bench.servers import running_server
from bench.shop import Shop, build_shop
from bench.sinks import SinkProcess, sink_process
from patron.campaigns.schemas import CampaignWrite
from patron.campaigns.service import create_campaign
from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import utcnow
from patron.members import consent
from patron.members.models import Member, Purpose
from patron.members.schemas import MemberCreate
from patron.members.service import enrol
from patron.notify.models import Delivery, DeliveryAttempt, OutboxEvent, WebhookEndpoint
from patron.notify.outbox import EventType, emit
from patron.notify.rules import DeliveryStatus
from patron.notify.schemas import WebhookEndpointCreate
from patron.notify.webhooks import create_endpoint
from patron.notify.worker import Deliverer
from patron.tenancy.models import Role
from patron.tenancy.service import Principal
from patron.vouchers.offers import create_offer
from patron.vouchers.schemas import OfferWrite

THROUGHPUT_TARGET = 200.0
P99_TARGET_S = 2.0


def _as_merchant(shop: Shop) -> Principal:
    return Principal(key_id=None, role=Role.merchant, merchant_id=shop.merchant_id)


def _members(database: Database, shop: Shop, count: int) -> list[uuid.UUID]:
    merchant = _as_merchant(shop)
    ids = []
    with database.session_scope() as session:
        for number in range(count):
            member = enrol(session, actor=merchant, data=MemberCreate(
                email=f"member{number}@bench.example", language="en",
                consents={"email": True}))
            ids.append(member.id)
    return ids


def _events(database: Database, shop: Shop, members: Sequence[uuid.UUID],
            events: int) -> None:
    with database.session_scope() as session:
        for number in range(events):
            emit(session, type=EventType.tier_changed, merchant_id=shop.merchant_id,
                 member_id=members[number % len(members)],
                 payload={"from": None, "to": f"Tier {number}"})


def _drain(database: Database, deliverer: Deliverer, expected: int) -> float:
    """Seconds until ``expected`` deliveries are delivered (rounds of the worker)."""
    started = time.perf_counter()
    while True:
        deliverer.run_once()
        with database.session_scope() as session:
            delivered = session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.status == DeliveryStatus.delivered.value)) or 0
        if delivered >= expected:
            return time.perf_counter() - started
        if time.perf_counter() - started > 600:
            raise SystemExit(f"only {delivered} of {expected} delivered in 10 minutes")


def _reset(database: Database) -> None:
    with database.session_scope() as session:
        session.execute(delete(DeliveryAttempt))
        session.execute(delete(Delivery))


def throughput(database: Database, *, events: int, members: int) -> dict[str, float]:
    shop = build_shop(database, stores=1, tills_per_store=1)
    member_ids = _members(database, shop, members)
    results: dict[str, float] = {}
    with sink_process("http") as receiver, sink_process("smtp") as mailbox:
        with database.session_scope() as session:
            endpoint_id = create_endpoint(session, actor=_as_merchant(shop),
                                          data=WebhookEndpointCreate(
                                              url=receiver.url, events=["tier.changed"])).id
        # Each channel alone: webhooks with e-mail consent withdrawn, then e-mail with the
        # endpoint disabled.
        with database.session_scope() as session:
            for member_id in member_ids:
                consent.record(session, member_id=member_id, merchant_id=shop.merchant_id,
                               channel="email", purpose=Purpose.marketing, granted=False,
                               source="bench")
        results["webhooks"] = _run(database, shop, member_ids, events, mailbox)
        with database.session_scope() as session:
            session.execute(update(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
                            .values(disabled_at=utcnow(), disabled_reason="by_request"))
            for member_id in member_ids:
                consent.record(session, member_id=member_id, merchant_id=shop.merchant_id,
                               channel="email", purpose=Purpose.marketing, granted=True,
                               source="bench")
        _reset(database)
        results["e-mail"] = _run(database, shop, member_ids, events, mailbox)
        # Every one arrived, once (the database says delivered; the sinks agree).
        assert len({arrival.key for arrival in mailbox.arrivals()}) == events
        assert len({arrival.key for arrival in receiver.arrivals()}) == events
    return results


def _run(database: Database, shop: Shop, member_ids: Sequence[uuid.UUID], events: int,
         mailbox: SinkProcess) -> float:
    _events(database, shop, member_ids, events)
    settings = get_settings().model_copy(update={"smtp_url": mailbox.url})
    deliverer = Deliverer(database, settings)
    try:
        seconds = _drain(database, deliverer, events)
    finally:
        deliverer.close()
    return events / seconds


# --- latency ----------------------------------------------------------------------------

def _campaign(database: Database, shop: Shop) -> None:
    with database.session_scope() as session:
        offer = create_offer(session, actor=_as_merchant(shop), data=OfferWrite.model_validate(
            {"name": "Free croissant", "kind": "free_item", "item_sku": "CR-1"}))
        create_campaign(session, actor=_as_merchant(shop), data=CampaignWrite.model_validate({
            "name": "Coffee lovers", "trigger": "checkout",
            "conditions": {"field": "purchase.categories", "op": "contains",
                           "value": "coffee"},
            "actions": [{"type": "issue_voucher", "offer_id": str(offer.id)}]}))


def _checkout(base: str, key: str, number: str, receipt: str) -> dict[str, object]:
    body = {"receipt_no": receipt, "occurred_at": utcnow().isoformat(), "currency": "JPY",
            "member": {"barcode": number}, "channel": "store",
            "lines": [{"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
                       "unit_price": 400}],
            "points_to_burn": 0, "payment": {"method": "card", "amount": 400}}
    response = httpx.post(f"{base}/v1/pos/transactions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    answer: dict[str, object] = response.json()
    return answer


def latency(database: Database, *, rate: float, seconds: float) -> list[float]:
    count = int(rate * seconds)
    shop = build_shop(database, stores=1, tills_per_store=4)
    member_ids = _members(database, shop, count)
    _campaign(database, shop)
    with database.session_scope() as session:
        numbers = dict(session.execute(select(Member.id, Member.member_number)
                                       .where(Member.id.in_(member_ids))).all())
    # The time each checkout's answer came, by transaction; the time each e-mail arrived,
    # by its delivery (its Message-ID).
    committed: dict[str, float] = {}
    with sink_process("smtp") as mailbox:
        os.environ.update({"PATRON_SMTP_URL": mailbox.url, "PATRON_DELIVERIES_IN_SERVE": "true",
                           "PATRON_JOBS_INTERVAL_SECONDS": "0"})
        with running_server(database.url, workers=1) as server, \
                ThreadPoolExecutor(32) as pool:
            started = time.perf_counter()

            def one(index: int) -> None:
                time.sleep(max(0.0, started + index / rate - time.perf_counter()))
                till = shop.tills[index % len(shop.tills)]
                answer = _checkout(server.url, till.key, numbers[member_ids[index]],
                                   f"L-{index}")
                committed[str(answer["id"])] = time.time()

            list(pool.map(one, range(count)))
            deadline = time.perf_counter() + 30
            while time.perf_counter() < deadline:
                arrived = {arrival.key: arrival.at for arrival in mailbox.arrivals()}
                deliveries = _voucher_deliveries(database)
                if all(deliveries.get(transaction) in arrived for transaction in committed):
                    break
                time.sleep(0.2)
    waits = [arrived[deliveries[transaction]] - at for transaction, at in committed.items()
             if deliveries.get(transaction) in arrived]
    if len(waits) < len(committed):
        with database.session_scope() as session:
            states = session.execute(
                select(Delivery.status, Delivery.reason, func.count())
                .where(Delivery.event_type == EventType.campaign_outcome.value)
                .group_by(Delivery.status, Delivery.reason)).all()
        say(f"not arrived: {len(committed) - len(waits)}; the vouchers' e-mails: "
            + "; ".join(f"{count} {status} ({reason})" for status, reason, count in states))
    return waits


def _voucher_deliveries(database: Database) -> dict[str, str]:
    """The e-mail delivery (its id, as the Message-ID says it) of each checkout's voucher,
    by the checkout's transaction id."""
    with database.session_scope() as session:
        rows = session.execute(
            select(Delivery.id, OutboxEvent.payload).join(
                OutboxEvent, OutboxEvent.id == Delivery.event_id)
            .where(Delivery.event_type == EventType.campaign_outcome.value,
                   Delivery.channel == "email")).all()
    return {str(payload.get("transaction_id")): str(delivery_id)
            for delivery_id, payload in rows}


def _quantile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench deliveries", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    add_database_option(parser)
    args = parser.parse_args(argv)
    # The sinks listen on loopback.
    os.environ["PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS"] = "true"
    say(f"machine:  {describe_machine()}")
    with fresh_database(args.database_url) as database:
        rates = throughput(database, events=args.events, members=args.members)
    for channel, per_second in rates.items():
        say(f"{channel}: {args.events} deliveries to a local sink at {per_second:,.0f}/s "
            f"(target >= {THROUGHPUT_TARGET:.0f}/s): {verdict(per_second >= THROUGHPUT_TARGET)}")
    with fresh_database(args.database_url) as database:
        waits = latency(database, rate=args.rate, seconds=args.seconds)
    expected = int(args.rate * args.seconds)
    if not waits:
        say(f"commit to inbox: none of {expected} e-mails arrived: FAIL")
        return
    p99 = _quantile(waits, 0.99)
    say(f"commit to inbox at {args.rate:.0f} checkouts/s for {args.seconds:.0f} s: "
        f"{len(waits)} of {expected} arrived; p50 {statistics.median(waits):.2f} s, "
        f"p99 {p99:.2f} s, max {max(waits):.2f} s (target p99 <= {P99_TARGET_S:.0f} s): "
        f"{verdict(p99 <= P99_TARGET_S and len(waits) == expected)}")
