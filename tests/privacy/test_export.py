"""The personal-data export (``GET /v1/members/{id}/export``): every section with exact
values, what a merchant's export holds, an erased member's, and a long history streamed
without being held in memory."""

from __future__ import annotations

import json
import tracemalloc
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from starlette.testclient import TestClient

from patron.db import Database, insert_rows, table_of
from patron.identity.models import Card
from patron.kit.clock import clock
from patron.pos.models import PosTransaction, PosTransactionLine
from patron.privacy import export as member_export
from patron.scores.models import MemberScore
from patron.security.models import SecurityEvent
from patron.tenancy.service import SYSTEM
from patron.vouchers import codes
from patron.vouchers.models import Voucher
from tests.api.operations import PUSH_SUBSCRIPTION
from tests.coalition.test_coalition import put_rates
from tests.conftest import World, auth
from tests.pos.conftest import JPY_PROGRAM, enrol, put_program
from tests.pos.test_returns import give_back
from tests.vouchers.conftest import make_codes, make_offer
from tests.vouchers.test_benefits import make_rule

# A Wednesday, 09:30 in Tokyo (merchant A); then a purchase, a return, a tap, the export.
NOW = datetime(2026, 12, 2, 0, 30, tzinfo=UTC)
T1, T2, T3, T4 = (NOW + timedelta(minutes=minutes) for minutes in (1, 2, 3, 4))
OPERATOR = SYSTEM
PHONE = "+819011112222"
EMAIL = "hana.yamada@example.com"
CARD_UID = "04AABBCCDD"
COFFEE = {"sku": "CF-1", "name": "Coffee", "category": "Coffee", "quantity": 2,
          "unit_price": 350}
BREAD = {"sku": "BR-1", "name": "Bread", "category": "bakery", "quantity": 1,
         "unit_price": 1234}


def export(client: TestClient, key: str, member_id: str) -> Any:
    return client.get(f"/v1/members/{member_id}/export", headers=auth(key))


