"""Abuse controls: failed voucher attempts are throttled per terminal, per client address
and per member (429 with Retry-After), recorded as security events the merchant sees, and
unknown codes answer exactly like other merchants' codes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.security.models import SecurityEvent
from patron.security.service import code_trace
from patron.vouchers.codes import display, generate_code, parse_any
from patron.vouchers.errors import VoucherNotFound
from patron.vouchers.models import Voucher
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.live_server import live_server
from tests.pos.conftest import enrol
from tests.vouchers.conftest import basket, make_codes, make_offer

NOT_FOUND = VoucherNotFound.code


@pytest.fixture
def limit_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[datetime]:
    """The product's default limit (5 failures in 5 seconds), on a frozen clock; yields
    the frozen time."""
    settings = get_settings()
    monkeypatch.setattr(settings, "voucher_failure_limit", 5)
    monkeypatch.setattr(settings, "voucher_failure_window_seconds", 5.0)
    start = utcnow().replace(microsecond=0)
    clock.freeze(start)
    yield start


def from_address(app: Any, host: str) -> TestClient:
    """A client whose requests come from ``host``."""
    return TestClient(app, raise_server_exceptions=False, client=(host, 40000))


def new_terminal(client: TestClient, world: World, code: str) -> str:
    response = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                           headers=auth(world.operator_key), json={"code": code, "kind": "pos"})
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def unknown_code() -> str:
    return display(generate_code())


def validate(client: TestClient, key: str, code: str, **extra: Any) -> Any:
    return client.post("/v1/vouchers/validate", headers=auth(key), json={"code": code, **extra})


def fail(client: TestClient, key: str, times: int, **extra: Any) -> None:
    """``times`` validations of unknown codes, each answered valid: false."""
    for _ in range(times):
        response = validate(client, key, unknown_code(), **extra)
        assert response.status_code == 200, response.text
        assert (response.json()["valid"], response.json()["reason"]) == (False, NOT_FOUND)


def assert_throttled(response: Any, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == str(retry_after)
    body = response.json()
    assert (body["status"], body["code"], body["retry_after"]) == (
        429, "too_many_failures", retry_after)


def events(database: Database) -> list[SecurityEvent]:
    with database.session_scope() as session:
        return list(session.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))


@pytest.fixture
def good_code(client: TestClient, world: World) -> str:
    """A bearer code of merchant A, 100 off, usable 100 times."""
    offer = make_offer(client, world.a.merchant_key, value=100)
    [code] = make_codes(client, world.a.merchant_key, offer["id"], max_redemptions=100)
    return code


def redemptions_of(database: Database, code: str) -> int:
    # Read directly: the API's look-up is itself throttled for the test client's address.
    with database.session_scope() as session:
        count = session.scalar(select(Voucher.redemptions_count)
                               .where(Voucher.code == parse_any(code).code))
    assert count is not None
    return count


# --- per terminal ------------------------------------------------------------------------------

def test_five_failures_then_429_with_retry_after_before_any_lookup(
        client: TestClient, world: World, database: Database, good_code: str,
        limit_on: datetime) -> None:
    fail(client, world.a.pos_key, 5)
    assert len(events(database)) == 5

    # The sixth attempt is refused whatever it presents, a good code too, and nothing is
    # looked up, taken or recorded.
    before = snapshot(database)
    assert_throttled(validate(client, world.a.pos_key, good_code), 5)
    redeemed = client.post(f"/v1/vouchers/{good_code}/redeem", headers=auth(world.a.pos_key),
                           json={})
    assert_throttled(redeemed, 5)
    held = client.post(f"/v1/vouchers/{good_code}/reserve", headers=auth(world.a.pos_key),
                       json={})
    assert_throttled(held, 5)
    assert_throttled(client.get(f"/v1/vouchers/{good_code}", headers=auth(world.a.pos_key)), 5)
    assert changed_tables(before, snapshot(database)) == []
    assert len(events(database)) == 5

    # Retry-After counts down with the clock; when the window has passed it works again.
    clock.freeze(limit_on + timedelta(seconds=3.5))
    assert_throttled(validate(client, world.a.pos_key, good_code), 2)
    clock.freeze(limit_on + timedelta(seconds=5))
    redeemed = client.post(f"/v1/vouchers/{good_code}/redeem", headers=auth(world.a.pos_key),
                           json={})
    assert redeemed.status_code == 200, redeemed.text
    assert redemptions_of(database, good_code) == 1


def test_the_window_slides_one_failure_at_a_time(client: TestClient, world: World,
                                                 limit_on: datetime) -> None:
    for second in range(5):
        clock.freeze(limit_on + timedelta(seconds=second))
        fail(client, world.a.pos_key, 1)
    # Failures at 0..4 s: at 4.5 s the one at 0 s leaves the window in 0.5 s (rounded up).
    clock.freeze(limit_on + timedelta(seconds=4.5))
    assert_throttled(validate(client, world.a.pos_key, unknown_code()), 1)
    # At 5 s it has left: one more failure is allowed, then the one at 1 s must age out.
    clock.freeze(limit_on + timedelta(seconds=5))
    fail(client, world.a.pos_key, 1)
    assert_throttled(validate(client, world.a.pos_key, unknown_code()), 1)


def test_a_terminal_is_throttled_from_any_address(app: Any, world: World,
                                                  limit_on: datetime) -> None:
    for index in range(5):
        with from_address(app, f"10.0.0.{index + 1}") as client:
            fail(client, world.a.pos_key, 1)
    with from_address(app, "10.0.0.99") as client:
        assert_throttled(validate(client, world.a.pos_key, unknown_code()), 5)
        # The other terminal from that address is not.
        fail(client, world.a.reader_key, 1)


def test_guesses_count_and_business_refusals_are_only_recorded(
        client: TestClient, world: World, database: Database, good_code: str,
        limit_on: datetime) -> None:
    offer = make_offer(client, world.a.merchant_key, value=100)
    [used] = make_codes(client, world.a.merchant_key, offer["id"])
    assert client.post(f"/v1/vouchers/{used}/redeem", headers=auth(world.a.pos_key),
                       json={}).status_code == 200
    pos = world.a.pos_key
    ghost, stranger = unknown_code(), unknown_code()
    refused = [
        client.post("/v1/vouchers/NOT-A-CODE/redeem", headers=auth(pos), json={}),
        client.post(f"/v1/vouchers/{used}/redeem", headers=auth(pos), json={}),
        client.post(f"/v1/vouchers/{ghost}/reserve", headers=auth(pos), json={}),
        client.post("/v1/pos/quote", headers=auth(pos),
                    json=basket(vouchers=[{"code": used}])),
        client.post("/v1/pos/transactions", headers=auth(pos),
                    json=basket(vouchers=[{"code": good_code}, {"code": stranger}])),
    ]
    assert [(r.status_code, r.json()["code"]) for r in refused] == [
        (422, "invalid_voucher_code"), (409, "voucher_already_redeemed"), (404, NOT_FOUND),
        (409, "voucher_already_redeemed"), (404, NOT_FOUND)]
    # Every refusal is recorded; only the guesses (a malformed or unknown code) count.
    assert [(e.kind, e.refusal, e.throttle) for e in events(database)] == [
        ("voucher_redemption", "invalid_voucher_code", "voucher"),
        ("voucher_redemption", "voucher_already_redeemed", None),
        ("voucher_reservation", NOT_FOUND, "voucher"),
        ("pos_quote", "voucher_already_redeemed", None),
        ("pos_commit", NOT_FOUND, "voucher")]
    # Each event names the code refused: in the purchase, the second of its two codes.
    assert [e.code_prefix for e in events(database)] == [
        "NOTA", *(parse_any(code).code[:4] for code in (used, ghost, used, stranger))]
    # Three guesses: the till still works; two more and it is refused.
    assert validate(client, pos, good_code).json()["valid"] is True
    fail(client, pos, 2)
    assert_throttled(client.post("/v1/pos/transactions", headers=auth(pos),
                                 json=basket(vouchers=[{"code": good_code}])), 5)
    # A purchase without codes is no voucher attempt: the register keeps selling.
    sale = client.post("/v1/pos/transactions", headers=auth(pos), json=basket(receipt_no="S-1"))
    assert sale.status_code == 201, sale.text
    assert redemptions_of(database, good_code) == 0


def test_bad_basket_input_and_successes_do_not_count(client: TestClient, world: World,
                                                     database: Database, good_code: str,
                                                     limit_on: datetime) -> None:
    fail(client, world.a.pos_key, 4)
    for index in range(10):
        redeemed = client.post(f"/v1/vouchers/{good_code}/redeem",
                               headers=auth(world.a.pos_key), json={"receipt_no": f"D-{index}"})
        assert redeemed.status_code == 200, redeemed.text
        assert validate(client, world.a.pos_key, good_code).json()["valid"] is True
    # The till's own mistakes about the basket are its bug, not a guess at codes.
    duplicate = client.post("/v1/pos/quote", headers=auth(world.a.pos_key),
                            json=basket(vouchers=[{"code": good_code}, {"code": good_code}]))
    assert (duplicate.status_code, duplicate.json()["code"]) == (422, "duplicate_voucher")
    assert len(events(database)) == 4
    fail(client, world.a.pos_key, 1)
    assert_throttled(validate(client, world.a.pos_key, good_code), 5)
    assert redemptions_of(database, good_code) == 10


# --- per address, per member -----------------------------------------------------------------

def test_an_address_is_throttled_across_terminals(app: Any, world: World,
                                                  limit_on: datetime) -> None:
    with from_address(app, "192.0.2.7") as client:
        second = new_terminal(client, world, "pos-2")
        fail(client, world.a.pos_key, 3)
        fail(client, second, 2)
        # Neither terminal has 5 failures; their address has, at merchant A.
        assert_throttled(validate(client, world.a.pos_key, unknown_code()), 5)
        assert_throttled(validate(client, second, unknown_code()), 5)
        # Another merchant's till behind the same address (a shared mall or NAT address)
        # is not: an address counts within one merchant only.
        fail(client, world.b.pos_key, 4)
    with from_address(app, "192.0.2.8") as client:
        fail(client, second, 1)


def test_a_member_is_throttled_at_every_terminal_and_address(
        app: Any, client: TestClient, world: World, database: Database, good_code: str,
        limit_on: datetime) -> None:
    member = enrol(client, world.a)
    naming = {"member": {"member_id": member["id"]}}
    second = new_terminal(client, world, "pos-2")
    third = new_terminal(client, world, "pos-3")
    with from_address(app, "198.51.100.1") as one:
        fail(one, world.a.pos_key, 3, **naming)
    with from_address(app, "198.51.100.2") as two:
        fail(two, second, 2, **naming)
    assert {str(e.member_id) for e in events(database)} == {member["id"]}
    with from_address(app, "198.51.100.3") as three:
        # A fresh terminal at a fresh address, presenting a good code for that member.
        before = snapshot(database)
        assert_throttled(validate(three, third, good_code, **naming), 5)
        redeemed = three.post(f"/v1/vouchers/{good_code}/redeem", headers=auth(third),
                              json=naming)
        assert_throttled(redeemed, 5)
        purchase = three.post("/v1/pos/transactions", headers=auth(third),
                              json=basket(vouchers=[{"code": good_code}], **naming))
        assert_throttled(purchase, 5)
        assert changed_tables(before, snapshot(database)) == []
        # The same terminal for an anonymous sale, or another member, is fine.
        assert validate(three, third, good_code).json()["valid"] is True
        other = enrol(client, world.a)
        assert validate(three, third, good_code,
                        member={"member_id": other["id"]}).json()["valid"] is True
    assert len(events(database)) == 5


def test_the_limit_is_off_at_zero(client: TestClient, world: World, database: Database,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "voucher_failure_limit", 0)
    fail(client, world.a.pos_key, 12)
    # Still recorded: the merchant sees them.
    assert len(events(database)) == 12


@pytest.mark.slow
def test_the_server_process_honours_the_limit_setting(database: Database) -> None:
    """Each worker process reads the limit from its environment and counts failures in
    the database: with a limit of 2, the third failure is refused whichever worker
    answers."""
    import httpx

    from tests.conftest import make_tenant, operator_key

    with live_server(database.url, workers=2,
                     env={"PATRON_VOUCHER_FAILURE_LIMIT": "2",
                          "PATRON_VOUCHER_FAILURE_WINDOW_SECONDS": "60"}) as base, \
            httpx.Client(base_url=base) as http:
        tenant = make_tenant(http, operator_key(database), number=24680,  # type: ignore[arg-type]
                             country="JP", currency="JPY", timezone="Asia/Tokyo")
        answers = [http.post("/v1/vouchers/validate", headers=auth(tenant.pos_key),
                             json={"code": unknown_code()}) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[2].headers["retry-after"]) > 50


# --- the merchant's view -----------------------------------------------------------------------

def test_security_events_are_the_merchants_own(client: TestClient, world: World,
                                               good_code: str, limit_on: datetime) -> None:
    member = enrol(client, world.a)
    code = unknown_code()
    validate(client, world.a.pos_key, code, member={"member_id": member["id"]})
    clock.freeze(limit_on + timedelta(seconds=1))
    client.post(f"/v1/vouchers/{good_code}/redeem", headers=auth(world.b.pos_key), json={})

    mine = client.get("/v1/security-events", headers=auth(world.a.merchant_key))
    assert mine.status_code == 200, mine.text
    [event] = mine.json()["events"]
    assert mine.json()["next_cursor"] is None
    canonical = parse_any(code).code
    assert event == {
        "id": event["id"], "merchant_id": world.a.merchant_id, "kind": "voucher_validation",
        "terminal_id": world.a.pos_id, "client_address": "testclient",
        "member_id": member["id"], "code_prefix": canonical[:4],
        "code_digest": code_trace(code, get_settings().derived_key("security-code"))[1],
        "refusal": NOT_FOUND, "detail": None, "counted": True,
        "occurred_at": event["occurred_at"]}
    assert datetime.fromisoformat(event["occurred_at"]) == limit_on
    # B's attempt at A's code is B's event, and says nothing of A's code but its prefix.
    theirs = client.get("/v1/security-events", headers=auth(world.b.merchant_key)).json()
    assert [(e["merchant_id"], e["kind"], e["terminal_id"], e["refusal"])
            for e in theirs["events"]] == [
        (world.b.merchant_id, "voucher_redemption", world.b.pos_id, NOT_FOUND)]
    everyone = client.get("/v1/security-events", headers=auth(world.operator_key)).json()
    assert [e["merchant_id"] for e in everyone["events"]] == [world.b.merchant_id,
                                                              world.a.merchant_id]
    only_a = client.get("/v1/security-events", headers=auth(world.operator_key),
                        params={"merchant_id": world.a.merchant_id}).json()
    assert [e["id"] for e in only_a["events"]] == [event["id"]]
    # Naming another merchant is the same 404 as naming none that exists.
    for merchant_id in (world.a.merchant_id, str(uuid.uuid4())):
        refused = client.get("/v1/security-events", headers=auth(world.b.merchant_key),
                             params={"merchant_id": merchant_id})
        assert (refused.status_code, refused.json()["code"]) == (404, "not_found")
    # Terminals do not read the log.
    assert client.get("/v1/security-events",
                      headers=auth(world.a.pos_key)).json()["code"] == "forbidden"


def test_no_event_keeps_a_whole_code(client: TestClient, world: World,
                                     database: Database) -> None:
    offer = make_offer(client, world.a.merchant_key, value=100)
    [used] = make_codes(client, world.a.merchant_key, offer["id"])
    client.post(f"/v1/vouchers/{used}/redeem", headers=auth(world.a.pos_key), json={})
    # The same code typed in three ways: one digest.
    for typed in (used, used.lower(), used.replace("-", "")):
        again = client.post(f"/v1/vouchers/{typed}/redeem", headers=auth(world.a.pos_key),
                            json={})
        assert again.json()["code"] == "voucher_already_redeemed"
    recorded = events(database)
    assert len({e.code_digest for e in recorded}) == 1
    canonical = parse_any(used).code
    for event in recorded:
        row = " ".join(str(value) for value in vars(event).values())
        assert canonical not in row and canonical.lower() not in row
        assert event.code_prefix == canonical[:4]


def test_the_list_filters_and_pages_newest_first(client: TestClient, world: World,
                                                 limit_on: datetime) -> None:
    second = new_terminal(client, world, "pos-2")
    for index in range(3):
        clock.freeze(limit_on + timedelta(seconds=10 * index))
        fail(client, world.a.pos_key, 1)
        fail(client, second, 1)
    clock.freeze(limit_on + timedelta(seconds=30))
    client.post(f"/v1/vouchers/{unknown_code()}/redeem", headers=auth(second), json={})
    key = auth(world.a.merchant_key)

    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/security-events", headers=key, params=params).json()
        pages.append(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [3, 3, 1]
    walked = [e for page in pages for e in page]
    assert [e["id"] for e in walked] == sorted((e["id"] for e in walked), reverse=True)
    assert [e["kind"] for e in walked] == ["voucher_redemption"] + ["voucher_validation"] * 6

    redemptions = client.get("/v1/security-events", headers=key,
                             params={"kind": "voucher_redemption"}).json()["events"]
    assert [e["terminal_id"] for e in redemptions] == [redemptions[0]["terminal_id"]]
    at_pos = client.get("/v1/security-events", headers=key,
                        params={"terminal_id": world.a.pos_id}).json()["events"]
    assert len(at_pos) == 3 and {e["terminal_id"] for e in at_pos} == {world.a.pos_id}
    since = (limit_on + timedelta(seconds=10)).isoformat()
    recent = client.get("/v1/security-events", headers=key, params={"since": since}).json()
    assert len(recent["events"]) == 5
    bad = client.get("/v1/security-events", headers=key, params={"kind": "burglary"})
    assert (bad.status_code, bad.json()["code"]) == (422, "validation_failed")


# --- no enumeration ------------------------------------------------------------------------------

def test_unknown_and_other_merchants_codes_get_identical_answers(
        client: TestClient, world: World, database: Database) -> None:
    """Whatever B's terminal tries, an unknown code and A's real code answer alike, so no
    code of A can be found from B."""
    offer = make_offer(client, world.a.merchant_key, value=100)
    [a_code] = make_codes(client, world.a.merchant_key, offer["id"])
    b = auth(world.b.pos_key)

    def answers(code: str) -> list[tuple[int, Any]]:
        calls = [
            client.post("/v1/vouchers/validate", headers=b, json={"code": code}),
            client.post(f"/v1/vouchers/{code}/redeem", headers=b, json={}),
            client.post(f"/v1/vouchers/{code}/reserve", headers=b, json={}),
            client.get(f"/v1/vouchers/{code}", headers=b),
            client.get(f"/v1/vouchers/{code}", headers=auth(world.b.merchant_key)),
            client.post("/v1/pos/quote", headers=b,
                        json=basket(currency="USD", vouchers=[{"code": code}])),
            client.post("/v1/pos/transactions", headers=b,
                        json=basket(currency="USD", vouchers=[{"code": code}])),
        ]
        return [(r.status_code, r.json()) for r in calls]

    def without_code(answer: list[tuple[int, Any]], code: str) -> list[tuple[int, Any]]:
        # Validation echoes the code it was given; everything else must match exactly.
        return [(status, {**body, "code": "<echo>"} if body.get("code") == code else body)
                for status, body in answer]

    before = snapshot(database)
    unknown = unknown_code()
    theirs, missing = answers(a_code), answers(unknown)
    assert without_code(theirs, a_code) == without_code(missing, unknown)
    assert [status for status, _ in theirs] == [200, 404, 404, 404, 404, 404, 404]
    assert theirs[0][1]["reason"] == NOT_FOUND
    assert changed_tables(before, snapshot(database)) == []
    # Both sets are recorded alike, as B's events.
    recorded = [(e.merchant_id, e.kind, e.refusal) for e in events(database)]
    assert recorded[:7] == recorded[7:]
    assert {str(merchant_id) for merchant_id, _, _ in recorded} == {world.b.merchant_id}
    assert redemptions_of(database, a_code) == 0
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(SecurityEvent)) == 14


# --- what counts: guesses, not business refusals ----------------------------------------------

def spend_refused(client: TestClient, key: str, code: str, times: int) -> None:
    """``times`` purchases whose basket is below the code's minimum spend."""
    for index in range(times):
        refused = client.post("/v1/pos/transactions", headers=auth(key),
                              json=basket(receipt_no=f"MIN-{index}", vouchers=[{"code": code}]))
        assert (refused.status_code, refused.json()["code"]) == (409, "voucher_minimum_spend")


