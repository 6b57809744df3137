"""Quote and commit through the API: exact figures, idempotency, refusals that change
nothing, stats and outbox rows in the purchase's own transaction."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.ledger.models import JournalEntry, PointLot
from patron.members.models import Membership
from patron.notify.models import OutboxEvent
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.scores import service as scores
from patron.scores.models import MemberStats, MemberStoreVisit
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.conftest import (
    JPY_BASKET,
    USD_PROGRAM,
    enrol,
    entries,
    purchase,
    put_program,
)


def commit(client: TestClient, key: str, body: dict[str, Any]) -> Any:
    return client.post("/v1/pos/transactions", headers=auth(key), json=body)


def events(database: Database) -> list[tuple[str, Any]]:
    with database.session_scope() as session:
        return [(e.type, e.payload) for e in session.scalars(
            select(OutboxEvent).order_by(OutboxEvent.created_at, OutboxEvent.type))]


# --- quote ----------------------------------------------------------------------------------

def test_quote_previews_and_writes_nothing(client: TestClient, world: World,
                                           database: Database, jpy: dict[str, Any]) -> None:
    body = purchase(member={"barcode": jpy["member_number"]}, lines=JPY_BASKET,
                    points_to_burn=300)
    before = snapshot(database)
    response = client.post("/v1/pos/quote", headers=auth(world.a.pos_key), json=body)
    assert response.status_code == 200, response.text
    assert changed_tables(before, snapshot(database)) == []
    quote = response.json()
    # The same figures the commit then records (see the burn test below).
    assert (quote["subtotal"], quote["points_discount"], quote["total"]) == (2534, 300, 2234)
    assert (quote["points_burned"], quote["points_earned"]) == (300, 23)
    assert (quote["balance_before"], quote["balance_after"], quote["max_burnable"]) == (
        500, 223, 500)
    assert quote["offers"] == [] and quote["explanation"]
    committed = commit(client, world.a.pos_key, body)
    assert committed.status_code == 201, committed.text
    for name in ("subtotal", "points_discount", "total", "points_earned", "points_burned",
                 "balance_after", "lines"):
        assert committed.json()[name] == quote[name], name


def test_quote_of_a_burn_beyond_the_balance_is_409(client: TestClient, world: World,
                                                   jpy: dict[str, Any]) -> None:
    body = purchase(member={"member_id": jpy["id"]}, lines=JPY_BASKET, points_to_burn=600)
    response = client.post("/v1/pos/quote", headers=auth(world.a.pos_key), json=body)
    assert (response.status_code, response.json()["code"]) == (409, "insufficient_points")


# --- exact figures ----------------------------------------------------------------------------

def test_jpy_basket_with_a_category_multiplier_and_an_exclusion(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any]) -> None:
    response = commit(client, world.a.pos_key,
                      purchase(member={"barcode": jpy["member_number"]}, lines=JPY_BASKET))
    assert response.status_code == 201, response.text
    answer = response.json()
    # coffee 700 x2 = 14, tobacco excluded, bread 12.34 → 26.34, floor once → 26.
    assert (answer["subtotal"], answer["points_discount"], answer["total"]) == (2534, 0, 2534)
    assert (answer["points_earned"], answer["points_burned"]) == (26, 0)
    assert answer["balance_after"] == 526
    assert [line["points_earned"] for line in answer["lines"]] == [14, 0, 12]
    assert [line["amount"] for line in answer["lines"]] == [700, 600, 1234]
    assert answer["member_id"] == jpy["id"] and answer["offers"] == []
    assert answer["lines"][0]["gtin"] == "4006381333931"
    with database.session_scope() as session:
        lot = session.scalars(select(PointLot).where(PointLot.amount == 26)).one()
        # 12 months after the Tokyo month of the purchase, at local midnight.
        assert lot.expires_at is not None and lot.expires_at > utcnow() + timedelta(days=330)


def test_usd_basket_rounds_half_up_once(client: TestClient, world: World,
                                        database: Database) -> None:
    put_program(client, world.b, USD_PROGRAM)
    member = enrol(client, world.b, email="john@example.com")
    lines = [{"sku": "LATTE", "name": "Latte", "category": "coffee", "quantity": 3,
              "unit_price": 450},
             {"sku": "GC-25", "name": "Gift card", "category": "gift_card", "quantity": 1,
              "unit_price": 2500},
             {"sku": "MUF", "name": "Muffin", "quantity": 1, "unit_price": 299}]
    response = commit(client, world.b.pos_key, purchase(
        member={"member_id": member["id"]}, lines=lines, currency="USD"))
    assert response.status_code == 201, response.text
    answer = response.json()
    # $13.50 x1.5 = 20.25, gift card excluded, $2.99 = 2.99 → 23.24 → 23 (half up);
    # shares by largest remainder: 20 + 0 + 3 (the .99 remainder wins the spare point).
    assert (answer["subtotal"], answer["total"], answer["points_earned"]) == (4149, 4149, 23)
    assert [line["points_earned"] for line in answer["lines"]] == [20, 0, 3]
    assert answer["balance_after"] == 23 and answer["currency"] == "USD"


def test_burn_is_a_discount_and_earning_is_on_what_is_paid(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any]) -> None:
    response = commit(client, world.a.pos_key, purchase(
        member={"barcode": jpy["member_number"]}, lines=JPY_BASKET, points_to_burn=300))
    assert response.status_code == 201, response.text
    answer = response.json()
    # 300 yen off, split 700 : 600 : 1234 → 83 + 71 + 146 (largest remainder).
    assert [line["points_discount"] for line in answer["lines"]] == [83, 71, 146]
    # Paid: coffee 617 x2 = 12.34, tobacco excluded, bread 1088 = 10.88 → 23.22 → 23,
    # split 12 + 0 + 11 (the .88 remainder wins the spare point).
    assert (answer["subtotal"], answer["points_discount"], answer["total"]) == (2534, 300, 2234)
    assert (answer["points_burned"], answer["points_earned"]) == (300, 23)
    assert [line["points_earned"] for line in answer["lines"]] == [12, 0, 11]
    assert answer["balance_after"] == 500 - 300 + 23
    with database.session_scope() as session:
        kinds = sorted(e.kind for e in session.scalars(select(JournalEntry)))
    assert kinds == ["burn", "earn", "earn"]  # the seed, the burn, the purchase's earn


# --- idempotency ----------------------------------------------------------------------------

def test_a_replay_answers_the_identical_body_and_posts_nothing_more(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any]) -> None:
    body = purchase(member={"barcode": jpy["member_number"]}, lines=JPY_BASKET,
                    points_to_burn=100)
    first = commit(client, world.a.pos_key, body)
    assert first.status_code == 201, first.text
    before = snapshot(database)
    clock.freeze(utcnow() + timedelta(minutes=1))  # a later retry: created_at must not move
    again = commit(client, world.a.pos_key, body)
    assert again.status_code == 201
    assert again.content == first.content
    assert changed_tables(before, snapshot(database)) == []
    assert entries(database) == 3  # seed, burn, earn


def test_the_same_receipt_with_another_body_is_409(client: TestClient, world: World,
                                                   database: Database,
                                                   jpy: dict[str, Any]) -> None:
    body = purchase(member={"member_id": jpy["id"]}, lines=JPY_BASKET)
    assert commit(client, world.a.pos_key, body).status_code == 201
    before = snapshot(database)
    changed = {**body, "points_to_burn": 100}
    response = commit(client, world.a.pos_key, changed)
    assert (response.status_code, response.json()["code"]) == (409, "receipt_conflict")
    assert changed_tables(before, snapshot(database)) == []
    # Another terminal may use the same receipt number: receipts are per terminal.
    other = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                        headers=auth(world.a.merchant_key), json={"code": "pos-9"})
    assert commit(client, other.json()["api_key"], body).status_code == 201


# --- refusals change nothing ------------------------------------------------------------------

def _line(**changes: Any) -> list[dict[str, Any]]:
    return [{**JPY_BASKET[0], **changes}]


BAD = [
    ("negative quantity", {"lines": _line(quantity=-1)}, 422, "invalid_quantity"),
    ("zero quantity", {"lines": _line(quantity=0)}, 422, "invalid_quantity"),
    ("negative price", {"lines": _line(unit_price=-5)}, 422, "invalid_price"),
    ("negative points", {"points_to_burn": -100}, 422, "invalid_burn"),
    ("negative payment", {"payment": {"method": "cash", "amount": -1}}, 422,
     "invalid_payment_amount"),
    ("unknown currency", {"currency": "XYZ"}, 422, "unknown_currency"),
    ("currency not the merchant's", {"currency": "USD"}, 422, "currency_not_merchants"),
    ("malformed GTIN", {"lines": _line(gtin="4006381333932")}, 422, "invalid_gtin"),
    ("GTIN of letters", {"lines": _line(gtin="ABCDEFGH")}, 422, "invalid_gtin"),
    ("far in the future", {"occurred_at": "FUTURE"}, 422, "occurred_at_in_future"),
    ("too old", {"occurred_at": "OLD"}, 422, "occurred_at_too_old"),
    ("naive time", {"occurred_at": "2026-01-01T10:00:00"}, 422, "validation_failed"),
    ("burn beyond the balance", {"points_to_burn": 600}, 409, "insufficient_points"),
    ("burn below the minimum", {"points_to_burn": 50}, 422, "burn_below_minimum"),
    ("burn worth more than the basket", {"points_to_burn": 500, "lines": _line(quantity=1)},
     422, "burn_exceeds_basket"),
    ("anonymous burn", {"points_to_burn": 100, "member": None}, 422, "burn_needs_member"),
    ("unknown field", {"discount": 5}, 422, "validation_failed"),
    ("unknown payment field", {"payment": {"method": "card", "amount": 1, "pan": "4111"}},
     422, "validation_failed"),
    ("float price", {"lines": _line(unit_price=3.5)}, 422, "validation_failed"),
    ("two identifiers", {"member": {"barcode": "x", "phone": "+81 90 1111 2222"}}, 422,
     "validation_failed"),
    ("no lines", {"lines": []}, 422, "validation_failed"),
    ("unknown member", {"member": {"member_id": str(uuid.uuid4())}}, 404, "not_found"),
    ("huge basket", {"lines": _line(quantity=1_000_000, unit_price=10**12)}, 422,
     "basket_too_large"),
]


@pytest.mark.parametrize(("change", "status", "code"),
                         [pytest.param(c, s, k, id=name) for name, c, s, k in BAD])
@pytest.mark.parametrize("path", ["/v1/pos/transactions", "/v1/pos/quote"])
def test_bad_input_has_its_own_code_and_changes_nothing(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any],
        path: str, change: dict[str, Any], status: int, code: str) -> None:
    body = {**purchase(member={"member_id": jpy["id"]}, lines=JPY_BASKET), **change}
    if body.get("member") is None:
        body.pop("member")
    if change.get("occurred_at") == "FUTURE":
        body["occurred_at"] = (utcnow() + timedelta(minutes=6)).isoformat()
    if change.get("occurred_at") == "OLD":
        body["occurred_at"] = (utcnow() - timedelta(days=31)).isoformat()
    before = snapshot(database)
    response = client.post(path, headers=auth(world.a.pos_key), json=body)
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert changed_tables(before, snapshot(database)) == []


def test_only_terminal_keys_may_sell(client: TestClient, world: World,
                                     jpy: dict[str, Any]) -> None:
    for key in (world.a.merchant_key, world.operator_key):
        response = commit(client, key, purchase())
        assert (response.status_code, response.json()["code"]) == (403, "forbidden")


# --- anonymous, stats, outbox -------------------------------------------------------------------

def test_an_anonymous_purchase_is_recorded_without_points(
        client: TestClient, world: World, database: Database) -> None:
    response = commit(client, world.a.pos_key, purchase(lines=JPY_BASKET, channel="store"))
    assert response.status_code == 201, response.text
    answer = response.json()
    assert (answer["member_id"], answer["balance_after"], answer["points_earned"]) == (
        None, None, 0)
    assert answer["channel"] == "store" and answer["total"] == 2534
    assert entries(database) == 0
    with database.session_scope() as session:
        transaction = session.scalars(select(PosTransaction)).one()
        assert transaction.member_id is None and transaction.payment_method == "cash"
        assert len(session.scalars(select(PosTransactionLine)).all()) == 3
        assert session.scalars(select(MemberStats)).all() == []
    assert [t for t, _ in events(database)] == ["transaction.committed"]


def test_stats_and_events_are_written_with_the_purchase(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any]) -> None:
    member_id = uuid.UUID(jpy["id"])
    first = commit(client, world.a.pos_key, purchase(
        receipt_no="R-1", member={"member_id": jpy["id"]}, lines=JPY_BASKET,
        points_to_burn=100))
    earlier = (utcnow() - timedelta(days=2)).isoformat()
    second = commit(client, world.a.pos_key, purchase(
        receipt_no="R-2", member={"member_id": jpy["id"]}, occurred_at=earlier,
        lines=[{"sku": "CF-1", "name": "Coffee", "category": " COFFEE ", "quantity": 3,
                "unit_price": 350}]))
    assert first.status_code == 201 and second.status_code == 201, second.text
    with database.session_scope() as session:
        stats = scores.member_stats(session, member_id=member_id,
                                    merchant_id=uuid.UUID(world.a.merchant_id))
        assert stats is not None
        assert (stats.purchase_count, stats.spend_minor) == (2, 2434 + 1050)
        # Out of order: the earlier purchase became the first one, the last stayed.
        assert stats.first_purchase_at.isoformat() == earlier
        assert stats.last_purchase_at > stats.first_purchase_at
        assert scores.category_counts(session, member_id=member_id,
                                      merchant_id=uuid.UUID(world.a.merchant_id)) == {
            "coffee": (2, 5), "tobacco": (1, 1), "bakery": (1, 1)}
        visit = session.scalars(select(MemberStoreVisit)).one()
        assert (str(visit.store_id), visit.visit_count) == (world.a.store_id, 2)
    types = [t for t, _ in events(database)]
    assert sorted(types) == sorted(["member.enrolled", "transaction.committed",
                                    "points.burned", "points.earned",
                                    "transaction.committed", "points.earned"])
    committed = [p for t, p in events(database) if t == "transaction.committed"]
    assert {p["receipt_no"] for p in committed} == {"R-1", "R-2"}
    assert all(p["member_id"] == jpy["id"] for p in committed)


def test_a_refused_commit_leaves_no_stats_and_no_events(
        client: TestClient, world: World, database: Database, jpy: dict[str, Any]) -> None:
    before = events(database)
    response = commit(client, world.a.pos_key, purchase(
        member={"member_id": jpy["id"]}, lines=JPY_BASKET, points_to_burn=501))
    assert response.json()["code"] == "insufficient_points"
    assert events(database) == before
    with database.session_scope() as session:
        assert session.scalars(select(MemberStats)).all() == []
        assert session.scalars(select(PosTransaction)).all() == []


def test_enrolment_emits_member_enrolled(client: TestClient, world: World,
                                         database: Database) -> None:
    member = enrol(client, world.a, email="aiko@example.com")
    (event,) = events(database)
    assert event == ("member.enrolled", {"member_id": member["id"],
                                         "member_number": member["member_number"],
                                         "merchant_id": world.a.merchant_id,
                                         "source": "api"})


def test_reaching_a_tier_emits_tier_changed(client: TestClient, world: World,
                                            database: Database) -> None:
    put_program(client, world.a, {
        "earn_points": 1, "earn_per_amount": 100, "point_value_minor": 1,
        "expiry_months": None,
        "tiers": [{"name": "Blue", "threshold_points": 0},
                  {"name": "Silver", "threshold_points": 20, "earn_multiplier_bp": 15000}]})
    member = enrol(client, world.a)
    first = commit(client, world.a.pos_key, purchase(
        receipt_no="R-1", member={"member_id": member["id"]}, lines=JPY_BASKET))
    assert first.json()["points_earned"] == 25  # 2534 yen, x1 in Blue
    second = commit(client, world.a.pos_key, purchase(
        receipt_no="R-2", member={"member_id": member["id"]}, lines=JPY_BASKET))
    assert second.json()["points_earned"] == 38  # 25.34 x1.5 = 38.01 in Silver
    changes = [p for t, p in events(database) if t == "tier.changed"]
    assert [(p["from"], p["to"], p["receipt_no"]) for p in changes] == [
        ("Blue", "Silver", "R-1")]


# --- members of other merchants, tenancy ------------------------------------------------------

def test_a_coalition_member_buying_elsewhere_becomes_a_member_there(
        client: TestClient, world: World, database: Database) -> None:
    member = enrol(client, world.b, email="traveller@example.com")
    response = commit(client, world.a.pos_key, purchase(
        member={"barcode": member["member_number"]}, lines=JPY_BASKET))
    assert response.status_code == 201, response.text
    assert response.json()["balance_after"] == 25
    with database.session_scope() as session:
        here = session.scalars(select(Membership).where(
            Membership.merchant_id == uuid.UUID(world.a.merchant_id))).one()
        assert (str(here.member_id), here.source) == (member["id"], "purchase")


def test_a_transaction_is_visible_only_to_its_merchant(
        client: TestClient, world: World, jpy: dict[str, Any]) -> None:
    answer = commit(client, world.a.pos_key, purchase(member={"member_id": jpy["id"]}))
    url = f"/v1/pos/transactions/{answer.json()['id']}"
    for key in (world.a.pos_key, world.a.reader_key, world.a.merchant_key,
                world.operator_key):
        shown = client.get(url, headers=auth(key))
        assert (shown.status_code, shown.content) == (200, answer.content)
    for key in (world.b.pos_key, world.b.merchant_key):
        hidden = client.get(url, headers=auth(key))
        assert (hidden.status_code, hidden.json()["code"]) == (404, "not_found")


def test_a_replay_is_answered_even_after_the_time_window(
        client: TestClient, world: World, jpy: dict[str, Any]) -> None:
    body = purchase(member={"member_id": jpy["id"]})
    first = commit(client, world.a.pos_key, body)
    clock.freeze(utcnow() + timedelta(days=45))
    again = commit(client, world.a.pos_key, body)
    assert (again.status_code, again.content) == (201, first.content)
    fresh = commit(client, world.a.pos_key, {**body, "receipt_no": "R-NEW"})
    assert fresh.json()["code"] == "occurred_at_too_old"


# Outside the years every date field takes (1900-9998 in UTC, kit.validation.Instant): the
# request's shape is wrong before the sale's window is asked.
@pytest.mark.parametrize(("when", "code"), [("0001-01-01T00:00:00+14:00", "validation_failed"),
                                            ("9999-12-31T23:59:59-14:00",
                                             "validation_failed")])
def test_times_at_the_edge_of_the_calendar_are_refused(
        client: TestClient, world: World, when: str, code: str) -> None:
    for path in ("/v1/pos/transactions", "/v1/pos/quote"):
        response = client.post(path, headers=auth(world.a.pos_key),
                               json=purchase(occurred_at=when))
        assert (response.status_code, response.json()["code"]) == (422, code), response.text