def one_of_everything(client: TestClient, world: World, database: Database) -> dict[str, Any]:
    """A member of merchant A with something in every section: enrolled with a referral
    code, a card and consents; a personal code used in a purchase that fires a campaign,
    crosses a benefit threshold and earns points and miles; part of it returned (which
    takes the referral reward back); a tap at the reader; scores; a refused attempt."""
    clock.freeze(NOW)
    put_program(client, world.a, JPY_PROGRAM)
    assert put_rates(client, world).status_code == 200
    program = client.put(f"/v1/merchants/{world.a.merchant_id}/referral-program",
                         headers=auth(world.a.merchant_key),
                         json={"referrer_points": 500, "referee_points": 100,
                               "min_purchase_minor": 1000})
    assert program.status_code == 200, program.text
    referrer = enrol(client, world.a, phone="+81 90-5555-6666")
    member = enrol(client, world.a, phone="090-1111-2222", email="Hana.Yamada@Example.com",
                   card_uid=CARD_UID, birth_year=1980, gender="female", postcode="150-0001",
                   language="ja", consents={"sms": True},
                   referral_code=referral_code(client, world, referrer["id"]))
    # The coalition's own e-mail consent, given in the wallet, with its proof.
    coalition_consent = client.post(
        f"/v1/members/{member['id']}/consents", headers=auth(world.operator_key),
        json={"channel": "email", "purpose": "marketing", "granted": True, "source": "wallet",
              "policy_version": "2026-01", "evidence": "203.0.113.7"})
    assert coalition_consent.status_code == 200, coalition_consent.text
    own_code = referral_code(client, world, member["id"])
    yen_off = make_offer(client, world.a.merchant_key, name="100 yen off", value=100)
    [code] = make_codes(client, world.a.merchant_key, yen_off["id"], member_id=member["id"])
    croissant = make_offer(client, world.a.merchant_key, name="Free croissant",
                           kind="free_item", item_sku="CR-1")
    campaign = client.post("/v1/campaigns", headers=auth(world.a.merchant_key), json={
        "name": "Coffee lovers", "trigger": "checkout",
        "conditions": {"field": "purchase.categories", "op": "contains", "value": "coffee"},
        "actions": [{"type": "issue_voucher", "offer_id": croissant["id"]}]})
    assert campaign.status_code == 201, campaign.text
    drink = make_offer(client, world.a.merchant_key, name="Free drink", kind="free_item",
                       item_sku="CF-1")
    make_rule(client, world.a.merchant_key, name="First visit", measure="purchases",
              threshold=1, offer_id=drink["id"])
    clock.freeze(T1)
    sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "R-1", "occurred_at": T1.isoformat(), "currency": "JPY",
        "lines": [COFFEE, BREAD], "vouchers": [{"code": code}], "channel": "store",
        "member": {"member_id": member["id"]}, "payment": {"method": "cash", "amount": 1834}})
    assert sale.status_code == 201, sale.text
    clock.freeze(T2)
    returned = give_back(client, world.a.pos_key, sale.json()["id"],
                         lines=[{"line_no": 2, "quantity": 1}])
    assert returned.status_code == 201, returned.text
    clock.freeze(T3)
    tapped = client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                         json={"card_uid": CARD_UID})
    assert tapped.status_code == 201, tapped.text
    browser = client.post(f"/v1/members/{member['id']}/push-subscriptions",
                          headers=auth(world.a.merchant_key), json=PUSH_SUBSCRIPTION)
    assert browser.status_code == 201, browser.text
    with database.session_scope() as session:
        session.add(MemberScore(member_id=uuid.UUID(member["id"]),
                                merchant_id=uuid.UUID(world.a.merchant_id), computed_at=T3,
                                p_alive=0.75, expected_purchases_90d=1.5, clv_90d_minor=2400))
        session.add(SecurityEvent(merchant_id=uuid.UUID(world.a.merchant_id),
                                  kind="pos_commit", member_id=uuid.UUID(member["id"]),
                                  terminal_id=uuid.UUID(world.a.pos_id),
                                  client_address="203.0.113.9", refusal="pin_wrong",
                                  occurred_at=T3))
    return {"member": member, "sale": sale.json()["id"], "return": returned.json()["id"],
            "code": code, "own_code": own_code,
            "croissant": voucher_codes(database, croissant["id"]),
            "drink": voucher_codes(database, drink["id"])}


def referral_code(client: TestClient, world: World, member_id: str) -> str:
    shown = client.get(f"/v1/members/{member_id}/referral", headers=auth(world.a.merchant_key))
    assert shown.status_code == 200, shown.text
    code: str = shown.json()["code"]
    return code


def voucher_codes(database: Database, offer_id: str) -> list[str]:
    with database.session_scope() as session:
        return [codes.display(code) for code in session.scalars(
            select(Voucher.code).where(Voucher.offer_id == uuid.UUID(offer_id)))]


def card_id(database: Database, member_id: str) -> str:
    with database.session_scope() as session:
        return str(session.scalar(select(Card.id).where(Card.member_id == uuid.UUID(member_id))))


