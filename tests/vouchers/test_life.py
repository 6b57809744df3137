"""The life of a code: validate (every reason), use in a purchase, hold, stand-alone
redemption, tickets, revocation, and the way back on a return."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.vouchers import codes
from patron.vouchers.models import Offer, Voucher, VoucherRedemption
from patron.vouchers.service import release_expired_holds
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import Tenant, World, auth
from tests.pos.conftest import enrol, give_points
from tests.vouchers.conftest import basket, make_codes, make_offer, redeem


def validate(client: TestClient, tenant: Tenant, code: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/vouchers/validate", headers=auth(tenant.pos_key),
                           json={"code": code, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def one_code(client: TestClient, tenant: Tenant, **terms: Any) -> str:
    offer = make_offer(client, tenant.merchant_key, **terms)
    [code] = make_codes(client, tenant.merchant_key, offer["id"])
    return code


def expired_code(client: TestClient, tenant: Tenant) -> str:
    """A code whose offer ended a second ago: created while it still ran (an offer cannot
    be created already ended)."""
    now = utcnow()
    clock.freeze(now - timedelta(hours=1))
    try:
        return one_code(client, tenant, valid_until=(now - timedelta(seconds=1)).isoformat())
    finally:
        clock.unfreeze()


def commit(client: TestClient, tenant: Tenant, body: dict[str, Any]) -> Any:
    return client.post("/v1/pos/transactions", headers=auth(tenant.pos_key), json=body)


LINES = basket()["lines"]


def _used(client: TestClient, world: World) -> str:
    code = one_code(client, world.a)
    assert redeem(client, world.a, code).status_code == 200
    return code


def _revoked(client: TestClient, world: World) -> str:
    code = one_code(client, world.a)
    response = client.post(f"/v1/vouchers/{code}/revoke", headers=auth(world.a.merchant_key),
                           json={})
    assert response.status_code == 200
    return code


REASONS: list[tuple[str, Any]] = [
    ("voucher_expired", lambda c, w: expired_code(c, w.a)),
    ("voucher_not_yet_valid", lambda c, w: one_code(
        c, w.a, valid_from=(utcnow() + timedelta(days=1)).isoformat())),
    ("voucher_wrong_channel", lambda c, w: one_code(c, w.a, channels=["online"])),
    ("voucher_wrong_time", lambda c, w: one_code(
        c, w.a, weekdays=[d for d in range(1, 8)
                          if d != utcnow().astimezone(ZONE).isoweekday()])),
    ("voucher_minimum_spend", lambda c, w: one_code(c, w.a, min_spend=5000)),
    ("voucher_no_eligible_items", lambda c, w: one_code(c, w.a, categories=["wine"])),
    ("voucher_already_redeemed", _used),
    ("voucher_revoked", _revoked),
]

from zoneinfo import ZoneInfo  # noqa: E402

ZONE = ZoneInfo("Asia/Tokyo")


@pytest.mark.parametrize(("reason", "make"), REASONS, ids=[r for r, _ in REASONS])
def test_validate_says_exactly_why_not_and_writes_nothing(
        client: TestClient, world: World, database: Database, reason: str, make: Any) -> None:
    code = make(client, world)
    before = snapshot(database)
    result = validate(client, world.a, code, lines=LINES)
    assert (result["valid"], result["reason"]) == (False, reason), result
    assert result["detail"]
    # The purchase and the stand-alone redemption refuse it with the same code, writing
    # nothing.
    refused = commit(client, world.a, basket(vouchers=[{"code": code}]))
    assert (refused.status_code, refused.json()["code"]) == (409, reason)
    again = redeem(client, world.a, code, lines=LINES)
    assert (again.status_code, again.json()["code"]) == (409, reason)
    assert changed_tables(before, snapshot(database)) == []


def test_wrong_store_cap_budget_member_limit_and_ownership(client: TestClient, world: World,
                                                           database: Database) -> None:
    second = client.post(f"/v1/merchants/{world.a.merchant_id}/stores",
                         headers=auth(world.operator_key),
                         json={"code": "second", "name": "Second store"}).json()
    assert validate(client, world.a, one_code(client, world.a, store_ids=[second["id"]]))[
        "reason"] == "voucher_wrong_store"
    capped = make_offer(client, world.a.merchant_key, max_redemptions=1)
    first, spare = make_codes(client, world.a.merchant_key, capped["id"], count=2)
    assert redeem(client, world.a, first).status_code == 200
    assert validate(client, world.a, spare)["reason"] == "voucher_cap_reached"
    budgeted = make_offer(client, world.a.merchant_key, value=300, budget=500)
    one, two = make_codes(client, world.a.merchant_key, budgeted["id"], count=2)
    assert redeem(client, world.a, one).status_code == 200
    assert validate(client, world.a, two)["reason"] == "voucher_budget_exhausted"
    refused = redeem(client, world.a, two)
    assert (refused.status_code, refused.json()["budget_left"]) == (409, 200)
    member = enrol(client, world.a)
    limited = make_offer(client, world.a.merchant_key, per_member_limit=1)
    [bearer] = make_codes(client, world.a.merchant_key, limited["id"], max_redemptions=10)
    who = {"member_id": member["id"]}
    assert validate(client, world.a, bearer)["reason"] == "voucher_needs_member"
    assert redeem(client, world.a, bearer, member=who).status_code == 200
    assert validate(client, world.a, bearer, member=who)["reason"] == "voucher_member_limit"
    personal_offer = make_offer(client, world.a.merchant_key)
    [mine] = make_codes(client, world.a.merchant_key, personal_offer["id"],
                        member_id=member["id"])
    stranger = enrol(client, world.a)
    assert validate(client, world.a, mine, member={"member_id": stranger["id"]})[
        "reason"] == "voucher_not_members"
    assert validate(client, world.a, mine, member=who)["valid"] is True


def test_unknown_and_other_merchants_codes_get_the_same_answer(client: TestClient,
                                                               world: World) -> None:
    theirs = one_code(client, world.b)
    unknown = codes.display(codes.generate_code())
    answers = [redeem(client, world.a, code) for code in (theirs, unknown)]
    assert [a.status_code for a in answers] == [404, 404]
    assert answers[0].json() == answers[1].json()
    checks = [validate(client, world.a, code) for code in (theirs, unknown)]
    assert [(c["valid"], c["reason"]) for c in checks] == [(False, "not_found")] * 2
    typo = redeem(client, world.a, theirs[:-1] + ("0" if theirs[-1] != "0" else "1"))
    assert (typo.status_code, typo.json()["code"]) == (422, "invalid_voucher_code")


def test_codes_are_read_in_any_case_with_confusables_and_as_barcodes(
        client: TestClient, world: World) -> None:
    code = one_code(client, world.a, kind="percent_off", value=10)
    canonical = codes.parse_code(code)
    typed = code.lower().replace("0", "o").replace("1", "l").replace("-", " ")
    assert validate(client, world.a, typed, lines=LINES)["discount"] == 200
    scanned = codes.barcode_number(12345, canonical)
    assert validate(client, world.a, scanned, lines=LINES)["discount"] == 200
    wrong_merchant = codes.barcode_number(54321, canonical)
    assert validate(client, world.a, wrong_merchant)["reason"] == "not_found"


DISCOUNTS = [
    # 2 x 400 coffee + 1 x 1200 bread = 2000 JPY
    ({"kind": "amount_off", "value": 300}, [120, 180]),
    ({"kind": "amount_off", "value": 5000}, [800, 1200]),
    ({"kind": "amount_off", "value": 300, "categories": ["coffee"]}, [300, 0]),
    ({"kind": "percent_off", "value": 15}, [120, 180]),
    ({"kind": "percent_off", "value": 15, "max_discount": 100}, [40, 60]),
    ({"kind": "free_item", "item_sku": "CF-1"}, [400, 0]),
    ({"kind": "free_item", "item_category": "bakery"}, [0, 1200]),
]


@pytest.mark.parametrize(("terms", "shares"), DISCOUNTS,
                         ids=[f"{t['kind']}-{i}" for i, (t, _) in enumerate(DISCOUNTS)])
def test_a_purchase_takes_the_discount_line_by_line(client: TestClient, world: World,
                                                    member_a: dict[str, Any],
                                                    terms: dict[str, Any],
                                                    shares: list[int]) -> None:
    code = one_code(client, world.a, **terms)
    body = basket(vouchers=[{"code": code}], member={"member_id": member_a["id"]})
    quoted = client.post("/v1/pos/quote", headers=auth(world.a.pos_key), json=body)
    assert quoted.status_code == 200, quoted.text
    done = commit(client, world.a, body)
    assert done.status_code == 201, done.text
    answer = done.json()
    assert [line["voucher_discount"] for line in answer["lines"]] == shares
    assert answer["voucher_discount"] == sum(shares) == answer["vouchers"][0]["discount"]
    assert answer["total"] == 2000 - sum(shares)
    # Points are earned on what is paid (1 per 100 JPY by default).
    assert answer["points_earned"] == (2000 - sum(shares)) // 100
    assert quoted.json()["voucher_discount"] == answer["voucher_discount"]
    # A replay answers the same bytes; the code was used once.
    assert commit(client, world.a, body).content == done.content
    read = client.get(f"/v1/vouchers/{code}", headers=auth(world.a.merchant_key)).json()
    assert (read["redemptions_count"], read["status"]) == (1, "used")


def test_vouchers_come_before_points_and_bonus_points_ride_on_the_lines(
        client: TestClient, world: World, database: Database,
        member_a: dict[str, Any]) -> None:
    give_points(database, world.a.merchant_id, member_a["id"], 1000)
    amount = one_code(client, world.a, value=500)
    double = one_code(client, world.a, kind="points_multiplier", value=20000)
    bonus = one_code(client, world.a, kind="bonus_points", value=50)
    body = basket(vouchers=[{"code": amount}, {"code": double}, {"code": bonus}],
                  member={"member_id": member_a["id"]}, points_to_burn=500)
    done = commit(client, world.a, body)
    assert done.status_code == 201, done.text
    answer = done.json()
    assert (answer["voucher_discount"], answer["points_discount"], answer["total"]) == (
        500, 500, 1000)
    # 10 points on 1000 JPY paid, doubled (+10), plus 50.
    assert answer["points_earned"] == 70
    assert [v["bonus_points"] for v in answer["vouchers"]] == [0, 10, 50]
    assert sum(line["points_earned"] for line in answer["lines"]) == 70
    assert answer["balance_after"] == 1000 - 500 + 70


def test_stacking_rules_and_duplicates(client: TestClient, world: World,
                                       database: Database) -> None:
    alone = one_code(client, world.a, stackable=False)
    other = one_code(client, world.a)
    before = snapshot(database)
    for vouchers in ([{"code": alone}, {"code": other}], [{"code": other}, {"code": alone}]):
        refused = commit(client, world.a, basket(vouchers=vouchers))
        assert (refused.status_code, refused.json()["code"]) == (409, "voucher_not_stackable")
    twice = commit(client, world.a, basket(vouchers=[{"code": other}, {"code": other.lower()}]))
    assert (twice.status_code, twice.json()["code"]) == (422, "duplicate_voucher")
    points = one_code(client, world.a, kind="bonus_points", value=10)
    anonymous = commit(client, world.a, basket(vouchers=[{"code": points}]))
    assert (anonymous.status_code, anonymous.json()["code"]) == (409, "voucher_needs_member")
    assert changed_tables(before | {}, snapshot(database)) == ["offers", "vouchers"]
    assert commit(client, world.a, basket(vouchers=[{"code": alone}])).status_code == 201


def test_a_full_return_gives_the_code_back_a_partial_one_does_not(
        client: TestClient, world: World, member_a: dict[str, Any]) -> None:
    code = one_code(client, world.a, value=300)
    done = commit(client, world.a, basket(vouchers=[{"code": code}],
                                          member={"member_id": member_a["id"]})).json()
    url = f"/v1/pos/transactions/{done['id']}/returns"
    now = utcnow().isoformat()
    partial = client.post(url, headers=auth(world.a.pos_key), json={
        "return_no": "R1", "occurred_at": now, "lines": [{"line_no": 1, "quantity": 1}]})
    assert partial.status_code == 201, partial.text
    # One coffee of 400 carried 60 of the 120 voucher share on its line.
    assert (partial.json()["refund_amount"], partial.json()["vouchers_returned"]) == (340, [])
    assert validate(client, world.a, code)["reason"] == "voucher_already_redeemed"
    rest = client.post(url, headers=auth(world.a.pos_key),
                       json={"return_no": "R2", "occurred_at": now})
    assert rest.status_code == 201, rest.text
    assert rest.json()["vouchers_returned"] == [code]
    assert partial.json()["refund_amount"] + rest.json()["refund_amount"] == 1700
    assert validate(client, world.a, code)["valid"] is True
    assert commit(client, world.a, basket(receipt_no="V-2",
                                          vouchers=[{"code": code}])).status_code == 201


def test_a_hold_keeps_the_code_for_its_register_until_used_released_or_expired(
        client: TestClient, world: World, database: Database) -> None:
    second_pos = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                             headers=auth(world.operator_key),
                             json={"code": "pos-2", "kind": "pos"}).json()
    other_till = auth(second_pos["api_key"])
    code = one_code(client, world.a, value=300)
    hold = client.post(f"/v1/vouchers/{code}/reserve", headers=auth(world.a.pos_key),
                       json={"lines": LINES, "ttl_seconds": 60})
    assert hold.status_code == 201, hold.text
    assert (hold.json()["status"], hold.json()["discount"]) == ("reserved", 300)
    taken = client.post("/v1/pos/transactions", headers=other_till,
                        json=basket(vouchers=[{"code": code}]))
    assert (taken.status_code, taken.json()["code"]) == (409, "voucher_already_redeemed")
    # Another register cannot use or release this register's hold.
    foreign = client.post("/v1/pos/transactions", headers=other_till, json=basket(
        vouchers=[{"code": code, "reservation_id": hold.json()["id"]}]))
    assert (foreign.status_code, foreign.json()["code"]) == (409, "reservation_ended")
    released = client.post(f"/v1/vouchers/reservations/{hold.json()['id']}/release",
                           headers=auth(world.a.pos_key))
    assert (released.status_code, released.json()["status"]) == (200, "released")
    again = client.post(f"/v1/vouchers/reservations/{hold.json()['id']}/release",
                        headers=auth(world.a.pos_key))
    assert (again.status_code, again.json()["code"]) == (409, "reservation_ended")
    # Held again, then used by the purchase that names the hold.
    hold = client.post(f"/v1/vouchers/{code}/reserve", headers=auth(world.a.pos_key), json={})
    used = commit(client, world.a, basket(vouchers=[{"code": code,
                                                     "reservation_id": hold.json()["id"]}]))
    assert used.status_code == 201, used.text
    assert used.json()["voucher_discount"] == 300
    with database.session_scope() as session:
        row = session.get(VoucherRedemption, uuid.UUID(hold.json()["id"]))
        assert row is not None and (row.status, str(row.transaction_id)) == (
            "redeemed", used.json()["id"])
        voucher = session.scalars(select(Voucher)).all()
        assert [v.redemptions_count for v in voucher] == [1]


def test_an_expired_hold_gives_the_code_back(client: TestClient, world: World,
                                             database: Database) -> None:
    code = one_code(client, world.a, value=300, max_redemptions=1, budget=300)
    hold = client.post(f"/v1/vouchers/{code}/reserve", headers=auth(world.a.pos_key),
                       json={"ttl_seconds": 1}).json()
    with database.session_scope() as session:
        session.execute(update(VoucherRedemption).values(
            expires_at=utcnow() - timedelta(seconds=1)))
    # The next use finds the hold expired and takes the code (the offer's cap and budget
    # were held too).
    assert redeem(client, world.a, code).status_code == 200
    with database.session_scope() as session:
        statuses = sorted(r.status for r in session.scalars(select(VoucherRedemption)))
        assert statuses == ["redeemed", "released"]
        offer = session.scalars(select(Offer)).one()
        assert (offer.redemptions_count, offer.budget_used) == (1, 300)
    late = commit(client, world.a, basket(vouchers=[{"code": code,
                                                     "reservation_id": hold["id"]}]))
    assert (late.status_code, late.json()["code"]) == (409, "reservation_ended")


def test_the_job_releases_expired_holds(client: TestClient, world: World,
                                        database: Database) -> None:
    codes_ = [one_code(client, world.a) for _ in range(3)]
    for code in codes_:
        assert client.post(f"/v1/vouchers/{code}/reserve", headers=auth(world.a.pos_key),
                           json={"ttl_seconds": 30}).status_code == 201
    with database.session_scope() as session:
        assert release_expired_holds(session) == 0
        assert release_expired_holds(session, now=utcnow() + timedelta(seconds=31)) == 3
    assert all(validate(client, world.a, code)["valid"] for code in codes_)


def test_a_code_revoked_while_held_fails_the_purchase_cleanly(
        client: TestClient, world: World, database: Database,
        member_a: dict[str, Any]) -> None:
    give_points(database, world.a.merchant_id, member_a["id"], 500)
    code = one_code(client, world.a, value=300)
    hold = client.post(f"/v1/vouchers/{code}/reserve", headers=auth(world.a.pos_key),
                       json={}).json()
    assert client.post(f"/v1/vouchers/{code}/revoke", headers=auth(world.a.merchant_key),
                       json={"reason": "leaked"}).status_code == 200
    before = snapshot(database)
    body = basket(vouchers=[{"code": code, "reservation_id": hold["id"]}],
                  member={"member_id": member_a["id"]}, points_to_burn=200)
    refused = commit(client, world.a, body)
    assert (refused.status_code, refused.json()["code"]) == (409, "voucher_revoked")
    assert changed_tables(before, snapshot(database)) == []
    balance = client.get(f"/v1/members/{member_a['id']}/balances",
                         headers=auth(world.a.merchant_key)).json()
    assert "500" in str(balance)


def test_stand_alone_redemption_is_idempotent_by_key(client: TestClient, world: World,
                                                     database: Database) -> None:
    member = enrol(client, world.a)
    code = one_code(client, world.a, kind="bonus_points", value=250)
    headers = {**auth(world.a.pos_key), "Idempotency-Key": "desk-1"}
    body = {"member": {"member_id": member["id"]}}
    first = client.post(f"/v1/vouchers/{code}/redeem", headers=headers, json=body)
    assert first.status_code == 200, first.text
    assert (first.json()["bonus_points"], first.json()["status"]) == (250, "redeemed")
    again = client.post(f"/v1/vouchers/{code}/redeem", headers=headers, json=body)
    assert again.content == first.content
    other = client.post(f"/v1/vouchers/{code}/redeem", headers=headers,
                        json={**body, "receipt_no": "X"})
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    balances = client.get(f"/v1/members/{member['id']}/balances",
                          headers=auth(world.a.merchant_key))
    assert "250" in balances.text
    percent = one_code(client, world.a, kind="percent_off", value=10)
    needs = redeem(client, world.a, percent)
    assert (needs.status_code, needs.json()["code"]) == (422, "voucher_needs_basket")
    assert redeem(client, world.a, percent, lines=LINES).json()["discount"] == 200


def test_a_ticket_admits_once_and_says_when_and_where(client: TestClient,
                                                      world: World) -> None:
    ticket = one_code(client, world.a, kind="ticket", name="Concert")
    admitted = client.post(f"/v1/vouchers/{ticket}/redeem", headers=auth(world.a.reader_key),
                           json={})
    assert admitted.status_code == 200, admitted.text
    second = redeem(client, world.a, ticket)
    assert second.status_code == 409
    problem = second.json()
    assert problem["code"] == "ticket_already_admitted"
    assert (problem["first_used_at"][:19], problem["store_name"], problem["terminal_id"]) == (
        admitted.json()["created_at"][:19], "Main store", world.a.reader_id)
    assert "Main store" in problem["detail"]
    in_purchase = commit(client, world.a, basket(vouchers=[{"code": one_code(
        client, world.a, kind="ticket")}]))
    assert (in_purchase.status_code, in_purchase.json()["code"]) == (409, "voucher_is_ticket")


def test_coalition_codes_work_at_every_merchant_in_their_currency(client: TestClient,
                                                                  world: World) -> None:
    percent = make_offer(client, world.operator_key, kind="percent_off", value=10)
    tokyo, new_york = make_codes(client, world.operator_key, percent["id"], count=2)
    assert validate(client, world.a, tokyo, lines=LINES)["discount"] == 200
    usd = [{"sku": "CF", "name": "Coffee", "quantity": 1, "unit_price": 450}]
    assert validate(client, world.b, new_york, lines=usd)["discount"] == 45
    yen = make_offer(client, world.operator_key, value=100, currency="JPY")
    [code] = make_codes(client, world.operator_key, yen["id"])
    assert validate(client, world.b, code, lines=usd)["reason"] == "voucher_currency_mismatch"
    refused = client.post(f"/v1/vouchers/{code}/revoke", headers=auth(world.a.merchant_key),
                          json={})
    assert refused.status_code == 403
    assert client.post(f"/v1/vouchers/{code}/revoke", headers=auth(world.operator_key),
                       json={}).status_code == 200


def test_store_local_hours_decide(client: TestClient, world: World) -> None:
    local = utcnow().astimezone(ZONE)
    start = (local - timedelta(hours=1)).strftime("%H:%M")
    end = (local + timedelta(hours=1)).strftime("%H:%M")
    now_open = one_code(client, world.a, from_time=start, until_time=end)
    assert validate(client, world.a, now_open)["valid"] is True
    closed = one_code(client, world.a, from_time=end, until_time=start)
    result = validate(client, world.a, closed)
    assert result["reason"] == "voucher_wrong_time" and "store-local" in result["detail"]


def test_the_scheduled_job_releases_expired_holds_in_batches(client: TestClient, world: World,
                                                             database: Database) -> None:
    from patron.jobs.holds import run_hold_release

    code = one_code(client, world.a)
    assert client.post(f"/v1/vouchers/{code}/reserve", headers=auth(world.a.pos_key),
                       json={"ttl_seconds": 30}).status_code == 201
    assert run_hold_release(database, utcnow()) == 0
    assert validate(client, world.a, code)["reason"] == "voucher_already_redeemed"
    assert run_hold_release(database, utcnow() + timedelta(seconds=30)) == 1
    assert validate(client, world.a, code)["valid"] is True
