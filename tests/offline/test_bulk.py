"""The set-wise offline replay (``patron.offline.bulk``) leaves exactly the books, answers,
rows and events of the one-by-one replay.

Two identically built merchants in one database receive the same offline queue (mapped to
each one's members and allowances): merchant A replays it as the server does (runs of
plain sales as sets), merchant B with every entry forced through the one-by-one path.
Then every answer and every row the replays can write is compared with the world's own
ids mapped away. A PostgreSQL test commits one of a run's receipts online while the batch
is under way: the run falls back to one by one and nothing is written twice. A sale the
till dated a little ahead of the server's clock counts towards the tier of the member's
later sales alike on both paths.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, func, or_, select
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from patron.db import Database, table_of
from patron.kit.clock import clock, utcnow
from patron.ledger import service as ledger
from patron.ledger.models import (
    JournalEntry,
    LedgerAccount,
    PointLot,
    PointLotDraw,
    Posting,
)
from patron.members.models import Membership
from patron.notify.models import OutboxEvent
from patron.offline import bulk, service
from patron.offline.models import OfflineAllowance, OfflineEntry, OfflineException
from patron.offline.schemas import BatchEntry, EntryResult
from patron.pos import service as pos
from patron.pos.models import PosReturn, PosReturnLine, PosTransaction, PosTransactionLine
from patron.pos.schemas import PurchaseWrite
from patron.scores.models import (
    MemberCategoryCount,
    MemberPurchaseDay,
    MemberStats,
    MemberStoreVisit,
)
from patron.security.models import SecurityEvent
from patron.tenancy.models import Terminal
from patron.tenancy.service import authenticate
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import TEST_DATABASE_URL, Tenant, auth, make_tenant, operator_key
from tests.offline.conftest import allowance, second_till
from tests.pos.conftest import enrol

PROGRAM: dict[str, Any] = {
    "earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
    "category_multipliers_bp": {"coffee": 20_000, "wine": 5_000},
    "excluded_categories": ["tobacco", "gift_card"], "point_value_minor": 1,
    "min_burn": 100, "expiry_months": 6,
    "tiers": [{"name": "Blue", "threshold_points": 0},
              {"name": "Silver", "threshold_points": 2_000, "earn_multiplier_bp": 12_500},
              {"name": "Gold", "threshold_points": 5_000, "earn_multiplier_bp": 15_000}]}
RATES = {"rates": [{"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000}]}

CATALOGUE: list[dict[str, Any]] = [
    {"sku": "BR-1", "name": "Bread", "category": "bakery", "unit_price": 1234},
    {"sku": "CF-1", "gtin": "4006381333931", "name": "Coffee", "category": "Coffee",
     "unit_price": 350},
    {"sku": "WN-1", "name": "Wine", "category": "Wine", "unit_price": 2980},
    {"sku": "TB-1", "name": "Cigarettes", "category": "tobacco", "unit_price": 600},
    {"sku": "GC-1", "name": "Gift card", "category": "gift_card", "unit_price": 5000},
    {"sku": "MK-1", "name": "Milk", "unit_price": 198},
]
TV = {"sku": "TV-1", "name": "TV", "category": "electronics", "unit_price": 49_800}
EXCLUDED = [CATALOGUE[3], CATALOGUE[4]]

# Members of each world, by index: how they start.
RICH, LOTS, NEAR_SILVER, NEAR_GOLD, NO_ACCOUNT, DEBTOR, BY_PHONE, BY_CARD, OUTSIDER, PLAIN = (
    range(10))
MEMBERS = 10
BURNERS = (RICH, LOTS, NEAR_SILVER, DEBTOR, PLAIN)  # an allowance each at the world's till
NAMED = (RICH, LOTS, NEAR_SILVER, NEAR_GOLD, NO_ACCOUNT, DEBTOR, PLAIN)  # by id or barcode
# Points lots at the start: (points, expires in days from the start, None = never).
SEED_LOTS: dict[int, list[tuple[int, int | None]]] = {
    RICH: [(3000, None), (2000, 40), (1500, 3), (500, -2)],  # one past its date, not expired
    LOTS: [(300, 10), (400, 10), (700, 200)],  # two expiring together: the older first
    NEAR_SILVER: [(1950, None)],
    NEAR_GOLD: [(4900, 100)],
    BY_PHONE: [(100, 50)],
    PLAIN: [(250, 20)],
}
UNKNOWN_BARCODE = "99999000000197"
QUEUE = 150
SEEDS = [11, 22, 33]


# --- the worlds ---------------------------------------------------------------------------

@dataclass
class Side:
    """One merchant with its members, allowances and the online sales made at set-up."""

    label: str
    tenant: Tenant
    till2_key: str
    members: list[dict[str, Any]]
    phones: dict[int, str]
    cards: dict[int, str]
    signed: dict[int, dict[str, Any]] = field(default_factory=dict)
    online: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)  # every entry sent
    answers: list[list[dict[str, Any]]] = field(default_factory=list)  # per batch sent

    def who(self, how: str, index: int) -> dict[str, Any]:
        member = self.members[index]
        if how == "barcode":
            return {"barcode": member["member_number"]}
        if how == "member_id":
            return {"member_id": member["id"]}
        if how == "phone":
            return {"phone": self.phones[index]}
        if how == "card_uid":
            return {"card_uid": self.cards[index]}
        raise AssertionError(how)


def _post(client: TestClient, key: str, url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(url, headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _basket(*items: tuple[dict[str, Any], int]) -> list[dict[str, Any]]:
    return [{**item, "quantity": quantity} for item, quantity in items]


def _body(receipt_no: str, at: datetime, lines: list[dict[str, Any]],
          member: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"receipt_no": receipt_no, "occurred_at": at.isoformat(),
                            "currency": "JPY", "channel": "store", "lines": lines, **extra}
    if member is not None:
        body["member"] = member
    return body


def build(client: TestClient, database: Database, op_key: str, *, label: str, number: int,
          outsiders: Tenant, start: datetime) -> Side:
    """A merchant set up through the API exactly like its twin (only ids differ)."""
    tenant = make_tenant(client, op_key, number=number, country="JP", currency="JPY",
                         timezone="Asia/Tokyo")
    put = client.put(f"/v1/merchants/{tenant.merchant_id}/program",
                     headers=auth(tenant.merchant_key), json=PROGRAM)
    assert put.status_code == 200, put.text
    till2 = second_till(client, op_key, tenant)
    digit = number % 10
    phones = {BY_PHONE: f"+81 90-100{digit}-5{BY_PHONE:03d}"}
    cards = {BY_CARD: f"04:A2:{digit:02X}:6A:B3:5C:{BY_CARD:02X}"}
    members = []
    for index in range(MEMBERS):
        fields: dict[str, Any] = {"email": f"m{index}.{label}@example.com"}
        if index in phones:
            fields["phone"] = phones[index]
        if index in cards:
            fields["card_uid"] = cards[index]
        # The outsider belongs to another merchant of the coalition: named by barcode here.
        members.append(enrol(client, outsiders if index == OUTSIDER else tenant, **fields))
    side = Side(label=label, tenant=tenant, till2_key=till2, members=members, phones=phones,
                cards=cards)
    with database.session_scope() as session:
        for index, lots in SEED_LOTS.items():
            for position, (points, days) in enumerate(lots):
                ledger.earn(session, merchant_id=uuid.UUID(tenant.merchant_id),
                            member_id=uuid.UUID(members[index]["id"]), points=points,
                            expires_at=None if days is None else start + timedelta(days=days),
                            idempotency_key=f"seed:{members[index]['id']}:{position}",
                            source="test", occurred_at=start - timedelta(days=1))
    # The debtor: points earned, spent, then the purchase returned (balance -100).
    debtor = side.who("barcode", DEBTOR)
    big = _post(client, tenant.pos_key, "/v1/pos/transactions", _body(
        "DEBT-1", start - timedelta(hours=3), _basket((TV, 1)), debtor))
    _post(client, tenant.pos_key, "/v1/pos/transactions", _body(
        "DEBT-2", start - timedelta(hours=2), _basket((CATALOGUE[0], 1)), debtor,
        points_to_burn=big["points_earned"]))
    back = _post(client, tenant.pos_key, f"/v1/pos/transactions/{big['id']}/returns",
                 {"return_no": "DEBT-R", "occurred_at": (start - timedelta(hours=1)).isoformat()})
    assert back["balance_after"] < 0
    for index in BURNERS:
        side.signed[index] = allowance(client, tenant.pos_key, side.who("member_id", index))
    # Spent online at the other till after the allowance was issued: later burns under the
    # allowance find the balance short.
    _post(client, till2, "/v1/pos/transactions", _body(
        "ELSE-1", start - timedelta(minutes=30), _basket((CATALOGUE[0], 1)),
        side.who("barcode", LOTS), points_to_burn=900))
    # Committed online, answer lost, queued: once with the same body, once with another.
    for receipt_no in ("ONLINE-1", "ONLINE-2"):
        body = _body(receipt_no, start - timedelta(minutes=20),
                     _basket((CATALOGUE[0], 2), (CATALOGUE[1], 1)),
                     side.who("member_id", PLAIN), payment={"method": "card", "amount": 2818})
        side.online[receipt_no] = {"body": body, "answer": _post(
            client, tenant.pos_key, "/v1/pos/transactions", body)}
    return side


# --- the queue ------------------------------------------------------------------------------

@dataclass
class Spec:
    """One queued sale, the same in both worlds."""

    kind: str
    lines: list[dict[str, Any]]
    who: tuple[str, int] | None = None  # (how the member is named, member index)
    burn: int = 0
    allowance: int | None = None  # whose allowance (member index) goes with it
    shift: timedelta | None = None  # the sale's time, from its place in the queue if None
    tokyo: bool = False  # occurred_at sent with +09:00
    extra: dict[str, Any] = field(default_factory=dict)
    online: str | None = None  # "ONLINE-1": the online body as is; "ONLINE-2": another


def _random_lines(rng: random.Random) -> list[dict[str, Any]]:
    items = rng.sample(CATALOGUE, rng.randint(1, 4))
    return [{**item, "quantity": rng.randint(1, 3)} for item in items]


def _subtotal(lines: Sequence[dict[str, Any]]) -> int:
    return sum(line["unit_price"] * line["quantity"] for line in lines)


def make_queue(seed: int, limits: dict[int, int]) -> list[Spec]:
    """~150 sales of every kind the replay meets, burns planned against the allowances'
    limits (``limits``: burn limit per burner) so some fit, some do not."""
    rng = random.Random(seed)
    remaining = dict(limits)
    # What the member still holds as far as the queue can tell (earns ignored).
    holds = {index: sum(points for points, _ in SEED_LOTS.get(index, [])) for index in BURNERS}
    holds[LOTS] -= 900
    specials: list[Spec] = [
        Spec("unknown_barcode", _random_lines(rng), who=("unknown", 0)),
        Spec("voucher", _random_lines(rng), who=("member_id", RICH), allowance=RICH,
             extra={"vouchers": [{"code": "ABCD-EFGH-JKLM"}]}),
        Spec("miles_burn", _random_lines(rng), who=("barcode", PLAIN),
             extra={"miles_to_burn": 10}),
        Spec("reported_miles", _random_lines(rng), who=("barcode", NEAR_GOLD),
             extra={"miles": 7}),
        Spec("future", _random_lines(rng), who=("barcode", NEAR_SILVER),
             shift=timedelta(minutes=2)),
        Spec("past_10_days", _random_lines(rng), who=("member_id", NEAR_GOLD),
             shift=timedelta(days=-10)),
        Spec("past_10_days_burn", _basket((TV, 1)), who=("member_id", RICH), burn=300,
             allowance=RICH, shift=timedelta(days=-10)),
        Spec("too_old", _random_lines(rng), who=("barcode", PLAIN), shift=timedelta(days=-31)),
        Spec("zero_points", _basket((EXCLUDED[0], 2), (EXCLUDED[1], 1)),
             who=("member_id", NO_ACCOUNT)),
        Spec("zero_points", _basket((EXCLUDED[0], 1)), who=("barcode", RICH)),
        Spec("below_min_burn", _basket((TV, 1)), who=("member_id", RICH), burn=50,
             allowance=RICH),
        Spec("burn_over_basket", _basket((CATALOGUE[5], 1)), who=("member_id", RICH), burn=500,
             allowance=RICH),
        Spec("burn_without_allowance", _basket((TV, 1)), who=("barcode", NEAR_GOLD), burn=200),
        Spec("anonymous_burn", _basket((TV, 1)), burn=200, allowance=None),
        Spec("other_members_allowance", _basket((TV, 1)), who=("member_id", PLAIN), burn=100,
             allowance=RICH),
        Spec("shortfall", _basket((TV, 1)), who=("member_id", LOTS), burn=limits[LOTS],
             allowance=LOTS),
        Spec("debtor_burn", _basket((TV, 1)), who=("barcode", DEBTOR), burn=100,
             allowance=DEBTOR),
        Spec("invalid_gtin", [{**CATALOGUE[1], "gtin": "4006381333932", "quantity": 1}],
             who=("barcode", PLAIN)),
        Spec("outsider_by_id", _random_lines(rng), who=("member_id", OUTSIDER)),
        Spec("online_same", [], online="ONLINE-1"),
        Spec("online_other", [], online="ONLINE-2"),
        Spec("tokyo_offset", _random_lines(rng), who=("member_id", PLAIN), tokyo=True),
    ]
    # Big spenders across a tier threshold, and the outsider, inside runs of plain sales.
    middle = [Spec("big", _basket((TV, 1), (CATALOGUE[2], 1)), who=("barcode", NEAR_SILVER)),
              Spec("big", _basket((TV, 2)), who=("member_id", NEAR_GOLD)),
              Spec("outsider", _random_lines(rng), who=("barcode", OUTSIDER)),
              Spec("big", _basket((TV, 1)), who=("barcode", NO_ACCOUNT)),
              Spec("big", _basket((TV, 3)), who=("member_id", DEBTOR))]
    kinds = ["anonymous"] * 25 + ["barcode"] * 20 + ["member_id"] * 15 + ["phone"] * 5 + [
        "card"] * 5 + ["burn"] * 20 + ["over_allowance"] * 4 + ["over_balance"] * 3 + [
        "zero"] * 3
    queue: list[Spec] = []
    for _ in range(QUEUE - len(specials) - len(middle)):
        kind = rng.choice(kinds)
        lines = _random_lines(rng)
        if kind == "anonymous":
            queue.append(Spec(kind, lines, extra=rng.choice(
                [{}, {"payment": {"method": "cash", "amount": _subtotal(lines)}},
                 {"channel": "online"}])))
        elif kind in ("barcode", "member_id"):
            queue.append(Spec(kind, lines, who=(kind, rng.choice(NAMED))))
        elif kind == "phone":
            queue.append(Spec(kind, lines, who=("phone", BY_PHONE)))
        elif kind == "card":
            queue.append(Spec(kind, lines, who=("card_uid", BY_CARD)))
        elif kind == "zero":
            queue.append(Spec(kind, _basket((rng.choice(EXCLUDED), rng.randint(1, 2))),
                              who=(rng.choice(("barcode", "member_id")), rng.choice(NAMED))))
        else:
            # The LOTS member's allowance is kept for burns the balance no longer holds.
            burner = rng.choice([index for index in BURNERS if index not in (DEBTOR, LOTS)])
            lines = _basket((TV, 1), (rng.choice(CATALOGUE), 1))
            most = min(remaining[burner], holds[burner], _subtotal(lines))
            if kind == "burn" and most >= 100:
                burn = rng.randint(100, min(most, 2500))
            elif kind == "over_allowance" and remaining[burner] + 1 < _subtotal(lines):
                burn = max(100, remaining[burner] + rng.randint(1, 400))
            elif kind == "over_balance" and holds[LOTS] + 1 <= remaining[LOTS]:
                burner = LOTS
                burn = max(100, rng.randint(holds[LOTS] + 1, remaining[LOTS]))
            else:
                queue.append(Spec("member_id", lines, who=("member_id", burner)))
                continue
            if burn <= remaining[burner] and burn <= holds[burner]:
                remaining[burner] -= burn
                holds[burner] -= burn
            queue.append(Spec(kind, lines, who=(rng.choice(("barcode", "member_id")), burner),
                              burn=burn, allowance=burner))
    for spec in specials:
        queue.insert(rng.randrange(len(queue) + 1), spec)
    third = len(queue) // 3
    for spec in middle:
        queue.insert(rng.randrange(third, 2 * third), spec)
    assert len(queue) == QUEUE
    return queue


def realise(side: Side, queue: Sequence[Spec], base: datetime) -> list[dict[str, Any]]:
    """The queue as the world's register sends it: its members, its allowances."""
    entries = []
    for index, spec in enumerate(queue):
        at = base + (spec.shift if spec.shift is not None
                     else timedelta(seconds=index - len(queue)))
        if spec.online is not None:
            transaction = json.loads(json.dumps(side.online[spec.online]["body"]))
            if spec.online == "ONLINE-2":
                transaction["lines"][0]["quantity"] += 1
        else:
            when = at.astimezone(timezone(timedelta(hours=9))) if spec.tokyo else at
            receipt_no = f"Q-{index + 1:04d}"
            member = None
            if spec.who is not None:
                how, who = spec.who
                member = ({"barcode": UNKNOWN_BARCODE} if how == "unknown"
                          else side.who(how, who))
            transaction = _body(receipt_no, when, spec.lines, member,
                                points_to_burn=spec.burn, **spec.extra)
        subtotal = _subtotal(transaction["lines"])
        vouchers = {use["code"]: 100 for use in transaction.get("vouchers", [])}
        entries.append({
            "seq": index + 1, "queued_at": (at + timedelta(seconds=1)).isoformat(),
            "allowance": None if spec.allowance is None else side.signed[spec.allowance],
            "transaction": transaction,
            "provisional": {"points_earned": 0 if spec.who is None
                            else max(subtotal - spec.burn, 0) // 100,
                            "points_burned": spec.burn,
                            "discounts": {"points": spec.burn, "vouchers": vouchers}}})
    return entries


