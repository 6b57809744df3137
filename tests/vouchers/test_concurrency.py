"""Codes under real concurrency: simultaneous requests against a running server (uvicorn,
two worker processes), released together at a barrier.

On PostgreSQL (``postgres``): 1,000 redemptions of one single-use code, 1,000 of a bearer
code capped at 100, 1,000 distinct codes against a money budget, and the caps again with
100 ms added between the application and the database (``tests.delay_proxy``). On both
backends: a code revoked while it is held, alone and racing the commit; holds raced by
two registers, expiring and released.

The servers run with the failure throttle off (``PATRON_VOUCHER_FAILURE_LIMIT=0``) so that
every refusal answers with its own 409 rather than 429. Set-up (offers, codes, members)
goes through the in-process ``client`` on the same database; only the races go through
the server.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPConnection
from json import dumps, loads
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from patron.db import Database
from patron.ledger import service as ledger
from patron.pos.models import PosTransaction
from patron.tenancy.models import Role
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import (
    SYSTEM,
    create_merchant,
    create_store,
    create_terminal,
    issue_key,
)
from patron.vouchers import codes
from patron.vouchers.models import Offer, Voucher, VoucherRedemption
from tests.api.snapshot import changed_tables, snapshot
from tests.concurrency import all_at_once
from tests.conftest import TEST_DATABASE_URL, World, auth
from tests.delay_proxy import DelayProxy
from tests.live_server import live_server
from tests.pos.conftest import enrol, give_points, purchase
from tests.vouchers.conftest import make_codes, make_offer

# Refusals answer 409 with their reason, not 429 from the abuse throttle.
THROTTLE_OFF = {"PATRON_VOUCHER_FAILURE_LIMIT": "0"}
TILLS = 8
LATENCY_SECONDS = 0.1


@dataclass(frozen=True)
class Shop:
    merchant_id: str
    merchant_key: str
    till_keys: list[str]

    def till(self, index: int) -> str:
        return self.till_keys[index % len(self.till_keys)]


def _shop(database: Database, tills: int = TILLS) -> Shop:
    """A JPY merchant with one store and ``tills`` registers, each with its own key."""
    with database.session_scope() as session:
        merchant = create_merchant(session, actor=SYSTEM, data=MerchantCreate(
            number=88801, name="Voucher rush", currency="JPY", timezone="Asia/Tokyo",
            country="JP"))
        store = create_store(session, actor=SYSTEM, merchant_id=merchant.id,
                             data=StoreCreate(code="main", name="Main"))
        keys = [create_terminal(session, actor=SYSTEM, store_id=store.id,
                                data=TerminalCreate(code=f"pos-{n}"))[1]
                for n in range(1, tills + 1)]
        _, merchant_key = issue_key(session, role=Role.merchant, merchant_id=merchant.id)
        return Shop(str(merchant.id), merchant_key, keys)


@dataclass(frozen=True)
class Answer:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")


class Http:
    """POSTs on a new connection each (closed after the answer), from any thread.

    A shared pooled client is the weak point of a thousand-thread burst: a thread that
    starts late picks up a kept-alive connection just as the server closes it for being
    idle. One connection per request has no shared state to race on."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80

    def post(self, path: str, *, headers: dict[str, str],
             json: dict[str, Any] | None = None) -> Answer:
        connection = HTTPConnection(self.host, self.port, timeout=120)
        try:
            body = b"" if json is None else dumps(json).encode()
            connection.request("POST", path, body=body, headers={
                **headers, "Content-Type": "application/json", "Connection": "close"})
            response = connection.getresponse()
            return Answer(response.status, response.read())
        finally:
            connection.close()


@contextmanager
def _server(database_url: str = TEST_DATABASE_URL,
            env: dict[str, str] | None = None) -> Iterator[Http]:
    with live_server(database_url, workers=2, env={**THROTTLE_OFF, **(env or {})}) as base:
        yield Http(base)


# Through the delaying proxy, 200 attempts at one code queue for its row lock, each holding
# it across round trips of 200 ms: on a busy machine a request can wait longer than the
# default 10 s for a pooled connection and be answered 503, which is the pool's answer to
# overload (tests/test_unavailable.py), not what this race is about.
PATIENT_POOL = {"PATRON_DB_POOL_TIMEOUT_SECONDS": "120"}


