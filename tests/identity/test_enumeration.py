"""Members cannot be enumerated: failed identifications are throttled per terminal and per
client address within a merchant (429 with Retry-After), recorded as security events, and
"no such member" is one answer whatever the reason."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.identity.numbers import format_member_number
from patron.kit.clock import clock, utcnow
from patron.security.models import SecurityEvent
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.pos.conftest import purchase
from tests.vouchers.test_abuse import assert_throttled, from_address, new_terminal

PHONE = "+81 90-5555-0101"
CARD = "04:11:22:33:44:55:66"


@pytest.fixture
def limit_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[datetime]:
    """The product's default limit (10 failures a minute) made 5, on a frozen clock."""
    settings = get_settings()
    monkeypatch.setattr(settings, "identify_failure_limit", 5)
    monkeypatch.setattr(settings, "identify_failure_window_seconds", 60.0)
    start = utcnow().replace(microsecond=0)
    clock.freeze(start)
    yield start


def identify(client: TestClient, key: str, **body: Any) -> Any:
    return client.post("/v1/identify", headers=auth(key), json=body)


def nobody(number: int, merchant: int = 12345) -> str:
    """A well-formed member number nobody has (customer numbers from 9,000,000)."""
    return format_member_number(merchant, 9_000_000 + number)


def miss(client: TestClient, key: str, times: int, start: int = 0) -> None:
    for index in range(times):
        answer = identify(client, key, barcode=nobody(start + index))
        assert (answer.status_code, answer.json()["code"]) == (404, "member_not_found")


def events(database: Database) -> list[SecurityEvent]:
    with database.session_scope() as session:
        return list(session.scalars(select(SecurityEvent).order_by(SecurityEvent.id)))


def enrol(client: TestClient, key: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/members", headers=auth(key), json=fields)
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


def test_walking_the_numbers_stops_after_five_misses(client: TestClient, world: World,
                                                     database: Database,
                                                     limit_on: datetime) -> None:
    """The report's walk: sequential numbers with computed check digits. The members it
    finds first are found; after five misses every look-up is 429, found or not."""
    members = [enrol(client, world.a.merchant_key) for _ in range(3)]
    numbers = [format_member_number(12345, customer) for customer in range(1, 21)]
    assert [m["member_number"] for m in members] == numbers[:3]
    enrol(client, world.a.merchant_key)  # number 4: never reached
    answers = [identify(client, world.a.pos_key, barcode=number) for number in numbers]
    statuses = [answer.status_code for answer in answers]
    assert statuses[:3] == [200] * 3
    assert statuses[3] == 200  # the fourth member
    assert statuses[4:9] == [404] * 5
    assert statuses[9:] == [429] * 11
    assert_throttled(answers[-1], 60)
    recorded = events(database)
    assert [(e.kind, e.refusal, e.throttle, str(e.terminal_id), e.code_prefix, e.member_id)
            for e in recorded] == [("identification", "member_not_found", "identify",
                                    world.a.pos_id, None, None)] * 5


def test_a_throttled_terminal_is_refused_before_any_lookup(app: Any, client: TestClient,
                                                           world: World, database: Database,
                                                           limit_on: datetime) -> None:
    member = enrol(client, world.a.merchant_key, phone=PHONE, card_uid=CARD)
    for index in range(5):
        with from_address(app, f"198.51.100.{index + 1}") as moving:
            miss(moving, world.a.pos_key, 1, start=index)
    before = snapshot(database)
    with from_address(app, "198.51.100.77") as fresh:
        # The terminal is the subject, from any address, whatever it presents.
        for body in ({"barcode": member["member_number"]}, {"phone": PHONE},
                     {"card_uid": CARD}):
            assert_throttled(identify(fresh, world.a.pos_key, **body), 60)
        # Another terminal at that address is not throttled.
        assert identify(fresh, world.a.reader_key, card_uid=CARD).status_code == 200
    assert changed_tables(before, snapshot(database)) == []
    assert len(events(database)) == 5
    # Retry-After counts down; when the window has passed the terminal works again.
    clock.freeze(limit_on + timedelta(seconds=45))
    assert_throttled(identify(client, world.a.pos_key, phone=PHONE), 15)
    clock.freeze(limit_on + timedelta(seconds=60))
    assert identify(client, world.a.pos_key, phone=PHONE).status_code == 200


def test_an_address_is_throttled_within_one_merchant(app: Any, client: TestClient,
                                                     world: World, database: Database,
                                                     limit_on: datetime) -> None:
    third = new_terminal(client, world, "pos-3")
    b_member = enrol(client, world.b.merchant_key)
    with from_address(app, "192.0.2.44") as shared:
        miss(shared, world.a.pos_key, 3)
        for index in range(2):
            unknown = shared.post("/v1/identify", headers=auth(world.a.merchant_key),
                                  json={"phone": f"+81 90-5555-090{index}"})
            assert unknown.json()["code"] == "member_not_found"
        # No terminal of A has five misses; A's address has.
        assert_throttled(identify(shared, third, barcode=nobody(99)), 60)
        # B behind the same address is another merchant: not throttled.
        found = identify(shared, world.b.pos_key, barcode=b_member["member_number"])
        assert found.status_code == 200, found.text
    with from_address(app, "192.0.2.45") as elsewhere:
        miss(elsewhere, third, 1)
    assert {e.client_address for e in events(database)} == {"192.0.2.44", "192.0.2.45"}


def test_unknown_cards_at_a_reader_are_throttled(client: TestClient, world: World,
                                                 database: Database,
                                                 limit_on: datetime) -> None:
    enrol(client, world.a.merchant_key, card_uid=CARD)
    for index in range(5):
        tapped = client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                             json={"card_uid": f"04AA0000{index:06d}"})
        assert (tapped.status_code, tapped.json()["code"]) == (404, "card_not_found")
    before = snapshot(database)
    assert_throttled(client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                                 json={"card_uid": CARD}), 60)
    assert changed_tables(before, snapshot(database)) == []
    assert [e.refusal for e in events(database)] == ["card_not_found"] * 5