def send(client: TestClient, side: Side, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = client.post("/v1/pos/offline/batches", headers=auth(side.tenant.pos_key),
                           json={"entries": entries})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert [result["seq"] for result in results] == [entry["seq"] for entry in entries]
    side.answers.append(results)
    side.sent.extend(entries)
    return results


# --- naming ids away -------------------------------------------------------------------------

UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Times a row gets when it is written (not what it records), and the row's own key where
# that is a sequence number or a random id no other row names.
WRITTEN_AT = {"created_at", "updated_at", "joined_at"}
DROPPED: dict[str, set[str]] = {
    "postings": {"id"}, "point_lot_draws": {"id"}, "outbox_events": {"id"},
    "memberships": {"id"}, "security_events": {"id", "occurred_at"},
    # Hashes of bodies that name the world's members: checked against each world's own
    # bodies instead (``_check_hashes``).
    "pos_transactions": {"request_hash"}, "offline_entries": {"entry_hash"},
    "offline_exceptions": {"fingerprint"},
    # Issued at set-up, seconds apart; the signed document holds the world's ids.
    "offline_allowances": {"issued_at", "expires_at", "document"},
}
JSON_TEXT = {"response_json", "result_json"}


class Names:
    """World-specific ids → names both worlds share."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.numbers: dict[str, str] = {}
        self.lots: dict[int, str] = {}
        # Texts named inside longer strings: when the world's allowances were issued.
        self.texts: dict[str, str] = {}
        # Set-up instants (a member's enrolment) that the twin world had seconds apart.
        self.times: dict[datetime, str] = {}

    def add(self, value: Any, name: str) -> None:
        key = str(value)
        assert self.ids.get(key, name) == name, (key, name, self.ids[key])
        self.ids[key] = name

    def _id(self, text: str) -> str:
        try:
            return self.ids[text]
        except KeyError:
            raise AssertionError(f"an id the comparison cannot name: {text}") from None

    def __call__(self, value: Any) -> Any:
        if isinstance(value, uuid.UUID):
            return self._id(str(value))
        if isinstance(value, str):
            if value in self.numbers:
                return self.numbers[value]
            for text, name in self.texts.items():
                value = value.replace(text, name)
            return UUID_TEXT.sub(lambda match: self._id(match.group(0)), value)
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items() if key not in WRITTEN_AT}
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        if isinstance(value, datetime):
            return self.times.get(value, value.isoformat())
        return value


def _tables() -> dict[str, Table]:
    return {table_of(model).name: table_of(model) for model in (
        PosTransaction, PosTransactionLine, PosReturn, PosReturnLine, JournalEntry, Posting,
        LedgerAccount, PointLot, PointLotDraw, Membership, MemberStats, MemberPurchaseDay,
        MemberCategoryCount,
        MemberStoreVisit, OutboxEvent, OfflineEntry, OfflineException, OfflineAllowance,
        SecurityEvent)}


def name_world(session: Session, side: Side) -> Names:
    names = Names()
    tenant = side.tenant
    merchant = uuid.UUID(tenant.merchant_id)
    names.add(merchant, "merchant")
    names.texts[f"Merchant {tenant.number}"] = "<merchant name>"
    names.add(tenant.store_id, "store")
    names.add(tenant.pos_id, "till")
    names.add(tenant.reader_id, "reader")
    till2 = session.scalar(select(Terminal.id).where(
        Terminal.store_id == uuid.UUID(tenant.store_id), Terminal.code == "pos-9"))
    names.add(till2, "till2")
    members = [uuid.UUID(member["id"]) for member in side.members]
    for index, member in enumerate(side.members):
        names.add(member["id"], f"m{index}")
        names.numbers[member["member_number"]] = f"number{index}"
        if index == OUTSIDER:
            names.add(member["merchant_id"], "outsiders")
    for member_id, joined_at in session.execute(
            select(Membership.member_id, Membership.joined_at)
            .where(Membership.member_id.in_(members), Membership.source == "api")):
        names.times[joined_at] = f"<{names(member_id)} enrolled>"
    for transaction_id, receipt_no, terminal_id in session.execute(
            select(PosTransaction.id, PosTransaction.receipt_no, PosTransaction.terminal_id)
            .where(PosTransaction.merchant_id == merchant)):
        names.add(transaction_id, f"tx:{names(terminal_id)}:{receipt_no}")
    for return_id, return_no in session.execute(
            select(PosReturn.id, PosReturn.return_no).where(PosReturn.merchant_id == merchant)):
        names.add(return_id, f"return:{return_no}")
    for account_id, key in session.execute(select(LedgerAccount.id, LedgerAccount.key).where(
            or_(LedgerAccount.merchant_id == merchant, LedgerAccount.member_id.in_(members),
                LedgerAccount.key == "coalition_pool"))):
        names.add(account_id, f"account:{names(key)}")
    for entry_id, idempotency_key in session.execute(
            select(JournalEntry.id, JournalEntry.idempotency_key).where(
                or_(JournalEntry.merchant_id == merchant, JournalEntry.member_id.in_(members)))):
        names.add(entry_id, f"entry:{names(idempotency_key)}")
    for lot_id, lot_entry_id in session.execute(
            select(PointLot.id, PointLot.entry_id).where(PointLot.merchant_id == merchant)):
        assert int(lot_id) not in names.lots
        names.lots[int(lot_id)] = f"lot:{names(lot_entry_id)}"
    issued: Counter[str] = Counter()
    for allowance_id, owner_id, issued_at, expires_at in session.execute(
            select(OfflineAllowance.id, OfflineAllowance.member_id, OfflineAllowance.issued_at,
                   OfflineAllowance.expires_at)
            .where(OfflineAllowance.merchant_id == merchant)
            .order_by(OfflineAllowance.issued_at)):
        owner = names(owner_id)
        issued[owner] += 1
        name = f"allowance:{owner}:{issued[owner]}"
        names.add(allowance_id, name)
        names.texts[issued_at.isoformat()] = f"<{name} issued>"
        names.texts[expires_at.isoformat()] = f"<{name} expires>"
    for exception in session.scalars(select(OfflineException).where(
            OfflineException.merchant_id == merchant)):
        names.add(exception.id, f"exception:{exception.receipt_no}:{exception.kind}:"
                                f"{exception.code}:{exception.voucher_code}")
    return names


def dump(session: Session, side: Side, names: Names) -> dict[str, list[str]]:
    """Every row the replays may write for this world, named and sorted."""
    merchant = uuid.UUID(side.tenant.merchant_id)
    members = [uuid.UUID(member["id"]) for member in side.members]
    entries = select(JournalEntry.id).where(or_(JournalEntry.merchant_id == merchant,
                                                JournalEntry.member_id.in_(members)))
    tables = _tables()
    scopes = {
        "journal_entries": JournalEntry.id.in_(entries),
        "postings": Posting.entry_id.in_(entries),
        "ledger_accounts": or_(LedgerAccount.merchant_id == merchant,
                               LedgerAccount.member_id.in_(members)),
        "memberships": Membership.member_id.in_(members),
    }
    state: dict[str, list[str]] = {}
    for name, table in tables.items():
        scope = scopes.get(name)
        if scope is None:
            scope = table.c.merchant_id == merchant
        rows = []
        for row in session.execute(select(table).where(scope)).mappings():
            item: dict[str, Any] = {}
            for column, value in row.items():
                if column in WRITTEN_AT or column in DROPPED.get(name, set()):
                    continue
                if column in JSON_TEXT and value is not None:
                    value = json.loads(value)
                if (name, column) in {("point_lots", "id"), ("point_lot_draws", "lot_id")}:
                    value = names.lots[int(value)]
                item[column] = names(value)
            rows.append(json.dumps(item, sort_keys=True, default=str))
        state[name] = sorted(rows)
    return state


def books(client: TestClient, session: Session, side: Side,
          names: Names) -> dict[str, Any]:
    """The books as a reader sees them: balances, tiers, lots, draws per burn, entries per
    receipt and postings per account kind."""
    merchant = uuid.UUID(side.tenant.merchant_id)
    members: dict[str, Any] = {}
    for index, member in enumerate(side.members):
        response = client.get(f"/v1/members/{member['id']}/balances",
                              headers=auth(side.tenant.merchant_key))
        body = response.json()
        body.pop("as_of", None)
        lots = sorted((int(lot.amount), int(lot.remaining),
                       "never" if lot.expires_at is None else names(lot.expires_at))
                      for lot in session.scalars(select(PointLot).where(
                          PointLot.merchant_id == merchant,
                          PointLot.member_id == uuid.UUID(member["id"]))))
        members[f"m{index}"] = {"status": response.status_code, "balances": names(body),
                                "lots": lots}
    draws: dict[str, list[int]] = defaultdict(list)
    for entry_id, amount in session.execute(
            select(PointLotDraw.entry_id, PointLotDraw.amount)
            .where(PointLotDraw.merchant_id == merchant)):
        draws[names(entry_id)].append(int(amount))
    per_receipt: dict[str, list[Any]] = defaultdict(list)
    for entry, kind, amount in session.execute(
            select(JournalEntry, LedgerAccount.kind, Posting.amount)
            .join(Posting, Posting.entry_id == JournalEntry.id)
            .join(LedgerAccount, LedgerAccount.id == Posting.account_id)
            .where(JournalEntry.merchant_id == merchant)):
        per_receipt[entry.reason].append((entry.kind, kind, int(amount)))
    sums = {kind: int(total) for kind, total in session.execute(
        select(LedgerAccount.kind, func.sum(Posting.amount))
        .join(Posting, Posting.account_id == LedgerAccount.id)
        .where(Posting.merchant_id == merchant).group_by(LedgerAccount.kind))}
    exceptions = client.get("/v1/offline/exceptions?limit=1000",
                            headers=auth(side.tenant.merchant_key))
    assert exceptions.status_code == 200, exceptions.text
    return {"members": members,
            "draws": {key: sorted(value) for key, value in draws.items()},
            "entries": {key: sorted(value) for key, value in per_receipt.items()},
            "postings": sums,
            "exceptions": sorted(json.dumps(names(item), sort_keys=True)
                                  for item in exceptions.json())}


def _check_hashes(session: Session, side: Side) -> None:
    """The hashes left out of the comparison are each world's own bodies' hashes."""
    merchant = uuid.UUID(side.tenant.merchant_id)
    stored = {row.receipt_no: row.request_hash for row in session.execute(
        select(PosTransaction.receipt_no, PosTransaction.request_hash)
        .where(PosTransaction.terminal_id == uuid.UUID(side.tenant.pos_id)))}
    hashed = {row.receipt_no: row.entry_hash for row in session.execute(
        select(OfflineEntry.receipt_no, OfflineEntry.entry_hash)
        .where(OfflineEntry.merchant_id == merchant))}
    # What the server could not honour was dropped from the committed body.
    dropped: dict[str, set[str]] = defaultdict(set)
    for receipt_no, kind in session.execute(
            select(OfflineException.receipt_no, OfflineException.kind)
            .where(OfflineException.merchant_id == merchant)):
        dropped[receipt_no].add(kind)
    sent = {entry["transaction"]["receipt_no"]: entry for entry in side.sent}
    for receipt_no, entry in sent.items():
        parsed = BatchEntry.model_validate(entry)
        if receipt_no in stored:
            committed = (PurchaseWrite.model_validate(side.online[receipt_no]["body"])
                         if receipt_no in side.online else parsed.transaction)
            if dropped[receipt_no] & {"allowance_exceeded", "points_shortfall"}:
                committed = committed.model_copy(update={"points_to_burn": 0})
            if "member_refused" in dropped[receipt_no]:
                committed = committed.model_copy(update={"member": None, "points_to_burn": 0})
            assert stored[receipt_no] == pos.request_hash(committed), receipt_no
        if receipt_no in hashed:
            assert hashed[receipt_no] == service._entry_hash(parsed), receipt_no
    assert set(hashed) <= set(sent)


def _differences(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Per table (or view) that differs: its row count in each world and the first rows
    only one of them holds."""
    assert mine.keys() == theirs.keys()
    found: dict[str, Any] = {}
    for name in mine:
        ours, other = mine[name], theirs[name]
        if ours == other:
            continue
        if isinstance(ours, list) and isinstance(other, list):
            only = [row for row in ours if row not in other][:3]
            also = [row for row in other if row not in ours][:3]
            found[name] = {"rows": (len(ours), len(other)), "set only": only,
                           "one by one only": also}
        elif isinstance(ours, dict) and isinstance(other, dict):
            found[name] = {key: (ours.get(key), other.get(key))
                           for key in sorted(ours.keys() | other.keys())
                           if ours.get(key) != other.get(key)}
        else:
            found[name] = (ours, other)
    return found


# --- the differential test --------------------------------------------------------------------

@dataclass
class SetCalls:
    """What the set path was given and took, per call of ``bulk.replay``."""

    world: str = ""
    calls: list[tuple[str, list[str], list[str]]] = field(default_factory=list)
    conflicts: int = 0

    def taken(self, world: str) -> list[str]:
        return [receipt for name, _, taken in self.calls if name == world for receipt in taken]


@pytest.fixture
def set_calls(monkeypatch: pytest.MonkeyPatch) -> SetCalls:
    record = SetCalls()
    real = bulk.replay

    def counting(session: Session, **kwargs: Any) -> bulk.Replayed:
        offered = [plain.entry.transaction.receipt_no for plain in kwargs["plains"]]
        try:
            taken = real(session, **kwargs)
        except bulk.SetConflict:
            record.conflicts += 1
            raise
        receipts = [json.loads(item)["receipt_no"] for item in taken.answers]
        record.calls.append((record.world, offered, receipts))
        return taken

    monkeypatch.setattr(bulk, "replay", counting)
    return record


@contextlib.contextmanager
def one_by_one(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every entry through the one-by-one path (the replay before the set path)."""
    with monkeypatch.context() as patch:
        patch.setattr(service._Classifier, "plain", lambda self, entry, verified: "forced")
        yield


@pytest.mark.parametrize("seed", SEEDS)
def test_the_set_path_leaves_the_books_answers_rows_and_events_of_the_one_by_one_path(
        client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch,
        set_calls: SetCalls, seed: int) -> None:
    op_key = operator_key(database)
    assert client.put("/v1/coalition/rates", headers=auth(op_key),
                      json=RATES).status_code == 200
    start = utcnow()
    outsiders = make_tenant(client, op_key, number=41003, country="JP", currency="JPY",
                            timezone="Asia/Tokyo")
    sides = {label: build(client, database, op_key, label=label, number=number,
                          outsiders=outsiders, start=start)
             for label, number in (("set", 41001), ("one_by_one", 41002))}
    limits = {index: signed["allowance"]["burn_limit"]
              for index, signed in sides["set"].signed.items()}
    assert limits == {index: signed["allowance"]["burn_limit"]
                      for index, signed in sides["one_by_one"].signed.items()}
    assert limits[RICH] > 0 and limits[DEBTOR] == 0
    queue = make_queue(seed, limits)
    base = utcnow()
    queues = {label: realise(side, queue, base) for label, side in sides.items()}
    # Three batches of 50; the second sent twice (all replayed), the third with the
    # second's last ten again in front of it (replayed entries between new ones).
    sends = [slice(0, 50), slice(50, 100), slice(50, 100), slice(90, 150)]
    before = snapshot(database)
    for part in sends:
        for label, side in sides.items():
            set_calls.world = label
            if label == "set":
                send(client, side, queues[label][part])
            else:
                with one_by_one(monkeypatch):
                    send(client, side, queues[label][part])
    touched = changed_tables(before, snapshot(database))

    # The set path did the work in world A (and only there), stopping where it must.
    assert [call for call in set_calls.calls if call[0] == "one_by_one"] == []
    taken = set_calls.taken("set")
    assert set_calls.conflicts == 0
    assert len(taken) >= QUEUE // 2, (len(taken), set_calls.calls)
    assert len(taken) == len(set(taken))
    stops = [offered[len(took)] for _, offered, took in set_calls.calls
             if len(took) < len(offered)]
    assert stops, "no run stopped at a sale the plan could not take"
    first_answers = {result["receipt_no"]: result["status"]
                     for batch in sides["set"].answers for result in batch}
    assert "committed_with_exception" in {first_answers[receipt] for receipt in stops}

    # Read outside any write transaction: the API answers reads meanwhile (SQLite).
    with database.read_scope() as session:
        assert ledger.check_invariants(session) == []
        names = {label: name_world(session, side) for label, side in sides.items()}
        for side in sides.values():
            _check_hashes(session, side)
        dumps = {label: dump(session, side, names[label]) for label, side in sides.items()}
        views = {label: books(client, session, side, names[label])
                 for label, side in sides.items()}
    # The replays wrote these tables (security events aside), all of them compared below.
    assert touched == sorted(set(_tables()) - {"pos_returns", "pos_return_lines",
                                               "security_events"}), touched

    # Every answer, batch by batch.
    answers = {label: [[names[label](result) for result in batch] for batch in side.answers]
               for label, side in sides.items()}
    for number, (mine, theirs) in enumerate(zip(answers["set"], answers["one_by_one"],
                                                strict=True)):
        for ours, other in zip(mine, theirs, strict=True):
            assert ours == other, f"batch {number}, receipt {ours['receipt_no']}"
    # The same rows, table by table, and the books as read through the API and the ledger.
    assert {**_differences(dumps["set"], dumps["one_by_one"]),
            **_differences(views["set"], views["one_by_one"])} == {}

    # A resent entry gets its first answer again: "replayed", or the same refusal.
    first, second, again, third = sides["set"].answers
    for earlier, later in [*zip(second, again, strict=True),
                           *zip(second[40:], third[:10], strict=True)]:
        if earlier["status"] == "refused":
            assert later == earlier
        else:
            assert later == {**earlier, "status": "replayed"}
    online = {result["receipt_no"]: result for result in first + second + third}
    assert online["ONLINE-1"]["status"] == "replayed"
    assert online["ONLINE-1"]["transaction"] == sides["set"].online["ONLINE-1"]["answer"]
    assert (online["ONLINE-2"]["status"], online["ONLINE-2"]["problem"]["code"]) == (
        "refused", "receipt_conflict")
    # What the queue was meant to meet, it met (in both worlds, as they are equal).
    statuses = Counter(result["status"] for result in first + second + third[10:])
    assert statuses["replayed"] == 1, statuses
    assert statuses["refused"] >= 10 and statuses["committed_with_exception"] >= 3, statuses
    kinds = Counter(json.loads(row)["kind"] for row in dumps["set"]["offline_exceptions"])
    assert {"allowance_exceeded", "points_shortfall", "member_refused",
            "refused_entry"} <= set(kinds), kinds
    codes = {json.loads(row)["code"] for row in dumps["set"]["offline_exceptions"]}
    assert {"voucher_not_in_allowance", "offline_miles_burn", "allowance_member_mismatch",
            "receipt_conflict", "offline_burn_without_allowance"} <= codes, codes
    events = [json.loads(row) for row in dumps["set"]["outbox_events"]]
    tier_changes = {event["payload"]["receipt_no"] for event in events
                    if event["type"] == "tier.changed"}
    assert tier_changes & set(taken), "no tier crossed inside a set run"
    assert any(json.loads(row)["source"] == "purchase" for row in dumps["set"]["memberships"])


# --- the tier window's instant -----------------------------------------------------------------

def test_a_sale_dated_ahead_counts_towards_the_tier_of_later_sales_alike(
        client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """A till dates a sale one second ahead of the server (allowed: up to five minutes).
    It is not plain (ahead of the clock), so it replays alone; by the time the member's
    next sale is committed one by one, the server's clock has passed the first sale, whose
    points then count towards the tier the second is priced in. The set path reads the
    window at the batch's start, so after a sale dated ahead went alone the batch's later
    identified sales go alone too, and both paths price the second sale in Silver."""
    op_key = operator_key(database)
    start = utcnow()
    clock.freeze(start)
    real_apply = service._apply

    def apply_then_tick(*args: Any, **kwargs: Any) -> EntryResult:
        answer = real_apply(*args, **kwargs)
        clock.freeze(utcnow() + timedelta(seconds=2))  # the batch takes its time
        return answer

    monkeypatch.setattr(service, "_apply", apply_then_tick)
    outcome: dict[str, Any] = {}
    for label, number in (("set", 44001), ("one_by_one", 44002)):
        clock.freeze(start)
        tenant = make_tenant(client, op_key, number=number, country="JP", currency="JPY",
                             timezone="Asia/Tokyo")
        put = client.put(f"/v1/merchants/{tenant.merchant_id}/program",
                         headers=auth(tenant.merchant_key), json=PROGRAM)
        assert put.status_code == 200, put.text
        member = enrol(client, tenant, email=f"ahead.{label}@example.com")
        with database.session_scope() as session:  # 10 points short of Silver
            ledger.earn(session, merchant_id=uuid.UUID(tenant.merchant_id),
                        member_id=uuid.UUID(member["id"]), points=1990, expires_at=None,
                        idempotency_key=f"seed:{member['id']}", source="test",
                        occurred_at=start - timedelta(days=1))
        who = {"barcode": member["member_number"]}
        entries = [{"seq": seq, "queued_at": start.isoformat(), "transaction": _body(
            receipt_no, start + shift, lines, who)} for seq, receipt_no, shift, lines in [
            (1, "AHEAD-1", timedelta(seconds=1), _basket((CATALOGUE[0], 1))),  # +12: Silver
            (2, "AHEAD-2", timedelta(seconds=-1), _basket((TV, 1)))]]
        with contextlib.ExitStack() as stack:
            if label == "one_by_one":
                stack.enter_context(one_by_one(monkeypatch))
            response = client.post("/v1/pos/offline/batches", headers=auth(tenant.pos_key),
                                   json={"entries": entries})
        assert response.status_code == 200, response.text
        with database.read_scope() as session:
            tier_changes = session.scalar(select(func.count()).select_from(OutboxEvent).where(
                OutboxEvent.merchant_id == uuid.UUID(tenant.merchant_id),
                OutboxEvent.type == "tier.changed"))
        outcome[label] = {
            "earned": [(result["receipt_no"], result["status"],
                        result["transaction"]["points_earned"])
                       for result in response.json()["results"]],
            "tier_changes": tier_changes}
    # AHEAD-2 is priced in Silver (49,800 yen x 1.25 = 622 points), one tier change
    # (AHEAD-1's). Read at the batch's start, the window would have priced it in Blue (498
    # points) with a second Blue -> Silver.
    assert outcome["one_by_one"] == {
        "earned": [("AHEAD-1", "committed", 12), ("AHEAD-2", "committed", 622)],
        "tier_changes": 1}
    assert outcome["set"] == outcome["one_by_one"]


# --- a receipt committed online while the batch runs (PostgreSQL) ------------------------------

@pytest.mark.postgres
@pytest.mark.nested_connections  # the online commit happens inside the batch's request
def test_a_receipt_committed_online_mid_batch_replays_the_run_one_by_one(
        client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    op_key = operator_key(database)
    tenant = make_tenant(client, op_key, number=42001, country="JP", currency="JPY",
                         timezone="Asia/Tokyo")
    put = client.put(f"/v1/merchants/{tenant.merchant_id}/program",
                     headers=auth(tenant.merchant_key), json=PROGRAM)
    assert put.status_code == 200, put.text
    members = [enrol(client, tenant, email=f"late{index}@example.com") for index in range(3)]
    with database.session_scope() as session:
        ledger.earn(session, merchant_id=uuid.UUID(tenant.merchant_id),
                    member_id=uuid.UUID(members[0]["id"]), points=1000, expires_at=None,
                    idempotency_key="seed:late", source="test")
    signed = allowance(client, tenant.pos_key, {"member_id": members[0]["id"]})
    base = utcnow()
    entries = []
    for index in range(10):
        burn = 300 if index == 7 else 0
        who = 0 if burn else index % 3
        member = None if who == 2 else {"barcode": members[who]["member_number"]}
        body = _body(f"L-{index + 1}", base - timedelta(seconds=10 - index),
                     _basket((CATALOGUE[0], 1 + index % 2), (CATALOGUE[1], 1)), member,
                     points_to_burn=burn)
        entries.append({"seq": index + 1, "queued_at": base.isoformat(),
                        "allowance": signed if burn else None, "transaction": body,
                        "provisional": {"points_burned": burn, "discounts": {"points": burn}}})
    late = entries[4]["transaction"]
    online: dict[str, Any] = {}
    calls: list[str] = []
    real = bulk.replay

    def online_first(session: Session, **kwargs: Any) -> bulk.Replayed:
        if not calls:
            # The batch is classified; its run is about to be written. Another connection
            # commits one of its receipts through the online POS commit meanwhile.
            other = Database(TEST_DATABASE_URL)
            try:
                with other.session_scope() as online_session:
                    actor = authenticate(online_session, key=tenant.pos_key)
                    online["answer"] = json.loads(pos.commit(
                        online_session, actor=actor, data=PurchaseWrite.model_validate(late)))
            finally:
                other.dispose()
        try:
            taken = real(session, **kwargs)
        except bulk.SetConflict:
            calls.append("conflict")
            raise
        calls.append(f"took {len(taken.answers)}")
        return taken

    monkeypatch.setattr(bulk, "replay", online_first)
    response = client.post("/v1/pos/offline/batches", headers=auth(tenant.pos_key),
                           json={"entries": entries})
    assert response.status_code == 200, response.text
    assert calls == ["conflict"]
    results = response.json()["results"]
    assert [result["status"] for result in results] == [
        "replayed" if index == 4 else "committed" for index in range(10)]
    assert results[4]["transaction"] == online["answer"]
    assert all(result["exceptions"] == [] and result["problem"] is None for result in results)
    assert results[7]["transaction"]["points_burned"] == 300
    merchant = uuid.UUID(tenant.merchant_id)
    with database.read_scope() as session:
        receipts = Counter(session.scalars(select(PosTransaction.receipt_no)
                                           .where(PosTransaction.merchant_id == merchant)))
        assert receipts == Counter(f"L-{index}" for index in range(1, 11))
        replayed = Counter(session.scalars(select(OfflineEntry.receipt_no)
                                           .where(OfflineEntry.merchant_id == merchant)))
        assert replayed == receipts
        reasons = Counter((entry.reason, entry.kind) for entry in session.scalars(
            select(JournalEntry).where(JournalEntry.merchant_id == merchant,
                                       JournalEntry.source.like("pos:%"))))
        assert set(reasons.values()) == {1}
        committed = Counter(event.payload["receipt_no"] for event in session.scalars(
            select(OutboxEvent).where(OutboxEvent.merchant_id == merchant,
                                      OutboxEvent.type == "transaction.committed")))
        assert committed == receipts
        burned = session.scalar(select(OfflineAllowance.burned).where(
            OfflineAllowance.merchant_id == merchant))
        assert burned == 300
        balance = ledger.points_balance(session, merchant_id=merchant,
                                        member_id=uuid.UUID(members[0]["id"]))
        assert ledger.check_invariants(session) == []
    own = [result["transaction"] for result in results
           if result["transaction"]["member_id"] == members[0]["id"]]
    assert balance == 1000 + sum(sale["points_earned"] - sale["points_burned"] for sale in own)
    assert balance == own[-1]["balance_after"]