def _redeem(http: Http, code: str, key: str, **body: Any) -> Answer:
    return http.post(f"/v1/vouchers/{code}/redeem", headers=auth(key), json=body)


# The in-process client answers with an httpx.Response, the server with an Answer: both
# have status_code and json().
def _reserve(http: Http | TestClient, code: str, key: str,
             ttl_seconds: int) -> Any:
    return http.post(f"/v1/vouchers/{code}/reserve", headers=auth(key),
                     json={"ttl_seconds": ttl_seconds})


def _outcomes(responses: list[Answer]) -> Counter[tuple[int, str | None]]:
    """(status, the refusal's code) of each answer; successes have no code."""
    return Counter((r.status_code, None if r.status_code < 300 else r.json().get("code"))
                   for r in responses)


def _canonical(code: str) -> str:
    return codes.parse_any(code).code


def _voucher(database: Database, code: str) -> Voucher:
    with database.session_scope() as session:
        return session.scalars(select(Voucher).where(
            Voucher.code == _canonical(code))).one()


def _offer_row(database: Database, offer_id: str) -> Offer:
    with database.session_scope() as session:
        offer = session.get(Offer, uuid.UUID(offer_id))
        assert offer is not None
        return offer


def _redemptions(database: Database, **where: Any) -> list[VoucherRedemption]:
    with database.session_scope() as session:
        query = select(VoucherRedemption).order_by(VoucherRedemption.created_at)
        for name, value in where.items():
            query = query.where(getattr(VoucherRedemption, name) == value)
        return list(session.scalars(query))


def _transactions(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(PosTransaction)) or 0)


# --- caps under 1,000 simultaneous redemptions (PostgreSQL) ----------------------------------

@pytest.mark.postgres
@pytest.mark.slow
def test_1000_simultaneous_redemptions_of_a_single_use_code_redeem_it_once(
        database: Database, client: TestClient) -> None:
    shop = _shop(database)
    offer = make_offer(client, shop.merchant_key, value=500)
    [code] = make_codes(client, shop.merchant_key, offer["id"])
    with _server() as http:
        answers = all_at_once(1000, lambda i: _redeem(http, code, shop.till(i)))
    assert _outcomes(answers) == {(200, None): 1, (409, "voucher_already_redeemed"): 999}
    [won] = [answer.json() for answer in answers if answer.status_code == 200]
    assert (won["status"], won["discount"], won["code"]) == ("redeemed", 500, code)
    voucher = _voucher(database, code)
    assert (voucher.redemptions_count, voucher.max_redemptions) == (1, 1)
    rows = _redemptions(database, voucher_id=voucher.id)
    assert [(str(r.id), r.status, r.discount) for r in rows] == [(won["id"], "redeemed", 500)]


@pytest.mark.postgres
@pytest.mark.slow
def test_a_bearer_code_capped_at_100_is_redeemed_exactly_100_times_by_1000(
        database: Database, client: TestClient) -> None:
    shop = _shop(database)
    offer = make_offer(client, shop.merchant_key, value=100)
    [code] = make_codes(client, shop.merchant_key, offer["id"], max_redemptions=100)
    with _server() as http:
        answers = all_at_once(1000, lambda i: _redeem(http, code, shop.till(i)))
    assert _outcomes(answers) == {(200, None): 100, (409, "voucher_already_redeemed"): 900}
    won = {answer.json()["id"] for answer in answers if answer.status_code == 200}
    voucher = _voucher(database, code)
    assert (voucher.redemptions_count, voucher.max_redemptions) == (100, 100)
    rows = _redemptions(database, voucher_id=voucher.id)
    assert {str(r.id) for r in rows} == won and len(rows) == 100
    assert {r.status for r in rows} == {"redeemed"}


# An amount of 300 against a budget of 33 x 300 + 299: one more use would go over by
# exactly one minor unit.
VALUE = 300
BUDGET = 33 * VALUE + VALUE - 1