def test_business_refusals_throttle_no_one(app: Any, client: TestClient, world: World,
                                           database: Database, limit_on: datetime) -> None:
    """Five "minimum spend not met" at A's till, then B's valid code from the same
    address: accepted (it was a 429). A's till keeps working too."""
    high = make_offer(client, world.a.merchant_key, value=100, min_spend=100_000)
    [a_minimum] = make_codes(client, world.a.merchant_key, high["id"], max_redemptions=100)
    a_offer = make_offer(client, world.a.merchant_key, value=100)
    [a_code] = make_codes(client, world.a.merchant_key, a_offer["id"], max_redemptions=100)
    b_offer = make_offer(client, world.b.merchant_key, value=100)
    [b_code] = make_codes(client, world.b.merchant_key, b_offer["id"], max_redemptions=100)
    with from_address(app, "203.0.113.50") as shared:
        spend_refused(shared, world.a.pos_key, a_minimum, 7)
        assert [(e.refusal, e.throttle) for e in events(database)] == [
            ("voucher_minimum_spend", None)] * 7
        redeemed = shared.post(f"/v1/vouchers/{b_code}/redeem", headers=auth(world.b.pos_key),
                               json={})
        assert redeemed.status_code == 200, redeemed.text
        sale = shared.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                           json=basket(receipt_no="OK-1", vouchers=[{"code": a_code}]))
        assert sale.status_code == 201, sale.text
    assert (redemptions_of(database, b_code), redemptions_of(database, a_code)) == (1, 1)