def entries_by_id(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The ledger section with its random ids replaced by what each entry is (its kind,
    reason and unit), so that it compares exactly: (kind, reason, occurred_at, what it
    reverses, postings)."""
    def name(entry: dict[str, Any]) -> str:
        return f"{entry['kind']}: {entry['reason']} ({entry['postings'][0]['unit']})"
    names = {entry["id"]: name(entry) for entry in entries}
    return sorted((name(entry), entry["merchant_number"], entry["occurred_at"],
                   names.get(entry["reverses_entry_id"]),
                   [(p["account"], p["unit"], p["amount"]) for p in entry["postings"]])
                  for entry in entries)


def test_an_export_holds_every_section_with_exact_values(
        client: TestClient, world: World, database: Database) -> None:
    made = one_of_everything(client, world, database)
    member = made["member"]
    clock.freeze(T4)
    response = export(client, world.operator_key, member["id"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="patron-member-{member["member_number"]}.json"')
    data = response.json()
    at = [moment.isoformat() for moment in (NOW, T1, T2, T3, T4)]
    store = {"code": "main", "name": "Main store"}
    assert list(data) == [
        "format", "exported_at", "rows_of_merchant", "member", "referral_code",
        "coalition_miles", "consents", "memberships", "cards", "points_balances",
        "purchases", "returns", "ledger_entries", "point_lots", "vouchers", "voucher_uses",
        "benefits", "benefit_progress", "visits", "statistics", "statistics_by_category",
        "store_visits", "scores", "referrals", "campaign_outcomes", "security_events",
        "events", "push_subscriptions"]
    assert (data["format"], data["exported_at"], data["rows_of_merchant"]) == (
        "patron.member-export/1", at[4], None)
    assert data["member"] == {
        "id": member["id"], "member_number": member["member_number"], "status": "active",
        "enrolled_at": {"merchant_number": "12345", "merchant_name": "Merchant 12345",
                        "store": None},
        "phone": PHONE, "email": EMAIL, "birth_year": 1980, "birth_month": None,
        "gender": "female", "postcode": "150-0001", "region": None, "language": "ja",
        "has_pin": False, "pin_locked_until": None, "created_at": at[0],
        "updated_at": at[0], "withdrawn_at": None, "erased_at": None}
    assert data["referral_code"] == {"code": made["own_code"], "created_at": at[0]}
    assert data["coalition_miles"] == {"balance": 18 - 11}
    assert data["consents"] == {
        # The operator's export: what the coalition's own scope allows.
        "current": {"sms": False, "email": True, "push": False},
        "states": [
            {"scope": "merchant", "merchant_number": "12345", "channel": "sms",
             "purpose": "marketing", "granted": True, "source": "api",
             "policy_version": None, "since": at[0]},
            {"scope": "coalition", "merchant_number": None, "channel": "email",
             "purpose": "marketing", "granted": True, "source": "wallet",
             "policy_version": "2026-01", "since": at[0]}],
        "history": [
            {"scope": "merchant", "merchant_number": "12345", "channel": "sms",
             "purpose": "marketing", "granted": True, "source": "api",
             "policy_version": None, "evidence": None, "occurred_at": at[0]},
            {"scope": "coalition", "merchant_number": None, "channel": "email",
             "purpose": "marketing", "granted": True, "source": "wallet",
             "policy_version": "2026-01", "evidence": "203.0.113.7", "occurred_at": at[0]}]}
    assert data["memberships"] == [{"merchant_number": "12345",
                                    "merchant_name": "Merchant 12345", "joined_at": at[0],
                                    "source": "api"}]
    assert data["cards"] == [{"id": card_id(database, member["id"]), "uid_last4": "CCDD",
                              "status": "active", "block_reason": None, "blocked_at": None,
                              "created_at": at[0], "merchant_number": "12345"}]
    # 24 for the purchase, 100 for the referral, both back on the return (11 and 100),
    # 5 for the tap.
    assert data["points_balances"] == [{"merchant_number": "12345",
                                        "balance": 24 + 100 - 11 - 100 + 5}]
    no_miles = {"points_burned": 0, "miles_discount": 0, "miles_burned": 0}
    assert data["purchases"] == [{
        "id": made["sale"], "merchant_number": "12345", "store": store, "receipt_no": "R-1",
        "channel": "store", "occurred_at": at[1], "currency": "JPY", "subtotal": 1934,
        "voucher_discount": 100, "points_discount": 0, "miles_discount": 0, "total": 1834,
        "points_earned": 24, "points_burned": 0, "miles_earned": 18, "miles_burned": 0,
        "payment": {"method": "cash", "amount": 1834},
        "lines": [
            {"line_no": 1, "sku": "CF-1", "gtin": None, "name": "Coffee",
             "category": "Coffee", "quantity": 2, "unit_price": 350, "amount": 700,
             "voucher_discount": 36, "points_discount": 0, "points_earned": 13,
             "miles_earned": 7, "returned_quantity": 0, **no_miles},
            {"line_no": 2, "sku": "BR-1", "gtin": None, "name": "Bread",
             "category": "bakery", "quantity": 1, "unit_price": 1234, "amount": 1234,
             "voucher_discount": 64, "points_discount": 0, "points_earned": 11,
             "miles_earned": 11, "returned_quantity": 1, **no_miles}]}]
    assert data["returns"] == [{
        "id": made["return"], "purchase_id": made["sale"], "merchant_number": "12345",
        "return_no": "RT-1", "occurred_at": at[2], "refund_amount": 1234 - 64,
        "points_clawed_back": 11, "points_restored": 0, "miles_clawed_back": 11,
        "miles_uncollected": 0, "miles_restored": 0,
        "lines": [{"line_no": 2, "quantity": 1, "refund_amount": 1170,
                   "points_clawed_back": 11, "points_restored": 0, "miles_clawed_back": 11,
                   "miles_restored": 0}]}]
    points, miles = ("member_points", "merchant_liability"), ("member_miles", "coalition_pool")
    assert entries_by_id(data["ledger_entries"]) == sorted([
        ("earn: purchase R-1 (points)", "12345", at[1], None,
         [(points[0], "points", 24), (points[1], "points", -24)]),
        ("earn: purchase R-1 (miles)", "12345", at[1], None,
         [(miles[0], "miles", 18), (miles[1], "miles", -18)]),
        ("earn: referral (referee) (points)", "12345", at[1], None,
         [(points[0], "points", 100), (points[1], "points", -100)]),
        ("return: return RT-1 of purchase R-1 (points)", "12345", at[2],
         "earn: purchase R-1 (points)",
         [(points[0], "points", -11), (points[1], "points", 11)]),
        ("return: return RT-1 of purchase R-1 (miles)", "12345", at[2],
         "earn: purchase R-1 (miles)", [(miles[0], "miles", -11), (miles[1], "miles", 11)]),
        ("return: referral (referee) returned (points)", "12345", at[2],
         "earn: referral (referee) (points)",
         [(points[0], "points", -100), (points[1], "points", 100)]),
        ("tap: tap at Main store (points)", "12345", at[3], None,
         [(points[0], "points", 5), (points[1], "points", -5)])])
    kinds = {entry["id"]: entry["reason"] for entry in data["ledger_entries"]}
    expires = "2027-12-31T15:00:00+00:00"  # the end of next year, Tokyo time (12 months)
    assert sorted((kinds[lot["entry_id"]], lot["amount"], lot["remaining"], lot["expires_at"],
                   lot["created_at"], lot["merchant_number"]) for lot in data["point_lots"]
                  ) == [("purchase R-1", 24, 13, expires, at[1], "12345"),
                        ("referral (referee)", 100, 0, expires, at[1], "12345"),
                        ("tap at Main store", 5, 5, expires, at[3], "12345")]
    free = {"kind": "free_item", "value": 0, "currency": "JPY"}
    unused = {"merchant_number": "12345", "max_redemptions": 1, "redemptions_count": 0,
              "valid_from": None, "valid_until": None, "revoked_at": None}
    assert sorted(data["vouchers"], key=lambda v: (v["issued_at"], v["code"])) == [
        {"code": made["code"], "offer": {"name": "100 yen off", "kind": "amount_off",
                                         "value": 100, "currency": "JPY"},
         "source": "api", "issued_at": at[0], **unused, "redemptions_count": 1},
        *sorted([
            {"code": made["croissant"][0], "offer": {"name": "Free croissant", **free},
             "source": "campaign", "issued_at": at[1], **unused},
            {"code": made["drink"][0], "offer": {"name": "Free drink", **free},
             "source": "benefit", "issued_at": at[1], **unused}],
            key=lambda voucher: voucher["code"])]
    assert data["voucher_uses"] == [{
        "code": made["code"], "offer_name": "100 yen off", "merchant_number": "12345",
        "store": store, "status": "redeemed", "discount": 100, "bonus_points": 0,
        "currency": "JPY", "purchase_id": made["sale"], "created_at": at[1],
        "ended_at": None}]
    assert data["benefits"] == [{
        "rule_name": "First visit", "merchant_number": "12345", "crossing": 1,
        "code": made["drink"][0], "purchase_id": made["sale"], "issued_at": at[1],
        "revoked_at": None}]
    assert data["benefit_progress"] == [{"rule_name": "First visit", "merchant_number": "12345",
                                         "measure": "purchases", "threshold": 1, "count": 1}]
    assert data["visits"] == [{"merchant_number": "12345", "store": store,
                               "occurred_at": at[3], "points_granted": 5, "reason": None,
                               "tap_id": None}]
    assert data["statistics"] == [{"merchant_number": "12345", "purchase_count": 1,
                                   "spend_minor": 1834 - 1170, "first_purchase_at": at[1],
                                   "last_purchase_at": at[1]}]
    assert data["statistics_by_category"] == [
        {"merchant_number": "12345", "category": "bakery", "purchase_count": 1, "quantity": 1},
        {"merchant_number": "12345", "category": "coffee", "purchase_count": 1,
         "quantity": 2}]
    assert data["store_visits"] == [{"merchant_number": "12345", "store": store,
                                     "visit_count": 1, "last_visit_at": at[1]}]
    assert data["scores"] == [{"merchant_number": "12345", "computed_at": at[3],
                               "p_alive": 0.75, "expected_purchases_90d": 1.5,
                               "clv_90d_minor": 2400}]
    # The member's own side only: the referrer is someone else.
    assert data["referrals"] == [{
        "role": "referee", "merchant_number": "12345", "status": "clawed_back",
        "points": 100, "refusal": None, "purchase_id": made["sale"], "created_at": at[0],
        "rewarded_at": at[1], "clawed_back_at": at[2]}]
    assert data["campaign_outcomes"] == [{
        "campaign_name": "Coffee lovers", "merchant_number": "12345",
        "purchase_id": made["sale"], "occasion": None, "held_out": False, "points": 0,
        "voucher_code": made["croissant"][0], "created_at": at[1]}]
    assert data["security_events"] == [{"kind": "pos_commit", "refusal": "pin_wrong",
                                        "merchant_number": "12345", "occurred_at": at[3]}]
    assert sorted((event["type"], event["occurred_at"]) for event in data["events"]) == sorted([
        ("member.enrolled", at[0]), ("transaction.committed", at[1]),
        ("points.earned", at[1]), ("referral.rewarded", at[1]), ("benefit.issued", at[1]),
        ("campaign.outcome", at[1]), ("transaction.returned", at[2]),
        ("points.returned", at[2]), ("referral.clawed_back", at[2]),
        ("tap.recorded", at[3]), ("points.earned", at[3])])
    # The browser's push service, never its endpoint (the browser's secret).
    assert data["push_subscriptions"] == [{
        "push_service": "push.example.net", "created_at": at[3], "expires_at": None,
        "last_delivered_at": None, "gone_at": None}]
    assert PUSH_SUBSCRIPTION["endpoint"] not in response.text
    # Nothing of the referrer (another person) is in the member's export.
    assert "5555" not in response.text


def test_pages_of_any_size_write_the_same_document(
        client: TestClient, world: World, database: Database) -> None:
    """Every section read a row per page (keyset ties on equal times included) gives the
    document read 500 rows per page."""
    made = one_of_everything(client, world, database)
    with database.session_scope() as session:
        prepared = member_export.prepare(session, actor=OPERATOR,
                                         member_id=uuid.UUID(made["member"]["id"]))
    whole = json.loads(b"".join(member_export.stream(database, prepared)))
    paged = json.loads(b"".join(member_export.stream(database, prepared, page_size=1)))
    assert paged == whole and len(whole["ledger_entries"]) == 7 and len(whole["events"]) == 11


def test_an_unknown_member_is_a_problem_before_anything_is_streamed(
        client: TestClient, world: World) -> None:
    response = export(client, world.operator_key, str(uuid.uuid4()))
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_a_merchant_export_holds_the_profile_and_its_own_rows(
        client: TestClient, world: World, database: Database) -> None:
    """The member buys at B too (which gives B a membership): A's export leaves out
    everything of B's; the operator's holds both."""
    made = one_of_everything(client, world, database)
    member = made["member"]
    at_b = client.post("/v1/pos/transactions", headers=auth(world.b.pos_key), json={
        "receipt_no": "B-1", "occurred_at": T3.isoformat(), "currency": "USD",
        "lines": [{"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 500}],
        "member": {"barcode": member["member_number"]}})
    assert at_b.status_code == 201, at_b.text
    whole = export(client, world.operator_key, member["id"]).json()
    ours = export(client, world.a.merchant_key, member["id"]).json()
    assert whole["rows_of_merchant"] is None and ours["rows_of_merchant"] == "12345"
    assert [p["receipt_no"] for p in whole["purchases"]] == ["R-1", "B-1"]
    assert [p["receipt_no"] for p in ours["purchases"]] == ["R-1"]
    assert sorted(m["merchant_number"] for m in whole["memberships"]) == ["12345", "54321"]
    for name, rows in ours.items():
        if isinstance(rows, list):
            assert all(row.get("merchant_number") in ("12345", None) for row in rows), name
            whole_rows = [row for row in whole[name]
                          if row.get("merchant_number") in ("12345", None)]
            assert rows == whole_rows, name
    assert ours["member"] == whole["member"] and ours["member"]["phone"] == PHONE
    # A's consent rows only; the coalition's grant still counts in what A may send.
    assert ours["consents"] == {
        "current": {"sms": True, "email": True, "push": False},
        "states": [state for state in whole["consents"]["states"]
                   if state["merchant_number"] == "12345"],
        "history": [event for event in whole["consents"]["history"]
                    if event["merchant_number"] == "12345"]}
    assert len(ours["consents"]["states"]) == len(ours["consents"]["history"]) == 1
    assert ours["coalition_miles"] == whole["coalition_miles"]


def test_an_erased_member_export_holds_no_personal_data(
        client: TestClient, world: World, database: Database) -> None:
    made = one_of_everything(client, world, database)
    member = made["member"]
    erased = client.post(f"/v1/members/{member['id']}/erase",
                         headers=auth(world.a.merchant_key))
    assert erased.status_code == 200, erased.text
    response = export(client, world.operator_key, member["id"])
    assert response.status_code == 200
    text = response.text.lower()
    # (The birth year and the card's last four are checked by field below: four digits or
    # hex letters can occur by chance in an id.)
    for personal in (PHONE, "9011112222", EMAIL, "hana", "female", "150-0001", CARD_UID,
                     "203.0.113.7"):
        assert personal.lower() not in text, personal
    data = response.json()
    profile = data["member"]
    assert profile["status"] == "erased" and profile["erased_at"] is not None
    assert {field: profile[field] for field in (
        "phone", "email", "birth_year", "birth_month", "gender", "postcode", "region",
        "language")} == dict.fromkeys(("phone", "email", "birth_year", "birth_month",
                                       "gender", "postcode", "region", "language"))
    assert profile["has_pin"] is False
    assert data["consents"]["current"] == {"sms": False, "email": False, "push": False}
    # Erasure withdrew every marketing consent, and the ledger keeps no evidence.
    assert sorted((state["scope"], state["channel"], state["granted"], state["source"])
                  for state in data["consents"]["states"]) == [
        ("coalition", "email", False, "erasure"), ("merchant", "sms", False, "erasure")]
    assert [event["evidence"] for event in data["consents"]["history"]] == [None] * 4
    assert [(card["uid_last4"], card["status"]) for card in data["cards"]] == [
        (None, "blocked")]
    # The history stays, anonymously: the books still balance.
    assert [purchase["receipt_no"] for purchase in data["purchases"]] == ["R-1"]


# --- a long history ---------------------------------------------------------------------

PURCHASES = 10_000


def many_purchases(database: Database, world: World, member_id: uuid.UUID) -> None:
    """PURCHASES purchases of one line each, inserted set-wise; three share each second,
    so pages end inside runs of equal times."""
    merchant, store, terminal = (uuid.UUID(world.a.merchant_id), uuid.UUID(world.a.store_id),
                                 uuid.UUID(world.a.pos_id))
    ids = [uuid.uuid4() for _ in range(PURCHASES)]
    start = NOW - timedelta(days=365)
    sales = [{"id": ids[n], "merchant_id": merchant, "store_id": store,
              "terminal_id": terminal, "receipt_no": f"H-{n:05d}", "member_id": member_id,
              "channel": "store", "currency": "JPY", "subtotal": 1000 + n,
              "voucher_discount": 0, "points_discount": 0, "miles_discount": 0,
              "total": 1000 + n, "points_earned": 10, "points_burned": 0,
              "miles_earned": 0, "miles_burned": 0, "occurred_at":
              start + timedelta(seconds=n // 3), "created_at": NOW, "request_hash": "0" * 64}
             for n in range(PURCHASES)]
    lines = [{"transaction_id": ids[n], "line_no": 1, "merchant_id": merchant,
              "sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 1,
              "unit_price": 1000 + n, "amount": 1000 + n, "voucher_discount": 0,
              "points_discount": 0, "points_earned": 10, "points_burned": 0,
              "miles_discount": 0, "miles_earned": 0, "miles_burned": 0,
              "returned_quantity": 0} for n in range(PURCHASES)]
    with database.session_scope() as session:
        insert_rows(session, table_of(PosTransaction), sales)
        insert_rows(session, table_of(PosTransactionLine), lines)


def peak_bytes(consume: Any) -> tuple[int, int]:
    """What ``consume()`` returns (a size) and the peak of Python memory allocated while
    it ran, above what was allocated when it started."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        size = consume()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return size, peak


def test_a_long_history_is_streamed_in_pages_not_held_in_memory(
        client: TestClient, world: World, database: Database) -> None:
    clock.freeze(NOW)
    member = enrol(client, world.a, phone="090-1111-2222")
    member_id = uuid.UUID(member["id"])
    many_purchases(database, world, member_id)

    response = export(client, world.a.merchant_key, member["id"])
    assert response.status_code == 200
    purchases = response.json()["purchases"]
    assert len(purchases) == PURCHASES
    assert sorted(p["receipt_no"] for p in purchases) == [
        f"H-{n:05d}" for n in range(PURCHASES)]
    assert sum(p["lines"][0]["amount"] for p in purchases) == sum(
        1000 + n for n in range(PURCHASES))
    times = [p["occurred_at"] for p in purchases]
    assert times == sorted(times)

    with database.session_scope() as session:
        prepared = member_export.prepare(session, actor=OPERATOR, member_id=member_id)

    def streamed() -> int:
        return sum(len(chunk) for chunk in member_export.stream(database, prepared))

    def held() -> int:  # the same document built in memory first
        return len(b"".join(member_export.stream(database, prepared)))

    streamed()  # statements compiled and cached once, outside the measurement
    size, streaming_peak = peak_bytes(streamed)
    same_size, holding_peak = peak_bytes(held)
    assert size == same_size > 2_000_000
    # A page (500 purchases, their lines, items and encoded chunk) at a time: the peak is
    # a small part of the document, which building it in memory must at least hold.
    assert streaming_peak < size // 4 < size <= holding_peak