@pytest.mark.postgres
@pytest.mark.slow
def test_a_money_budget_is_never_exceeded_by_1000_simultaneous_distinct_codes(
        database: Database, client: TestClient) -> None:
    shop = _shop(database)
    offer = make_offer(client, shop.merchant_key, value=VALUE, budget=BUDGET)
    issued = make_codes(client, shop.merchant_key, offer["id"], count=1000)
    with _server() as http:
        answers = all_at_once(1000, lambda i: _redeem(http, issued[i], shop.till(i)))
        fits = BUDGET // VALUE
        assert _outcomes(answers) == {(200, None): fits,
                                      (409, "voucher_budget_exhausted"): 1000 - fits}
        row = _offer_row(database, offer["id"])
        assert (row.budget_used, row.redemptions_count) == (fits * VALUE, fits)
        # The 299 left can still be given, to the unit, and then nothing more.
        unused = [code for code, answer in zip(issued, answers, strict=True)
                  if answer.status_code != 200]
        left = BUDGET - fits * VALUE
        line = {"sku": "S", "name": "Small", "quantity": 1, "unit_price": left}
        last = _redeem(http, unused[0], shop.till(0), lines=[line])
        assert (last.status_code, last.json().get("discount")) == (200, left), last.text
        over = _redeem(http, unused[1], shop.till(1), lines=[{**line, "unit_price": 1}])
        assert (over.status_code, over.json()["code"]) == (409, "voucher_budget_exhausted")
    row = _offer_row(database, offer["id"])
    assert (row.budget_used, row.redemptions_count) == (BUDGET, fits + 1)
    with database.session_scope() as session:
        used = session.scalar(select(func.count()).select_from(Voucher).where(
            Voucher.offer_id == uuid.UUID(offer["id"]), Voucher.redemptions_count == 1))
        spent = session.scalar(select(func.sum(VoucherRedemption.discount)).where(
            VoucherRedemption.offer_id == uuid.UUID(offer["id"]),
            VoucherRedemption.status == "redeemed"))
    assert (used, spent) == (fits + 1, BUDGET)


# --- the caps with 100 ms between the application and the database --------------------------

def _through(proxy: DelayProxy) -> str:
    return make_url(TEST_DATABASE_URL).set(host="127.0.0.1", port=proxy.port) \
        .render_as_string(hide_password=False)


@pytest.mark.postgres
def test_the_delay_proxy_adds_its_latency_to_every_round_trip(database: Database) -> None:
    url = make_url(TEST_DATABASE_URL)
    with DelayProxy(url.host or "127.0.0.1", url.port or 5432,
                    delay=LATENCY_SECONDS) as proxy:
        slow = Database(_through(proxy))
        try:
            with slow.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1").scalar_one()
                started = time.perf_counter()
                for _ in range(3):
                    assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
                elapsed = time.perf_counter() - started
        finally:
            slow.dispose()
    # Each round trip waits once each way.
    assert elapsed >= 3 * 2 * LATENCY_SECONDS
    assert proxy.connections >= 1 and proxy.chunks >= 6


BEARER_ATTEMPTS = 200
BUDGET_ATTEMPTS = 100