def test_own_used_expired_codes_do_not_count_but_foreign_ones_do(
        client: TestClient, world: World, database: Database, good_code: str,
        limit_on: datetime) -> None:
    offer = make_offer(client, world.a.merchant_key, value=100,
                       valid_until=(limit_on + timedelta(minutes=1)).isoformat())
    [short] = make_codes(client, world.a.merchant_key, offer["id"])
    [used] = make_codes(client, world.a.merchant_key, offer["id"])
    assert client.post(f"/v1/vouchers/{used}/redeem", headers=auth(world.a.pos_key),
                       json={}).status_code == 200
    clock.freeze(limit_on + timedelta(minutes=2))
    for _ in range(6):
        assert validate(client, world.a.pos_key, short).json()["reason"] == "voucher_expired"
        assert client.post(f"/v1/vouchers/{used}/redeem", headers=auth(world.a.pos_key),
                           json={}).json()["code"] == "voucher_expired"
    assert validate(client, world.a.pos_key, good_code).json()["valid"] is True
    assert {e.throttle for e in events(database)} == {None}
    # A's good code tried at B's till is a guess there, like an unknown code.
    for _ in range(5):
        assert validate(client, world.b.pos_key, good_code).json()["reason"] == NOT_FOUND
    assert_throttled(validate(client, world.b.pos_key, unknown_code()), 5)
    assert [e.throttle for e in events(database)][-5:] == ["voucher"] * 5


