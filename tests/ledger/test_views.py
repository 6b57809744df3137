"""GET /v1/members/{id}/balances and /ledger: balances with expiry and tier, history
pages with reasons, and who sees what."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock
from patron.ledger import service
from patron.ledger.models import EntryKind, JournalEntry
from patron.ledger.reasons import Facts, Origin, describe
from patron.ledger.views import Position, decode_cursor, encode_cursor, expiry_outlook
from patron.members.models import Membership
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import Tenant, World, auth
from tests.ledger.conftest import invariants

NOW = datetime(2026, 4, 10, 3, 0, tzinfo=UTC)
DAY = timedelta(days=1)
TIERS = {"earn_points": 1, "earn_per_amount": 100, "point_value_minor": 1,
         "expiry_months": 12,
         "tiers": [{"name": "Base", "threshold_points": 0},
                   {"name": "Silver", "threshold_points": 100, "earn_multiplier_bp": 12500},
                   {"name": "Gold", "threshold_points": 500, "earn_multiplier_bp": 15000}]}


@pytest.fixture(autouse=True)
def _frozen() -> None:
    clock.freeze(NOW)


def enrol(client: TestClient, tenant: Tenant, **fields: Any) -> str:
    response = client.post("/v1/members", headers=auth(tenant.merchant_key), json=fields)
    assert response.status_code == 201, response.text
    member_id: str = response.json()["id"]
    return member_id


def join(database: Database, member_id: str, tenant: Tenant) -> None:
    """A membership at a second merchant, as a purchase there would create."""
    with database.session_scope() as session:
        session.add(Membership(member_id=uuid.UUID(member_id),
                               merchant_id=uuid.UUID(tenant.merchant_id), joined_at=NOW,
                               source="purchase"))


def earn(database: Database, tenant: Tenant, member_id: str, points: int, key: str, *,
         expires_at: datetime | None = None, occurred_at: datetime | None = None,
         kind: EntryKind = EntryKind.earn, reason: str = "") -> uuid.UUID:
    with database.session_scope() as session:
        return service.earn(session, merchant_id=uuid.UUID(tenant.merchant_id),
                            member_id=uuid.UUID(member_id), points=points,
                            expires_at=expires_at, idempotency_key=key, source="test",
                            reason=reason, occurred_at=occurred_at, kind=kind).id


def burn(database: Database, tenant: Tenant, member_id: str, points: int,
         key: str) -> uuid.UUID:
    with database.session_scope() as session:
        return service.burn(session, merchant_id=uuid.UUID(tenant.merchant_id),
                            member_id=uuid.UUID(member_id), points=points,
                            idempotency_key=key, source="test").id


def miles(database: Database, member_id: str, amount: int, key: str, *,
          merchant: Tenant | None, reason: str = "",
          occurred_at: datetime | None = None) -> uuid.UUID:
    with database.session_scope() as session:
        return service.earn_miles(
            session, member_id=uuid.UUID(member_id), miles=amount, idempotency_key=key,
            source="test", reason=reason, occurred_at=occurred_at,
            merchant_id=uuid.UUID(merchant.merchant_id) if merchant else None).id


def balances(client: TestClient, key: str, member_id: str, **params: Any) -> Any:
    return client.get(f"/v1/members/{member_id}/balances", headers=auth(key), params=params)


def ok_balances(client: TestClient, key: str, member_id: str, **params: Any) -> dict[str, Any]:
    response = balances(client, key, member_id, **params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def history(client: TestClient, key: str, member_id: str, **params: Any) -> Any:
    return client.get(f"/v1/members/{member_id}/ledger", headers=auth(key), params=params)


def walk(client: TestClient, key: str, member_id: str, **params: Any) -> list[list[dict]]:
    """Every page, following next_cursor until it is null."""
    pages: list[list[dict]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = history(client, key, member_id, **query)
        assert response.status_code == 200, response.text
        pages.append(response.json()["items"])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the walk does not end"


def lines(client: TestClient, key: str, member_id: str, **params: Any) -> list[dict[str, Any]]:
    response = history(client, key, member_id, limit=200, **params)
    assert response.status_code == 200, response.text
    assert response.json()["next_cursor"] is None
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def sales_rep_key(client: TestClient, world: World) -> str:
    created = client.post("/v1/keys", headers=auth(world.operator_key),
                          json={"role": "sales_rep", "merchant_id": world.a.merchant_id})
    assert created.status_code == 201, created.text
    key: str = created.json()["key"]
    return key


def put_program(client: TestClient, tenant: Tenant, program: dict[str, Any]) -> None:
    response = client.put(f"/v1/merchants/{tenant.merchant_id}/program",
                          headers=auth(tenant.merchant_key), json=program)
    assert response.status_code == 200, response.text


NO_TIERS = {"name": None, "earn_multiplier_bp": 10000, "next": None, "points_to_next": None,
            "progress_bp": 10000}


# --- balances -----------------------------------------------------------------------------

def test_balance_expiring_soon_and_next_expiry(client: TestClient, world: World,
                                               database: Database) -> None:
    member = enrol(client, world.a)
    a = world.a
    earn(database, a, member, 100, "in-10-days", expires_at=NOW + 10 * DAY)
    earn(database, a, member, 50, "in-30-days", expires_at=NOW + 30 * DAY)
    earn(database, a, member, 70, "just-over", expires_at=NOW + 30 * DAY
         + timedelta(microseconds=1))
    earn(database, a, member, 20, "never", expires_at=None)
    # Already past its date but not yet expired by the job: held, not "expiring soon".
    earn(database, a, member, 40, "overdue", expires_at=NOW - timedelta(hours=1))
    burn(database, a, member, 30, "burn-1")  # soonest first: 30 of the overdue 40

    body = ok_balances(client, a.merchant_key, member)
    assert body["member_id"] == member and body["as_of"] == at(NOW)
    assert body["points"] == [{
        "merchant_id": a.merchant_id, "merchant_name": "Merchant 12345", "currency": "JPY",
        "balance": 250, "expiring_30d": 150,
        "next_expiry": {"at": at(NOW + 10 * DAY), "points": 100},
        "tier": {**NO_TIERS, "points_earned_12m": 280}}]
    assert body["miles"] == {"balance": 0}
    assert body["tier"] == body["points"][0]["tier"]

    with database.session_scope() as session:
        assert len(service.expire(session, now=NOW)) == 1  # the overdue lot's last 10
    burn(database, a, member, 120, "burn-2")  # 100 of the 10-day lot, 20 of the 30-day one
    body = ok_balances(client, a.merchant_key, member)
    assert body["points"][0] | {"tier": None} == {
        "merchant_id": a.merchant_id, "merchant_name": "Merchant 12345", "currency": "JPY",
        "balance": 120, "expiring_30d": 30,
        "next_expiry": {"at": at(NOW + 30 * DAY), "points": 30}, "tier": None}

    # One microsecond later the lot 30 days and 1 µs out is inside the window too.
    clock.freeze(NOW + timedelta(microseconds=1))
    assert ok_balances(client, a.merchant_key, member)["points"][0]["expiring_30d"] == 100
    assert invariants(database) == []


def test_a_debt_after_a_return_shows_as_is_with_nothing_expiring(
        client: TestClient, world: World, database: Database) -> None:
    member = enrol(client, world.a)
    earned = earn(database, world.a, member, 100, "earn", expires_at=NOW + 5 * DAY)
    burn(database, world.a, member, 100, "spent")
    with database.session_scope() as session:
        service.claw_back(session, earn_entry_id=earned, points=60,
                          idempotency_key="returned", source="test")
    points = ok_balances(client, world.a.merchant_key, member)["points"][0]
    assert (points["balance"], points["expiring_30d"], points["next_expiry"]) == (-60, 0, None)

    earn(database, world.a, member, 80, "repays", expires_at=NOW + 5 * DAY)
    points = ok_balances(client, world.a.merchant_key, member)["points"][0]
    assert (points["balance"], points["expiring_30d"], points["next_expiry"]) == (
        20, 20, {"at": at(NOW + 5 * DAY), "points": 20})


def test_tier_progress_from_points_earned_in_12_months(client: TestClient, world: World,
                                                       database: Database) -> None:
    put_program(client, world.a, TIERS)
    member = enrol(client, world.a)
    earn(database, world.a, member, 150, "earn", occurred_at=NOW - 10 * DAY)
    earn(database, world.a, member, 10, "tap", kind=EntryKind.tap)
    earn(database, world.a, member, 500, "last-year", occurred_at=NOW - 400 * DAY)
    burn(database, world.a, member, 50, "burn")  # spending never lowers the tier

    silver = {"name": "Silver", "earn_multiplier_bp": 12500, "points_earned_12m": 160,
              "next": {"name": "Gold", "threshold_points": 500, "earn_multiplier_bp": 15000},
              "points_to_next": 340, "progress_bp": 1500}
    mine = ok_balances(client, world.a.merchant_key, member)
    assert mine["tier"] == silver and mine["points"][0]["tier"] == silver
    assert mine["points"][0]["balance"] == 610
    assert ok_balances(client, world.a.pos_key, member) == mine

    # The operator: no tier of its own, unless it names the merchant; then it gets exactly
    # the merchant's own answer.
    everything = ok_balances(client, world.operator_key, member)
    assert everything["tier"] is None and everything["points"] == mine["points"]
    assert ok_balances(client, world.operator_key, member,
                       merchant_id=world.a.merchant_id) == mine


def test_each_merchant_sees_only_its_own_points_and_the_shared_miles(
        client: TestClient, world: World, database: Database) -> None:
    member = enrol(client, world.a)
    join(database, member, world.b)
    earn(database, world.a, member, 100, "at-a")
    earn(database, world.b, member, 7, "at-b")
    miles(database, member, 33, "miles-a", merchant=world.a)

    def merchants(body: dict[str, Any]) -> list[tuple[str, int]]:
        return [(entry["merchant_id"], entry["balance"]) for entry in body["points"]]

    at_a = ok_balances(client, world.a.merchant_key, member)
    at_b = ok_balances(client, world.b.merchant_key, member)
    assert merchants(at_a) == [(world.a.merchant_id, 100)]
    assert merchants(at_b) == [(world.b.merchant_id, 7)]
    assert at_b["points"][0]["currency"] == "USD"
    assert at_a["miles"] == at_b["miles"] == {"balance": 33}
    assert ok_balances(client, world.b.pos_key, member) == at_b
    operator = ok_balances(client, world.operator_key, member)
    assert merchants(operator) == [(world.a.merchant_id, 100), (world.b.merchant_id, 7)]
    assert operator["tier"] is None and operator["miles"] == {"balance": 33}
    narrowed = ok_balances(client, world.operator_key, member, merchant_id=world.b.merchant_id)
    assert narrowed == at_b
    # Naming one's own merchant changes nothing; naming another is 404 as everywhere.
    assert ok_balances(client, world.a.merchant_key, member,
                       merchant_id=world.a.merchant_id) == at_a
    for key in (world.a.merchant_key, world.a.pos_key):
        response = balances(client, key, member, merchant_id=world.b.merchant_id)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    response = balances(client, world.operator_key, member, merchant_id=str(uuid.uuid4()))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_a_membership_without_points_is_listed_with_zero(client: TestClient, world: World,
                                                         database: Database) -> None:
    member = enrol(client, world.a)
    body = ok_balances(client, world.a.merchant_key, member)
    assert [(e["balance"], e["expiring_30d"], e["next_expiry"]) for e in body["points"]] == [
        (0, 0, None)]
    assert body["tier"] == {**NO_TIERS, "points_earned_12m": 0}
    join(database, member, world.b)
    operator = ok_balances(client, world.operator_key, member)
    assert [e["merchant_id"] for e in operator["points"]] == [world.a.merchant_id,
                                                              world.b.merchant_id]


@pytest.mark.parametrize("path", ["balances", "ledger"])
def test_who_may_not_look(client: TestClient, world: World, database: Database,
                          path: str) -> None:
    member = enrol(client, world.a)
    earn(database, world.a, member, 100, "at-a")
    before = snapshot(database)
    for key in (world.b.merchant_key, world.b.pos_key):
        response = client.get(f"/v1/members/{member}/{path}", headers=auth(key))
        missing = client.get(f"/v1/members/{uuid.uuid4()}/{path}", headers=auth(key))
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
        assert response.json() == missing.json()
    response = client.get(f"/v1/members/{member}/{path}",
                          headers=auth(sales_rep_key(client, world)))
    assert (response.status_code, response.json()["code"]) == (403, "forbidden")
    response = client.get(f"/v1/members/{member}/{path}")
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")
    assert changed_tables(before, snapshot(database)) == ["api_keys"]  # the sales rep's


@pytest.mark.parametrize("action", ["withdraw", "erase"])
def test_a_member_who_left_keeps_the_books_readable(client: TestClient, world: World,
                                                    database: Database, action: str) -> None:
    member = enrol(client, world.a)
    earn(database, world.a, member, 100, "at-a")
    left = client.post(f"/v1/members/{member}/{action}", headers=auth(world.a.merchant_key))
    assert left.status_code == 200, left.text
    # A withdrawn member keeps their points; an erased member's are forfeited by an entry
    # of their own (docs/privacy.md), and the history still reads.
    kept = 100 if action == "withdraw" else 0
    assert ok_balances(client, world.a.merchant_key, member)["points"][0]["balance"] == kept
    assert sorted(item["points"] for item in lines(client, world.a.merchant_key, member)) == (
        [100] if action == "withdraw" else [-100, 100])


# --- history ------------------------------------------------------------------------------

def test_history_shows_each_merchant_its_own_lines(client: TestClient, world: World,
                                                   database: Database) -> None:
    member = enrol(client, world.a)
    join(database, member, world.b)
    a_earn = earn(database, world.a, member, 100, "at-a", occurred_at=NOW - 5 * DAY)
    b_earn = earn(database, world.b, member, 7, "at-b", occurred_at=NOW - 4 * DAY)
    a_miles = miles(database, member, 30, "miles-a", merchant=world.a,
                    occurred_at=NOW - 3 * DAY)
    b_miles = miles(database, member, 20, "miles-b", merchant=world.b,
                    occurred_at=NOW - 2 * DAY)
    pool_miles = miles(database, member, 10, "miles-pool", merchant=None,
                       occurred_at=NOW - 1 * DAY)

    def ids(items: list[dict[str, Any]]) -> list[str]:
        return [item["entry_id"] for item in items]

    assert ids(lines(client, world.operator_key, member)) == [
        str(e) for e in (pool_miles, b_miles, a_miles, b_earn, a_earn)]
    assert ids(lines(client, world.a.merchant_key, member)) == [str(a_miles), str(a_earn)]
    assert ids(lines(client, world.a.pos_key, member)) == [str(a_miles), str(a_earn)]
    assert ids(lines(client, world.b.merchant_key, member)) == [str(b_miles), str(b_earn)]
    assert ids(lines(client, world.operator_key, member, unit="miles")) == [
        str(e) for e in (pool_miles, b_miles, a_miles)]
    assert ids(lines(client, world.operator_key, member, unit="points")) == [
        str(b_earn), str(a_earn)]
    assert ids(lines(client, world.operator_key, member,
                     merchant_id=world.b.merchant_id)) == [str(b_miles), str(b_earn)]
    assert ids(lines(client, world.a.merchant_key, member, unit="points",
                     merchant_id=world.a.merchant_id)) == [str(a_earn)]
    response = history(client, world.a.merchant_key, member, merchant_id=world.b.merchant_id)
    assert (response.status_code, response.json()["code"]) == (404, "not_found")

    first = lines(client, world.operator_key, member)[-1]
    assert first == {
        "entry_id": str(a_earn), "kind": "earn", "merchant_id": world.a.merchant_id,
        "merchant_name": "Merchant 12345", "unit": "points", "points": 100,
        "occurred_at": at(NOW - 5 * DAY), "recorded_at": at(NOW), "source": "test",
        "reason": "Earned at Merchant 12345", "reverses_entry_id": None}
    pool = lines(client, world.operator_key, member)[0]
    assert (pool["unit"], pool["points"], pool["merchant_id"], pool["merchant_name"],
            pool["reason"]) == ("miles", 10, None, None, "Coalition miles earned")


def _many_entries(database: Database, world: World, member: str, count: int) -> None:
    # Three entries share each time, so the order within a time is tested too.
    for index in range(count):
        earn(database, world.a, member, index + 1, f"e{index}",
             occurred_at=NOW - timedelta(hours=index // 3))


def test_pages_cover_every_line_once_newest_first(client: TestClient, world: World,
                                                  database: Database) -> None:
    member = enrol(client, world.a)
    _many_entries(database, world, member, 23)
    everything = lines(client, world.operator_key, member)
    assert len(everything) == 23
    assert everything == sorted(everything, key=lambda item: (item["occurred_at"],
                                                              uuid.UUID(item["entry_id"])),
                                reverse=True)
    assert len({item["entry_id"] for item in everything}) == 23

    for limit, sizes in ((5, [5, 5, 5, 5, 3]), (22, [22, 1]), (23, [23]), (1, [1] * 23)):
        pages = walk(client, world.a.merchant_key, member, limit=limit)
        assert [len(page) for page in pages] == sizes
        assert [item for page in pages for item in page] == everything

    # The default page is 50 lines.
    for index in range(23, 60):
        earn(database, world.a, member, 1, f"more{index}", occurred_at=NOW - 30 * DAY)
    page = history(client, world.a.merchant_key, member).json()
    assert len(page["items"]) == 50 and page["next_cursor"] is not None


def test_pages_stay_put_while_new_entries_arrive(client: TestClient, world: World,
                                                 database: Database) -> None:
    member = enrol(client, world.a)
    _many_entries(database, world, member, 12)
    everything = lines(client, world.a.merchant_key, member)
    first = history(client, world.a.merchant_key, member, limit=5).json()
    assert first["items"] == everything[:5]

    # Newer purchases arrive, and one late from an offline till, older than everything.
    for index in range(3):
        earn(database, world.a, member, 5, f"new{index}", occurred_at=NOW + timedelta(
            seconds=index))
    late = earn(database, world.a, member, 9, "late", occurred_at=NOW - 10 * DAY)

    rest: list[dict[str, Any]] = []
    cursor = first["next_cursor"]
    while cursor is not None:
        page = history(client, world.a.merchant_key, member, limit=5, cursor=cursor).json()
        rest.extend(page["items"])
        cursor = page["next_cursor"]
    assert [item["entry_id"] for item in rest] == [
        item["entry_id"] for item in everything[5:]] + [str(late)]


def test_reasons_say_what_happened(client: TestClient, world: World,
                                   database: Database) -> None:
    put_program(client, world.a, {**TIERS, "tiers": []})
    card = "04A2246AB35C80"
    member = enrol(client, world.a, card_uid=card)
    welcome = earn(database, world.a, member, 500, "welcome", reason="welcome bonus")
    # A lot earned on 15 March in Tokyo (still 14 March in UTC), expired since.
    old = earn(database, world.a, member, 30, "old", occurred_at=datetime(
        2026, 3, 14, 16, 0, tzinfo=UTC), expires_at=NOW - DAY)
    with database.session_scope() as session:
        [expired] = service.expire(session, now=NOW)
        expired_id = expired.id

    purchase = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "R-123", "occurred_at": NOW.isoformat(), "currency": "JPY",
        "member": {"member_id": member}, "points_to_burn": 100,
        "lines": [{"sku": "CF-1", "name": "Coffee", "quantity": 2, "unit_price": 1000}]})
    assert purchase.status_code == 201, purchase.text
    transaction_id = purchase.json()["id"]
    tap = client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                      json={"card_uid": card})
    assert tap.status_code == 201 and tap.json()["points_granted"] == 5, tap.text

    with database.session_scope() as session:
        def by_key(key: str) -> uuid.UUID:
            return session.scalars(select(JournalEntry.id).where(
                JournalEntry.idempotency_key == key)).one()
        pos_earn, pos_burn = by_key(f"pos:{transaction_id}:earn"), \
            by_key(f"pos:{transaction_id}:burn")
        clawed = service.claw_back(session, earn_entry_id=pos_earn, points=3,
                                   idempotency_key="ret-earn", source="test").id
        restored = service.restore_burn(session, burn_entry_id=pos_burn, points=40,
                                        idempotency_key="ret-burn", source="test").id
        corrected = service.adjust(session, merchant_id=uuid.UUID(world.a.merchant_id),
                                   member_id=uuid.UUID(member), points=-5,
                                   reason="double scan", idempotency_key="fix",
                                   source="test").id
    miles_earned = miles(database, member, 12, "m1", merchant=world.a, reason="purchase R-123")
    miles_gift = miles(database, member, 3, "m2", merchant=None, reason="welcome")
    with database.session_scope() as session:
        miles_burned = service.burn_miles(
            session, member_id=uuid.UUID(member), miles=4, idempotency_key="m3",
            source="test", reason="purchase R-124",
            merchant_id=uuid.UUID(world.a.merchant_id)).id

    items = {item["entry_id"]: item for item in lines(client, world.operator_key, member)}
    expected = {
        welcome: ("earn", 500, "Earned at Merchant 12345 — welcome bonus"),
        old: ("earn", 30, "Earned at Merchant 12345"),
        expired_id: ("expire", -30, "Expired (earned 2026-03-15)"),
        pos_earn: ("earn", 19, "Earned at Merchant 12345 — receipt R-123"),
        pos_burn: ("burn", -100, "Redeemed at Merchant 12345 — receipt R-123"),
        clawed: ("return", -3, "Returned purchase R-123: points taken back"),
        restored: ("return", 40, "Points restored from returned purchase R-123"),
        corrected: ("adjust", -5, "Correction: double scan"),
        miles_earned: ("earn", 12, "Coalition miles earned at Merchant 12345 — receipt R-123"),
        miles_gift: ("earn", 3, "Coalition miles earned — welcome"),
        miles_burned: ("burn", -4,
                       "Coalition miles redeemed at Merchant 12345 — receipt R-124"),
    }
    for entry_id, (kind, points, reason) in expected.items():
        item = items[str(entry_id)]
        assert (item["kind"], item["points"], item["reason"]) == (kind, points, reason), item
    assert items[str(clawed)]["reverses_entry_id"] == str(pos_earn)
    assert items[str(expired_id)]["occurred_at"] == at(NOW - DAY)
    taps = [item for item in items.values() if item["kind"] == "tap"]
    assert [(t["points"], t["reason"], t["source"]) for t in taps] == [
        (5, "Card tap at Main store", "tap")]
    assert invariants(database) == []


@pytest.mark.parametrize(("params", "code", "field"), [
    ({"limit": 0}, "invalid_limit", "limit"),
    ({"limit": 201}, "invalid_limit", "limit"),
    ({"limit": -1}, "invalid_limit", "limit"),
    ({"limit": 10**30}, "invalid_limit", "limit"),
    ({"cursor": "nope"}, "invalid_cursor", "cursor"),
    ({"cursor": "!!!!"}, "invalid_cursor", "cursor"),
    ({"cursor": ""}, "invalid_cursor", "cursor"),
    ({"cursor": "é"}, "invalid_cursor", "cursor"),
    ({"cursor": "QQ" * 200}, "invalid_cursor", "cursor"),
    ({"cursor": base64.urlsafe_b64encode(b"hello").decode()}, "invalid_cursor", "cursor"),
    ({"cursor": base64.urlsafe_b64encode(
        f"9999999999999999999.{uuid.uuid4().hex}".encode()).decode()},
     "invalid_cursor", "cursor"),
    ({"cursor": base64.urlsafe_b64encode(
        f"1.{uuid.uuid4().hex}.1".encode()).decode()},
     "invalid_cursor", "cursor"),
    ({"cursor": base64.urlsafe_b64encode(f"1.{uuid.uuid4()}".encode()).decode()},
     "invalid_cursor", "cursor"),
])
def test_a_bad_limit_or_cursor_is_refused(client: TestClient, world: World,
                                          database: Database, params: dict[str, Any],
                                          code: str, field: str) -> None:
    member = enrol(client, world.a)
    response = history(client, world.a.merchant_key, member, **params)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (response.json()["code"], response.json()["field"]) == (code, field)


def test_a_limit_that_is_not_a_number_is_a_validation_error(client: TestClient, world: World,
                                                            database: Database) -> None:
    member = enrol(client, world.a)
    for params in ({"limit": "ten"}, {"limit": "1.5"}, {"unit": "coins"},
                   {"merchant_id": "not-a-uuid"}):
        response = history(client, world.a.merchant_key, member, **params)
        assert (response.status_code, response.json()["code"]) == (422, "validation_failed")


# --- pure parts ---------------------------------------------------------------------------

def test_cursor_round_trip() -> None:
    for moment in (NOW, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                   datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)):
        position = Position(occurred_at=moment, entry_id=uuid.uuid4())
        assert decode_cursor(encode_cursor(position)) == position


def test_expiry_outlook_is_capped_at_the_balance() -> None:
    lots = [(NOW + DAY, 60), (NOW + DAY, 40), (NOW + 40 * DAY, 10), (NOW, 500),
            (NOW + 2 * DAY, 0)]
    soon, upcoming = expiry_outlook(lots, balance=110, now=NOW)
    assert soon == 100 and upcoming is not None
    assert (upcoming.at, upcoming.points) == (NOW + DAY, 100)
    soon, upcoming = expiry_outlook(lots, balance=70, now=NOW)
    assert soon == 70 and upcoming is not None and upcoming.points == 70
    assert expiry_outlook(lots, balance=-5, now=NOW) == (0, None)
    assert expiry_outlook([], balance=10, now=NOW) == (0, None)


def _facts(**changes: Any) -> Facts:
    base: dict[str, Any] = {"kind": "earn", "unit": "points", "amount": 10,
                            "stored_reason": "", "merchant_name": "Cafe", "timezone": "UTC"}
    return Facts(**{**base, **changes})


@pytest.mark.parametrize(("facts", "text"), [
    (_facts(), "Earned at Cafe"),
    (_facts(stored_reason="purchase "), "Earned at Cafe — purchase"),
    (_facts(kind="tap", stored_reason="tap at Shibuya"), "Card tap at Shibuya"),
    (_facts(kind="tap"), "Card tap at Cafe"),
    (_facts(kind="return", amount=-5, original=Origin("tap", "tap at X", NOW)),
     "Card tap reversed: points taken back"),
    (_facts(kind="return", amount=-5, original=Origin("earn", "", NOW)),
     "A returned purchase at Cafe: points taken back"),
    (_facts(kind="return", amount=5, original=None),
     "Points restored from a returned purchase at Cafe"),
    (_facts(kind="expire", amount=-5), "Expired"),
    (_facts(kind="expire", amount=-5, timezone="Asia/Tokyo",
            lot_origin=Origin("return", "", datetime(2026, 1, 31, 15, tzinfo=UTC))),
     "Expired (given back 2026-02-01)"),
    (_facts(kind="expire", amount=-5, lot_origin=Origin("adjust", "x", NOW)),
     "Expired (credited 2026-04-10)"),
    (_facts(kind="adjust", stored_reason="  "), "Correction"),
    (_facts(kind="transfer", stored_reason="to family"), "Transfer: to family"),
    (_facts(unit="miles", kind="return", amount=-5,
            original=Origin("earn", "purchase R-9", NOW)),
     "Returned purchase R-9: miles taken back"),
    (_facts(unit="miles", kind="return", amount=5,
            original=Origin("burn", "purchase R-9", NOW)),
     "Miles restored from returned purchase R-9"),
    (_facts(unit="miles", kind="expire", amount=-5), "Coalition miles expired"),
    (_facts(unit="miles", kind="adjust", stored_reason="goodwill"),
     "Miles correction: goodwill"),
    (_facts(unit="miles", kind="burn", merchant_name=None), "Coalition miles redeemed"),
])
def test_reason_texts(facts: Facts, text: str) -> None:
    assert describe(facts) == text