@pytest.mark.postgres
@pytest.mark.slow
def test_caps_stay_exact_with_100ms_between_the_server_and_the_database(
        database: Database, client: TestClient) -> None:
    """A bearer code capped at 100 (200 attempts) and a budget for 10 uses (100 distinct
    codes), raced together through the delaying proxy: the reads that check a cap now
    happen long before the writes that take it, and every lock is held across round
    trips of 200 ms."""
    shop = _shop(database)
    bearer_offer = make_offer(client, shop.merchant_key, value=100)
    [bearer] = make_codes(client, shop.merchant_key, bearer_offer["id"], max_redemptions=100)
    budget_offer = make_offer(client, shop.merchant_key, value=VALUE,
                              budget=10 * VALUE + VALUE - 1)
    distinct = make_codes(client, shop.merchant_key, budget_offer["id"],
                          count=BUDGET_ATTEMPTS)
    # Two bearer attempts, then one budget code, over and over.
    attempts = [bearer if n % 3 < 2 else distinct[n // 3]
                for n in range(BEARER_ATTEMPTS + BUDGET_ATTEMPTS)]
    url = make_url(TEST_DATABASE_URL)
    with DelayProxy(url.host or "127.0.0.1", url.port or 5432,
                    delay=LATENCY_SECONDS) as proxy, \
            _server(_through(proxy), env=PATIENT_POOL) as http:
        answers = all_at_once(len(attempts), lambda i: _redeem(http, attempts[i],
                                                               shop.till(i)))
        # The server reached the database through the proxy only.
        assert proxy.connections >= 2 and proxy.chunks > 10 * len(attempts)
    bearer_answers = [a for a, code in zip(answers, attempts, strict=True) if code == bearer]
    budget_answers = [a for a, code in zip(answers, attempts, strict=True) if code != bearer]
    assert _outcomes(bearer_answers) == {(200, None): 100,
                                         (409, "voucher_already_redeemed"): 100}
    assert _outcomes(budget_answers) == {(200, None): 10,
                                         (409, "voucher_budget_exhausted"): 90}
    assert _voucher(database, bearer).redemptions_count == 100
    assert len(_redemptions(database, offer_id=uuid.UUID(bearer_offer["id"]))) == 100
    row = _offer_row(database, budget_offer["id"])
    assert (row.budget_used, row.redemptions_count) == (10 * VALUE, 10)
    assert len(_redemptions(database, offer_id=uuid.UUID(budget_offer["id"]))) == 10


# --- a code revoked while it is held (both backends) ------------------------------------------

@dataclass
class HeldCode:
    member: dict[str, Any]
    offer: dict[str, Any]
    code: str
    hold: dict[str, Any]


def _held(client: TestClient, world: World, database: Database) -> HeldCode:
    member = enrol(client, world.a)
    give_points(database, world.a.merchant_id, member["id"], 1000)
    offer = make_offer(client, world.a.merchant_key, value=VALUE, budget=100 * VALUE)
    [code] = make_codes(client, world.a.merchant_key, offer["id"])
    hold = _reserve(client, code, world.a.pos_key, ttl_seconds=300)
    assert hold.status_code == 201, hold.text
    return HeldCode(member=member, offer=offer, code=code, hold=hold.json())


def _checkout(held: HeldCode, receipt_no: str) -> dict[str, Any]:
    return purchase(receipt_no=receipt_no, member={"member_id": held.member["id"]},
                    points_to_burn=200,
                    vouchers=[{"code": held.code, "reservation_id": held.hold["id"]}])


def _balance(database: Database, merchant_id: str, member_id: str) -> int:
    with database.session_scope() as session:
        return ledger.points_balance(session, merchant_id=uuid.UUID(merchant_id),
                                     member_id=uuid.UUID(member_id))


def test_a_code_revoked_while_held_fails_the_commit_and_charges_nothing(
        client: TestClient, world: World, database: Database) -> None:
    held = _held(client, world, database)
    assert _offer_row(database, held.offer["id"]).budget_used == VALUE
    revoked = client.post(f"/v1/vouchers/{held.code}/revoke",
                          headers=auth(world.a.merchant_key), json={"reason": "leaked"})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    before = snapshot(database)
    refused = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                          json=_checkout(held, "REV-1"))
    assert (refused.status_code, refused.json()["code"]) == (409, "voucher_revoked")
    # No transaction, no points moved, the hold not turned into a redemption. (The
    # security log may record the refusal: that is the abuse controls' business.)
    assert set(changed_tables(before, snapshot(database))) <= {"security_events"}
    assert _transactions(database) == 0
    assert _balance(database, world.a.merchant_id, held.member["id"]) == 1000
    [hold] = _redemptions(database)
    assert (hold.status, hold.transaction_id) == ("reserved", None)
    # Presented without the hold it fails the same way; a quote says so too.
    plain = purchase(receipt_no="REV-2", member={"member_id": held.member["id"]},
                     vouchers=[{"code": held.code}])
    for path in ("/v1/pos/transactions", "/v1/pos/quote"):
        answer = client.post(path, headers=auth(world.a.pos_key), json=plain)
        assert (answer.status_code, answer.json()["code"]) == (409, "voucher_revoked")
    # Releasing the hold gives its discount back to the budget: nothing was spent.
    released = client.post(f"/v1/vouchers/reservations/{held.hold['id']}/release",
                           headers=auth(world.a.pos_key))
    assert released.status_code == 200 and released.json()["status"] == "released"
    row = _offer_row(database, held.offer["id"])
    assert (row.budget_used, row.redemptions_count) == (0, 0)
    assert _voucher(database, held.code).redemptions_count == 0
    assert _transactions(database) == 0