# --- the client address ----------------------------------------------------------------------

def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
        app: Any, world: World, database: Database, limit_on: datetime,
        monkeypatch: pytest.MonkeyPatch) -> None:
    with from_address(app, "198.51.100.9") as direct:
        second = new_terminal(direct, world, "pos-2")
        # No proxy is trusted: a caller naming a new address each time is still itself.
        for index in range(3):
            response = direct.post("/v1/vouchers/validate",
                                   headers={**auth(world.a.pos_key),
                                            "X-Forwarded-For": f"203.0.113.{index}"},
                                   json={"code": unknown_code()})
            assert response.json()["reason"] == NOT_FOUND
        for index in range(2):
            response = direct.post("/v1/vouchers/validate",
                                   headers={**auth(second),
                                            "X-Forwarded-For": f"203.0.113.{index + 10}"},
                                   json={"code": unknown_code()})
            assert response.json()["reason"] == NOT_FOUND
        assert {e.client_address for e in events(database)} == {"198.51.100.9"}
        # Neither terminal has five; the address has.
        assert_throttled(direct.post("/v1/vouchers/validate",
                                     headers={**auth(world.a.reader_key),
                                              "X-Forwarded-For": "203.0.113.99"},
                                     json={"code": unknown_code()}), 5)
    monkeypatch.setattr(get_settings(), "trusted_proxies", "10.0.0.0/8, 192.0.2.1")
    with from_address(app, "10.1.2.3") as proxied:
        response = proxied.post("/v1/vouchers/validate",
                                headers={**auth(world.a.reader_key),
                                         "X-Forwarded-For": "198.51.100.200, 192.0.2.1"},
                                json={"code": unknown_code()})
        assert response.json()["reason"] == NOT_FOUND
    assert events(database)[-1].client_address == "198.51.100.200"