def test_no_such_member_is_one_answer_whatever_the_reason(client: TestClient, world: World,
                                                         database: Database) -> None:
    """From B's till: a number nobody has, the same with wrong check digits, A's member
    who withdrew, A's member who was erased, their phones: the same 404, byte for byte.
    (At A, where they were members, a withdrawn member is 410: test_identify.)"""
    withdrawn = enrol(client, world.a.merchant_key, phone=PHONE)
    erased = enrol(client, world.a.merchant_key, phone="+81 90-5555-0202")
    assert client.post(f"/v1/members/{withdrawn['id']}/withdraw",
                       headers=auth(world.a.merchant_key)).status_code == 200
    assert client.post(f"/v1/members/{erased['id']}/erase",
                       headers=auth(world.a.merchant_key)).status_code == 200
    unknown = nobody(1)
    wrong_check = unknown[:-2] + f"{(int(unknown[-2:]) + 1) % 100:02d}"
    tried = [{"barcode": unknown}, {"barcode": wrong_check},
             {"barcode": withdrawn["member_number"]}, {"barcode": erased["member_number"]},
             {"phone": "+81 90-5555-0999"}, {"phone": PHONE}]
    answers = [identify(client, world.b.pos_key, **body) for body in tried]
    assert {(a.status_code, a.headers["content-type"], a.content) for a in answers} == {
        (404, "application/problem+json",
         b'{"type":"https://patron.dev/problems/member_not_found","title":"No member matches",'
         b'"status":404,"detail":"no member matches","code":"member_not_found"}')}
    # A's own till still learns that its member left.
    assert identify(client, world.a.pos_key,
                    barcode=withdrawn["member_number"]).json()["code"] == "member_withdrawn"


def test_the_limit_is_off_at_zero(client: TestClient, world: World, database: Database,
                                  limit_on: datetime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "identify_failure_limit", 0)
    miss(client, world.a.pos_key, 12)
    assert len(events(database)) == 12


def test_a_purchase_naming_its_member_is_an_identification(client: TestClient, world: World,
                                                           database: Database,
                                                           limit_on: datetime) -> None:
    """Quotes and purchases that name their member by number or phone count with
    `POST /v1/identify`: the till cannot walk the numbers through the checkout instead."""
    member = enrol(client, world.a.merchant_key, phone=PHONE)
    for index in range(3):
        quoted = client.post("/v1/pos/quote", headers=auth(world.a.pos_key),
                             json=purchase(member={"barcode": nobody(index)}))
        assert (quoted.status_code, quoted.json()["code"]) == (404, "member_not_found")
    for index in range(2):
        sold = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                           json=purchase(receipt_no=f"E-{index}",
                                         member={"phone": f"+81 90-5555-091{index}"}))
        assert (sold.status_code, sold.json()["code"]) == (404, "member_not_found")
    before = snapshot(database)
    assert_throttled(identify(client, world.a.pos_key, barcode=member["member_number"]), 60)
    assert_throttled(client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                                 json=purchase(receipt_no="E-9",
                                               member={"phone": PHONE})), 60)
    assert changed_tables(before, snapshot(database)) == []
    # Naming the member by id (already identified) and anonymous sales go on.
    by_id = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                        json=purchase(receipt_no="E-10", member={"member_id": member["id"]}))
    assert by_id.status_code == 201, by_id.text
    anonymous = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                            json=purchase(receipt_no="E-11"))
    assert anonymous.status_code == 201, anonymous.text
    assert [(e.kind, e.refusal) for e in events(database)] == [
        ("identification", "member_not_found")] * 5


def test_an_unknown_card_is_one_answer_too(client: TestClient, world: World) -> None:
    """From B: a card nobody has, the card of A's member who withdrew, A's blocked card —
    the same 404 `card_not_found`. A's own till learns what happened."""
    left = enrol(client, world.a.merchant_key, card_uid=CARD)
    assert client.post(f"/v1/members/{left['id']}/withdraw",
                       headers=auth(world.a.merchant_key)).status_code == 200
    kept = enrol(client, world.a.merchant_key, card_uid="04:BB:00:00:00:00:01")
    [card] = client.get(f"/v1/members/{kept['id']}/cards",
                        headers=auth(world.a.merchant_key)).json()["items"]
    assert client.post(f"/v1/members/{kept['id']}/cards/{card['id']}/block",
                       headers=auth(world.a.merchant_key), json={}).status_code == 200
    tried = ["04:99:99:99:99:99:99", CARD, "04:BB:00:00:00:00:01"]
    answers = [identify(client, world.b.reader_key, card_uid=uid) for uid in tried]
    assert {(a.status_code, a.content) for a in answers} == {(404, answers[0].content)}
    assert answers[0].json()["code"] == "card_not_found"
    assert [identify(client, world.a.reader_key, card_uid=uid).json()["code"]
            for uid in tried] == ["card_not_found", "member_withdrawn", "card_blocked"]