ROUNDS = 30


def test_revoke_racing_the_commit_of_a_held_code_is_all_or_nothing(
        client: TestClient, world: World, database: Database) -> None:
    """Each round: a held code, then its revocation and the purchase naming the hold at
    the same moment (the revocation sent up to 9 ms later, so both orders happen). The
    purchase either commits with the discount (it got the code before the revocation) or
    fails with ``voucher_revoked`` having written nothing; the revocation always lands."""
    rounds = [_held(client, world, database) for _ in range(ROUNDS)]
    member_points = {held.member["id"]: 1000 for held in rounds}

    with _server() as http:
        def race(held: HeldCode, number: int) -> tuple[Answer, Answer]:
            def one(index: int) -> Answer:
                if index == 0:
                    return http.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                                     json=_checkout(held, f"RACE-{number}"))
                time.sleep((number % 10) / 1000)
                return http.post(f"/v1/vouchers/{held.code}/revoke",
                                 headers=auth(world.a.merchant_key), json={})
            commit, revoke = all_at_once(2, one)
            return commit, revoke

        results = [race(held, number) for number, held in enumerate(rounds)]

    committed = 0
    with database.session_scope() as session:
        for number, (held, (commit, revoke)) in enumerate(zip(rounds, results, strict=True)):
            assert revoke.status_code == 200 and revoke.json()["status"] == "revoked"
            [hold] = session.scalars(select(VoucherRedemption).where(
                VoucherRedemption.id == uuid.UUID(held.hold["id"]))).all()
            sale = session.scalars(select(PosTransaction).where(
                PosTransaction.receipt_no == f"RACE-{number}")).one_or_none()
            if commit.status_code == 201:
                committed += 1
                body = commit.json()
                assert body["voucher_discount"] == VALUE
                assert [v["code"] for v in body["vouchers"]] == [held.code]
                assert sale is not None and sale.voucher_discount == VALUE
                assert (hold.status, hold.transaction_id) == ("redeemed", sale.id)
                member_points[held.member["id"]] += body["points_earned"] - 200
            else:
                assert (commit.status_code, commit.json()["code"]) == \
                    (409, "voucher_revoked"), commit.text
                assert sale is None
                assert (hold.status, hold.transaction_id) == ("reserved", None)
        assert ledger.check_invariants(session) == []
    for member_id, points in member_points.items():
        assert _balance(database, world.a.merchant_id, member_id) == points
    assert _transactions(database) == committed
    # Every hold still counts (held or redeemed) until the failed rounds release theirs.
    offers = [_offer_row(database, held.offer["id"]) for held in rounds]
    assert [row.budget_used for row in offers] == [VALUE] * ROUNDS
    for held, (commit, _) in zip(rounds, results, strict=True):
        if commit.status_code != 201:
            released = client.post(f"/v1/vouchers/reservations/{held.hold['id']}/release",
                                   headers=auth(world.a.pos_key))
            assert released.status_code == 200, released.text
    assert sum(_offer_row(database, held.offer["id"]).budget_used for held in rounds) \
        == committed * VALUE


# --- holds raced by two registers (both backends) ----------------------------------------