@pytest.mark.postgres
@pytest.mark.slow
def test_simultaneous_checkouts_with_a_valid_code_among_business_refusals_all_pass(
        client: TestClient, world: World, database: Database) -> None:
    """The race of the report: refusals for a minimum spend not met, then a burst of
    checkouts from the same registers and address, a third of them refused again for the
    minimum spend: every checkout carrying a valid code is accepted (it was 429 for all)."""
    import httpx

    from tests.concurrency import all_at_once

    tills = [world.a.pos_key, *(new_terminal(client, world, f"pos-{n}") for n in (2, 3, 4))]
    high = make_offer(client, world.a.merchant_key, value=100, min_spend=100_000)
    [minimum] = make_codes(client, world.a.merchant_key, high["id"], max_redemptions=1000)
    offer = make_offer(client, world.a.merchant_key, value=100)
    [valid] = make_codes(client, world.a.merchant_key, offer["id"], max_redemptions=1000)
    with live_server(database.url, workers=2,
                     env={"PATRON_VOUCHER_FAILURE_LIMIT": "5",
                          "PATRON_VOUCHER_FAILURE_WINDOW_SECONDS": "60"}) as base, \
            httpx.Client(base_url=base, timeout=120,
                         limits=httpx.Limits(max_connections=60)) as http:
        for index in range(6):
            refused = http.post("/v1/pos/transactions", headers=auth(tills[0]),
                                json=basket(receipt_no=f"MIN-{index}",
                                            vouchers=[{"code": minimum}]))
            assert refused.json()["code"] == "voucher_minimum_spend", refused.text

        def checkout(index: int) -> httpx.Response:
            code = minimum if index % 3 == 0 else valid
            return http.post("/v1/pos/transactions", headers=auth(tills[index % len(tills)]),
                             json=basket(receipt_no=f"R-{index}", vouchers=[{"code": code}]))

        answers = all_at_once(60, checkout)
    outcomes = Counter((a.status_code, a.json().get("code")) for a in answers)
    assert outcomes == {(201, None): 40, (409, "voucher_minimum_spend"): 20}, outcomes
    assert redemptions_of(database, valid) == 40
    assert {(e.refusal, e.throttle) for e in events(database)} == {
        ("voucher_minimum_spend", None)}