def test_two_registers_racing_for_a_hold_get_one_and_an_expired_hold_frees_the_code(
        client: TestClient, world: World, database: Database, ) -> None:
    op = world.operator_key
    second = client.post(f"/v1/stores/{world.a.store_id}/terminals", headers=auth(op),
                         json={"code": "pos-2", "kind": "pos"})
    assert second.status_code == 201, second.text
    registers = [world.a.pos_key, second.json()["api_key"]]
    offer = make_offer(client, world.a.merchant_key, value=VALUE, budget=100 * VALUE)
    raced, expiring = make_codes(client, world.a.merchant_key, offer["id"], count=2)

    with _server() as http:
        # 1. Ten requests from each register at once: one hold.
        holds = all_at_once(20, lambda i: _reserve(http, raced, registers[i % 2], 60))
        assert _outcomes(holds) == {(201, None): 1, (409, "voucher_already_redeemed"): 19}
        winner = next(i for i, answer in enumerate(holds) if answer.status_code == 201)
        hold = holds[winner].json()
        assert _voucher(database, raced).redemptions_count == 1
        # The holder uses its hold; the other register still cannot have the code.
        sale = http.post("/v1/pos/transactions", headers=auth(registers[winner % 2]),
                         json=purchase(receipt_no="HOLD-1", vouchers=[
                             {"code": raced, "reservation_id": hold["id"]}]))
        assert sale.status_code == 201 and sale.json()["voucher_discount"] == VALUE, sale.text
        other = _redeem(http, raced, registers[(winner + 1) % 2])
        assert (other.status_code, other.json()["code"]) == (409, "voucher_already_redeemed")

        # 2. A hold of one second: refused to the other register while it lasts; once it
        # has expired, the first register's purchase naming it fails and, of nine
        # simultaneous redemptions by the other register, exactly one succeeds.
        short = _reserve(http, expiring, registers[0], ttl_seconds=1)
        assert short.status_code == 201, short.text
        early = _redeem(http, expiring, registers[1])
        assert (early.status_code, early.json()["code"]) == (409, "voucher_already_redeemed")
        time.sleep(1.3)

        def after_expiry(index: int) -> Answer:
            if index == 0:
                return http.post("/v1/pos/transactions", headers=auth(registers[0]),
                                 json=purchase(receipt_no="HOLD-2", vouchers=[
                                     {"code": expiring, "reservation_id": short.json()["id"]}]))
            return _redeem(http, expiring, registers[1])

        late = all_at_once(10, after_expiry)
        assert (late[0].status_code, late[0].json()["code"]) == (409, "reservation_ended")
        assert _outcomes(late[1:]) == {(200, None): 1, (409, "voucher_already_redeemed"): 8}

    rows = _redemptions(database, voucher_id=_voucher(database, expiring).id)
    assert [(r.status, str(r.terminal_id)) for r in rows] == [
        ("released", world.a.pos_id), ("redeemed", second.json()["id"])]
    assert rows[0].ended_at is not None
    assert _voucher(database, expiring).redemptions_count == 1
    row = _offer_row(database, offer["id"])
    # One purchase and one stand-alone redemption; the expired hold gave its share back.
    assert (row.budget_used, row.redemptions_count) == (2 * VALUE, 2)
    assert _transactions(database) == 1


def test_a_released_hold_gives_the_code_back_to_another_register(
        client: TestClient, world: World) -> None:
    op = world.operator_key
    second = client.post(f"/v1/stores/{world.a.store_id}/terminals", headers=auth(op),
                         json={"code": "pos-2", "kind": "pos"})
    other_key = second.json()["api_key"]
    offer = make_offer(client, world.a.merchant_key, value=VALUE)
    [code] = make_codes(client, world.a.merchant_key, offer["id"])
    first = _reserve(client, code, world.a.pos_key, ttl_seconds=300)
    assert first.status_code == 201, first.text
    hold_id = first.json()["id"]
    taken = _reserve(client, code, other_key, ttl_seconds=300)
    assert (taken.status_code, taken.json()["code"]) == (409, "voucher_already_redeemed")
    # Only the register holding it can give it back (another register's attempt changes
    # nothing: the holder's release below still finds it held).
    foreign = client.post(f"/v1/vouchers/reservations/{hold_id}/release",
                          headers=auth(other_key))
    assert foreign.status_code == 404, foreign.text
    released = client.post(f"/v1/vouchers/reservations/{hold_id}/release",
                           headers=auth(world.a.pos_key))
    assert released.status_code == 200 and released.json()["status"] == "released"
    again = client.post(f"/v1/vouchers/reservations/{hold_id}/release",
                        headers=auth(world.a.pos_key))
    assert (again.status_code, again.json()["code"]) == (409, "reservation_ended")
    mine = _reserve(client, code, other_key, ttl_seconds=300)
    assert mine.status_code == 201, mine.text
    sale = client.post("/v1/pos/transactions", headers=auth(other_key), json=purchase(
        receipt_no="REL-1", vouchers=[{"code": code, "reservation_id": mine.json()["id"]}]))
    assert sale.status_code == 201 and sale.json()["voucher_discount"] == VALUE, sale.text
