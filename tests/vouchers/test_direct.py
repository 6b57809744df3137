"""The lean path of a stand-alone redemption (``patron.vouchers.direct``) held to the full
path (``patron.vouchers.redemption``).

Each scenario runs twice in one test, on the same world and the same frozen instant: once
with the endpoint as it is, once with the lean path switched off (``direct.redeem`` raises
``NotDirect`` at once, so the full path answers everything). Each run prepares its own
codes and offers (and, where a scenario turns a register off or throttles it, its own
register), identical to the other run's, and makes the same requests; idempotency keys
carry the run's name, as both runs use the same registers. The two runs must be
indistinguishable: every answer (status, Retry-After, media type and body; what differs by
construction — ids, codes, keys, request hashes — named by what it is, ``created_at``
exact under the frozen clock), the codes' and offers' counters, the redemption rows of
the codes (every column, ``response_json`` parsed) and the security events recorded
(each run's are removed after it, so the throttle sees the same history in both).

A spy counts the requests the lean path completed in the first run, held to the number
each scenario expects, so the test cannot pass by everything falling back; each scenario
also states its answers outright, so both paths being wrong alike does not pass either.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select
from starlette.testclient import TestClient

from patron.app import with_fast_lane
from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock, utcnow
from patron.security.models import SecurityEvent
from patron.security.service import code_trace
from patron.vouchers import codes, direct, service
from patron.vouchers.models import Offer, Voucher, VoucherRedemption
from patron.vouchers.redemption import request_digest
from patron.vouchers.schemas import RedeemWrite
from tests.conftest import World, auth
from tests.pos.conftest import enrol
from tests.vouchers.conftest import make_codes, make_offer

ZONE = ZoneInfo("Asia/Tokyo")  # merchant A's stores
LINES = [{"sku": "CF-1", "name": "Coffee", "category": "coffee", "quantity": 2,
          "unit_price": 400},
         {"sku": "BR-1", "name": "Bread", "category": "bakery", "quantity": 1,
          "unit_price": 1200}]


# --- what a scenario is ------------------------------------------------------------------


@dataclass
class Ctx:
    """What a scenario prepares its codes with; the same for both runs but ``run``."""

    client: TestClient
    world: World
    database: Database
    monkeypatch: pytest.MonkeyPatch
    member_id: str
    second_store_id: str
    start: datetime  # the frozen instant every run starts at
    run: str = ""

    def offer(self, key: str | None = None, **terms: Any) -> str:
        offer_id: str = make_offer(self.client, key or self.world.a.merchant_key,
                                   **terms)["id"]
        return offer_id

    def codes(self, offer_id: str, count: int = 1, key: str | None = None,
              **extra: Any) -> list[str]:
        return make_codes(self.client, key or self.world.a.merchant_key, offer_id, count,
                          **extra)

    def till(self) -> tuple[str, str]:
        """A new register of A's main store for this run alone: its id and key."""
        created = self.client.post(f"/v1/stores/{self.world.a.store_id}/terminals",
                                   headers=auth(self.world.operator_key),
                                   json={"code": f"till-{self.run}", "kind": "pos"})
        assert created.status_code == 201, created.text
        return created.json()["id"], created.json()["api_key"]

    def failure_limit(self) -> None:
        """The product's default voucher failure limit: 5 in 5 seconds."""
        settings = get_settings()
        self.monkeypatch.setattr(settings, "voucher_failure_limit", 5)
        self.monkeypatch.setattr(settings, "voucher_failure_window_seconds", 5.0)

    def reserve(self, code: str, *, till: str, ttl_seconds: int) -> str:
        """A hold on the code (the setup of the scenarios about holds); its id."""
        held = self.client.post(f"/v1/vouchers/{code}/reserve", headers=auth(till),
                                json={"ttl_seconds": ttl_seconds})
        assert held.status_code == 201, held.text
        hold_id: str = held.json()["id"]
        return hold_id


@dataclass(frozen=True)
class Call:
    """One ``POST /v1/vouchers/{code}/redeem``."""

    code: str
    body: dict[str, Any] = field(default_factory=dict)
    key: str | None = None  # Idempotency-Key; tagged with the run (one till, two runs)
    till: str = "pos"  # pos, reader, merchant, operator, b (B's pos), or the trial's own
    repeats: int | None = None  # this answer is byte for byte call #repeats's
    at: timedelta | None = None  # the clock moves to the start plus this first


@dataclass
class Trial:
    """What a run prepared and does: its codes and offers are the ones compared."""

    calls: list[Call]
    codes: list[str]
    offers: list[str] = field(default_factory=list)
    setup_ids: list[str] = field(default_factory=list)  # rows the setup wrote (holds)
    tills: dict[str, str | None] = field(default_factory=dict)  # more keys (None: no key)
    terminals: list[str] = field(default_factory=list)  # the run's own registers
    race: Callable[[], None] | None = None  # runs once, just before the use is written


Prepare = Callable[[Ctx], Trial]


@dataclass(frozen=True)
class Scenario:
    name: str
    prepare: Prepare
    answers: list[tuple[int, int | str]]  # per call: 200 and the discount, or the error
    lean: int  # requests the lean path completes
    counts: list[int | None] | None = None  # the codes' redemptions_count afterwards
    offers: list[tuple[int, int]] | None = None  # the offers' redemptions_count, budget_used
    postgres_only: bool = False
    # its trial races the request from inside it, on a second connection
    races: bool = False

    def marks(self) -> list[pytest.MarkDecorator]:
        return ([pytest.mark.postgres] if self.postgres_only else []) + (
            [pytest.mark.nested_connections] if self.races else [])


# The refusals recorded as security events (patron.security.attempts.COUNTED).
COUNTED = frozenset({"not_found", "invalid_voucher_code", "voucher_already_redeemed",
                     "voucher_cap_reached", "voucher_budget_exhausted", "voucher_revoked",
                     "voucher_expired", "voucher_not_yet_valid", "voucher_wrong_store",
                     "voucher_wrong_channel", "voucher_wrong_time",
                     "voucher_currency_mismatch", "voucher_needs_member",
                     "voucher_needs_purchase", "ticket_already_admitted"})


def ok(discount: int) -> tuple[int, int]:
    return 200, discount


def no(status: int, code: str) -> tuple[int, str]:
    return status, code


# --- preparing ---------------------------------------------------------------------------


def one(*bodies: dict[str, Any], code_args: dict[str, Any] | None = None,
        **terms: Any) -> Prepare:
    """One code of one offer of A with ``terms``, redeemed with each body in turn."""
    def prepare(ctx: Ctx) -> Trial:
        offer_id = ctx.offer(**terms)
        [code] = ctx.codes(offer_id, **(code_args or {}))
        return Trial([Call(code, body) for body in (bodies or ({},))], [code], [offer_id])
    return prepare


def each(count: int, **terms: Any) -> Prepare:
    """``count`` single-use codes of one offer of A, each redeemed once, in order."""
    def prepare(ctx: Ctx) -> Trial:
        offer_id = ctx.offer(**terms)
        issued = ctx.codes(offer_id, count)
        return Trial([Call(code) for code in issued], issued, [offer_id])
    return prepare


def ticket(ctx: Ctx) -> Trial:
    """Admitted at the gate's reader; shown again at the till."""
    offer_id = ctx.offer(kind="ticket", value=0)
    [code] = ctx.codes(offer_id)
    return Trial([Call(code, till="reader"), Call(code)], [code], [offer_id])


def revoked_code(ctx: Ctx) -> Trial:
    offer_id = ctx.offer()
    [code] = ctx.codes(offer_id)
    revoked = ctx.client.post(f"/v1/vouchers/{code}/revoke",
                              headers=auth(ctx.world.a.merchant_key), json={})
    assert revoked.status_code == 200, revoked.text
    return Trial([Call(code)], [code], [offer_id])


def revoked_offer(**terms: Any) -> Prepare:
    def prepare(ctx: Ctx) -> Trial:
        offer_id = ctx.offer(**terms)
        [code] = ctx.codes(offer_id)
        revoked = ctx.client.post(f"/v1/offers/{offer_id}/revoke",
                                  headers=auth(ctx.world.a.merchant_key))
        assert revoked.status_code == 200, revoked.text
        return Trial([Call(code)], [code], [offer_id])
    return prepare


def wrong_store(ctx: Ctx) -> Trial:
    return one(store_ids=[ctx.second_store_id])(ctx)


def own_store(ctx: Ctx) -> Trial:
    return one(store_ids=[ctx.world.a.store_id])(ctx)


def validity(*, valid_from: timedelta | None = None, valid_until: timedelta | None = None,
             occurred_at: timedelta | None = None) -> Prepare:
    """A code valid from/until the start instant plus the given offsets, used at the
    start (or at ``occurred_at`` from it)."""
    def prepare(ctx: Ctx) -> Trial:
        bounds = (("valid_from", valid_from), ("valid_until", valid_until))
        terms: dict[str, Any] = {name: (ctx.start + offset).isoformat()
                                 for name, offset in bounds if offset is not None}
        body = {} if occurred_at is None else {
            "occurred_at": (ctx.start + occurred_at).isoformat()}
        if valid_until is None or valid_until > timedelta(0):
            return one(body, **terms)(ctx)
        # An offer cannot be created already ended: it was created while it still ran.
        clock.freeze(ctx.start + valid_until - timedelta(hours=1))
        try:
            return one(body, **terms)(ctx)
        finally:
            clock.freeze(ctx.start)
    return prepare


def _local(ctx: Ctx) -> datetime:
    return ctx.start.astimezone(ZONE)


def other_weekdays(ctx: Ctx) -> Trial:
    today = _local(ctx).isoweekday()
    return one(weekdays=[day for day in range(1, 8) if day != today])(ctx)


def hours(*, inside: bool) -> Prepare:
    def prepare(ctx: Ctx) -> Trial:
        before = (_local(ctx) - timedelta(hours=1)).strftime("%H:%M")
        after = (_local(ctx) + timedelta(hours=1)).strftime("%H:%M")
        start, end = (before, after) if inside else (after, before)
        return one(from_time=start, until_time=end)(ctx)
    return prepare


def personal(*, with_member: bool) -> Prepare:
    def prepare(ctx: Ctx) -> Trial:
        offer_id = ctx.offer()
        [code] = ctx.codes(offer_id, member_id=ctx.member_id)
        body = {"member": {"member_id": ctx.member_id}} if with_member else {}
        return Trial([Call(code, body)], [code], [offer_id])
    return prepare


def with_member(**terms: Any) -> Prepare:
    def prepare(ctx: Ctx) -> Trial:
        return one({"member": {"member_id": ctx.member_id}}, **terms)(ctx)
    return prepare


def other_merchants_code(ctx: Ctx) -> Trial:
    offer_id = ctx.offer(ctx.world.b.merchant_key)
    [code] = ctx.codes(offer_id, key=ctx.world.b.merchant_key)
    return Trial([Call(code)], [code], [offer_id])


def other_merchants_ticket(ctx: Ctx) -> Trial:
    """B's ticket at A's register (a ticket is worth no money: no currency tells them
    apart)."""
    offer_id = ctx.offer(ctx.world.b.merchant_key, kind="ticket", value=0)
    [code] = ctx.codes(offer_id, key=ctx.world.b.merchant_key)
    return Trial([Call(code)], [code], [offer_id])


def unknown_code(ctx: Ctx) -> Trial:
    code = codes.display(codes.generate_code())
    return Trial([Call(code)], [code])


def malformed(ctx: Ctx) -> Trial:
    offer_id = ctx.offer()
    [code] = ctx.codes(offer_id)
    typo = code[:-1] + ("0" if code[-1] != "0" else "1")
    return Trial([Call("NOT-A-CODE"), Call(typo)], [code], [offer_id])


def forms(ctx: Ctx) -> Trial:
    """The printed code as a scanner reads its barcode, typed in lower case, and typed
    with spaces and the confusable letters."""
    offer_id = ctx.offer()
    [code] = ctx.codes(offer_id, max_redemptions=3)
    read = ctx.client.get(f"/v1/vouchers/{code}", headers=auth(ctx.world.a.merchant_key))
    assert read.status_code == 200, read.text
    typed = code.lower().replace("0", "o").replace("1", "l").replace("-", " ")
    return Trial([Call(read.json()["barcode"]), Call(code.lower()), Call(typed)], [code],
                 [offer_id])


def barcode_of_another_merchant(ctx: Ctx) -> Trial:
    offer_id = ctx.offer()
    [code] = ctx.codes(offer_id)
    scanned = codes.barcode_number(ctx.world.b.number, codes.parse_code(code))
    return Trial([Call(scanned)], [code], [offer_id])


def coalition(*, till: str) -> Prepare:
    """A coalition code (the operator's, 100 JPY off) at merchant A (JPY) by its printed
    and its barcode form (merchant number 0), or at merchant B (USD)."""
    def prepare(ctx: Ctx) -> Trial:
        operator = ctx.world.operator_key
        offer_id = ctx.offer(operator, value=100, currency="JPY")
        [code] = ctx.codes(offer_id, key=operator, max_redemptions=2)
        scanned = codes.barcode_number(codes.COALITION_MERCHANT_NUMBER,
                                       codes.parse_code(code))
        calls = [Call(code, till=till), Call(scanned, till=till)]
        return Trial(calls if till == "pos" else calls[:1], [code], [offer_id])
    return prepare


def idempotent(*, uses: int) -> Prepare:
    """A first use with a key, its exact retry, and the key again with another body."""
    def prepare(ctx: Ctx) -> Trial:
        offer_id = ctx.offer()
        [code] = ctx.codes(offer_id, max_redemptions=uses)
        calls = [Call(code, key="desk-1"), Call(code, key="desk-1", repeats=0),
                 Call(code, {"receipt_no": "X"}, key="desk-1")]
        return Trial(calls, [code], [offer_id])
    return prepare


def key_on_another_code(ctx: Ctx) -> Trial:
    offer_id = ctx.offer()
    first, second = ctx.codes(offer_id, 2)
    return Trial([Call(first, key="desk-1"), Call(second, key="desk-1")], [first, second],
                 [offer_id])


def occurred(offset: timedelta) -> Prepare:
    def prepare(ctx: Ctx) -> Trial:
        return one({"occurred_at": (ctx.start + offset).isoformat()})(ctx)
    return prepare


def keys_of_no_till(ctx: Ctx) -> Trial:
    """The merchant's and the operator's keys are no register's; an unknown key, none."""
    trial = one()(ctx)
    [code] = trial.codes
    calls = [Call(code, till=till) for till in ("merchant", "operator", "unknown", "none")]
    return Trial(calls, trial.codes, trial.offers,
                 tills={"unknown": "pk_not_a_key", "none": None})


def till_turned_off(*, how: str) -> Prepare:
    """The run's own register, deactivated or its key revoked, presents a good code."""
    def prepare(ctx: Ctx) -> Trial:
        trial = one()(ctx)
        terminal_id, key = ctx.till()
        operator = auth(ctx.world.operator_key)
        if how == "deactivated":
            done = ctx.client.patch(f"/v1/terminals/{terminal_id}", headers=operator,
                                    json={"active": False})
        else:
            keys = ctx.client.get("/v1/keys", headers=operator)
            assert keys.status_code == 200, keys.text
            [key_id] = [k["id"] for k in keys.json()["items"] if k["terminal_id"] == terminal_id]
            done = ctx.client.post(f"/v1/keys/{key_id}/revoke", headers=operator)
        assert done.status_code == 200, done.text
        return Trial([Call(trial.codes[0], till="own")], trial.codes, trial.offers,
                     tills={"own": key}, terminals=[terminal_id])
    return prepare


def failing(*, across_terminals: bool) -> Prepare:
    """Five refused codes in five seconds from this register (or from this address at two
    registers), then a good code: refused until the window has passed."""
    def prepare(ctx: Ctx) -> Trial:
        ctx.failure_limit()
        offer_id = ctx.offer()
        [good] = ctx.codes(offer_id)
        unknown = [codes.display(codes.generate_code()) for _ in range(5)]
        terminal_id, key = ctx.till()
        other = "reader" if across_terminals else "own"
        calls = [Call(code, till="own" if index < 3 else other)
                 for index, code in enumerate(unknown)]
        calls += [Call(good, till="own", at=timedelta(seconds=1)),
                  Call(good, till="own", at=timedelta(seconds=5))]
        return Trial(calls, [good, *unknown], [offer_id], tills={"own": key},
                     terminals=[terminal_id])
    return prepare


def own_hold_expired(ctx: Ctx) -> Trial:
    """The code's only use is held by this register's sale, which ran out of time."""
    offer_id = ctx.offer(max_redemptions=5, budget=1000)
    [code] = ctx.codes(offer_id)
    hold = ctx.reserve(code, till=ctx.world.a.pos_key, ttl_seconds=60)
    clock.freeze(ctx.start + timedelta(seconds=61))
    return Trial([Call(code)], [code], [offer_id], setup_ids=[hold])


def held_elsewhere(ctx: Ctx) -> Trial:
    """Another register holds the code's only use (live)."""
    offer_id = ctx.offer()
    [code] = ctx.codes(offer_id)
    hold = ctx.reserve(code, till=ctx.world.a.reader_key, ttl_seconds=60)
    return Trial([Call(code)], [code], [offer_id], setup_ids=[hold])


def cap_held_by_expired_hold(ctx: Ctx) -> Trial:
    """The offer's cap (1) is held by another code's expired hold: the use releases it."""
    offer_id = ctx.offer(max_redemptions=1)
    held, spare = ctx.codes(offer_id, 2)
    hold = ctx.reserve(held, till=ctx.world.a.reader_key, ttl_seconds=60)
    clock.freeze(ctx.start + timedelta(seconds=61))
    return Trial([Call(spare)], [held, spare], [offer_id], setup_ids=[hold])


def taken_in_between(ctx: Ctx) -> Trial:
    """Another register takes the code's only use (and its share of the offer's budget)
    after this request read the code and before it writes. PostgreSQL only: on SQLite the
    request reads and writes under one write lock, so no register can come in between."""
    offer_id = ctx.offer(value=100, budget=1000)
    [code] = ctx.codes(offer_id)

    def take_elsewhere() -> None:
        with ctx.database.session_scope() as session:
            voucher_id = session.scalar(select(Voucher.id).where(
                Voucher.code == codes.parse_code(code)))
            assert voucher_id is not None
            assert service.take_code(session, voucher_id)
            assert service.take_offer(session, uuid.UUID(offer_id), 100)

    return Trial([Call(code)], [code], [offer_id], race=take_elsewhere)


SCENARIOS = [
    # The lean path's own successes, and their refusals afterwards.
    Scenario("amount_off_single_use", one({}, {}, value=100),
             [ok(100), no(409, "voucher_already_redeemed")], lean=1, counts=[1]),
    Scenario("multi_use_3_used_4_times", one({}, {"receipt_no": "R-2"}, {}, {},
                                             code_args={"max_redemptions": 3}, value=250),
             [ok(250), ok(250), ok(250), no(409, "voucher_already_redeemed")], lean=3,
             counts=[3]),
    Scenario("offer_cap_reached", each(2, max_redemptions=1),
             [ok(100), no(409, "voucher_cap_reached")], lean=1, counts=[1, 0],
             offers=[(1, 100)]),
    Scenario("offer_cap_on_a_multi_use_code", one({}, {}, {}, code_args={"max_redemptions": 3},
                                                  max_redemptions=2),
             [ok(100), ok(100), no(409, "voucher_cap_reached")], lean=2, counts=[2],
             offers=[(2, 200)]),
    Scenario("budget_exceeded", each(2, value=300, budget=500),
             [ok(300), no(409, "voucher_budget_exhausted")], lean=1, counts=[1, 0],
             offers=[(1, 300)]),
    Scenario("budget_to_the_last_unit", each(3, value=300, budget=600),
             [ok(300), ok(300), no(409, "voucher_budget_exhausted")], lean=2,
             counts=[1, 1, 0], offers=[(2, 600)]),
    Scenario("ticket_admits_once", ticket,
             [ok(0), no(409, "ticket_already_admitted")], lean=1, counts=[1]),
    Scenario("ticket_capped_offer", each(2, kind="ticket", value=0, max_redemptions=1),
             [ok(0), no(409, "voucher_cap_reached")], lean=1, counts=[1, 0],
             offers=[(1, 0)]),
    Scenario("receipt_and_channel_named", one({"receipt_no": "R-1", "channel": "store"}),
             [ok(100)], lean=1),
    # A store's till cannot say its sale is online (docs/pos.md, "Channel").
    Scenario("online_sale_stated_at_a_store_till",
             one({"channel": "online"}, channels=["online"]),
             [no(422, "channel_not_terminals")], lean=0, counts=[0]),
    Scenario("own_store_only", own_store, [ok(100)], lean=1),
    Scenario("within_store_hours", hours(inside=True), [ok(100)], lean=1),
    Scenario("code_forms", forms, [ok(100), ok(100), ok(100)], lean=3, counts=[3]),
    Scenario("coalition_code_at_a", coalition(till="pos"), [ok(100), ok(100)], lean=2,
             counts=[2]),
    # Time: the code's window, the sale's time.
    Scenario("valid_from_now", validity(valid_from=timedelta(0)), [ok(100)], lean=1),
    Scenario("not_yet_valid", validity(valid_from=timedelta(days=1)),
             [no(409, "voucher_not_yet_valid")], lean=0, counts=[0]),
    Scenario("expires_now", validity(valid_until=timedelta(0)),
             [no(409, "voucher_expired")], lean=0, counts=[0]),
    Scenario("expired", validity(valid_until=-timedelta(seconds=1)),
             [no(409, "voucher_expired")], lean=0, counts=[0]),
    Scenario("used_before_it_expired", validity(valid_until=-timedelta(hours=1),
                                                occurred_at=-timedelta(hours=2)),
             [ok(100)], lean=1),
    Scenario("sale_in_the_skew_after_expiry", validity(valid_until=timedelta(minutes=1),
                                                       occurred_at=timedelta(minutes=5)),
             [no(409, "voucher_expired")], lean=0, counts=[0]),
    Scenario("occurred_at_in_the_future", occurred(timedelta(minutes=5, seconds=1)),
             [no(422, "occurred_at_in_future")], lean=0, counts=[0]),
    Scenario("occurred_at_too_old", occurred(-timedelta(days=31)),
             [no(422, "occurred_at_too_old")], lean=0, counts=[0]),
    # Place and hour.
    Scenario("wrong_store", wrong_store, [no(409, "voucher_wrong_store")], lean=0,
             counts=[0]),
    Scenario("wrong_channel", one(channels=["online"]), [no(409, "voucher_wrong_channel")],
             lean=0, counts=[0]),
    Scenario("wrong_weekday", other_weekdays, [no(409, "voucher_wrong_time")], lean=0,
             counts=[0]),
    Scenario("outside_store_hours", hours(inside=False), [no(409, "voucher_wrong_time")],
             lean=0, counts=[0]),
    Scenario("coalition_code_in_another_currency", coalition(till="b"),
             [no(409, "voucher_currency_mismatch")], lean=0, counts=[0]),
    # The state of the code and the offer.
    Scenario("revoked_code", revoked_code, [no(409, "voucher_revoked")], lean=0, counts=[0]),
    Scenario("revoked_offer", revoked_offer(), [no(409, "voucher_revoked")], lean=0,
             counts=[0]),
    Scenario("revoked_capped_offer", revoked_offer(max_redemptions=5, budget=1000),
             [no(409, "voucher_revoked")], lean=0, counts=[0], offers=[(0, 0)]),
    Scenario("held_by_another_register", held_elsewhere,
             [no(409, "voucher_already_redeemed")], lean=0, counts=[1]),
    Scenario("own_hold_expired", own_hold_expired, [ok(100)], lean=0, counts=[1],
             offers=[(1, 100)]),
    Scenario("offer_cap_held_by_an_expired_hold", cap_held_by_expired_hold, [ok(100)],
             lean=0, counts=[0, 1], offers=[(1, 100)]),
    Scenario("taken_between_read_and_write", taken_in_between,
             [no(409, "voucher_already_redeemed")], lean=0, counts=[1], offers=[(1, 100)],
             postgres_only=True, races=True),
    # Codes the lean path does not take, and codes no one may take here.
    Scenario("personal_code_without_member", personal(with_member=False),
             [no(409, "voucher_needs_member")], lean=0, counts=[0]),
    Scenario("personal_code_with_member", personal(with_member=True), [ok(100)], lean=0,
             counts=[1]),
    Scenario("per_member_limit_without_member", one(code_args={"max_redemptions": 5},
                                                    per_member_limit=1),
             [no(409, "voucher_needs_member")], lean=0, counts=[0]),
    Scenario("percent_off_without_lines", one(kind="percent_off", value=10),
             [no(422, "voucher_needs_basket")], lean=0, counts=[0]),
    Scenario("percent_off_with_lines", one({"lines": LINES}, kind="percent_off", value=10),
             [ok(200)], lean=0, counts=[1]),
    Scenario("amount_off_with_minimum_spend", one(min_spend=1000),
             [no(422, "voucher_needs_basket")], lean=0, counts=[0]),
    Scenario("bonus_points_without_member", one(kind="bonus_points", value=50),
             [no(409, "voucher_needs_member")], lean=0, counts=[0]),
    Scenario("points_multiplier", one(kind="points_multiplier", value=20000),
             [no(409, "voucher_needs_purchase")], lean=0, counts=[0]),
    Scenario("other_merchants_code", other_merchants_code, [no(404, "not_found")], lean=0,
             counts=[0]),
    Scenario("unknown_code", unknown_code, [no(404, "not_found")], lean=0, counts=[None]),
    Scenario("barcode_of_another_merchant", barcode_of_another_merchant,
             [no(404, "not_found")], lean=0, counts=[0]),
    Scenario("malformed_and_mistyped", malformed,
             [no(422, "invalid_voucher_code"), no(422, "invalid_voucher_code")], lean=0,
             counts=[0]),
    Scenario("other_merchants_ticket", other_merchants_ticket, [no(404, "not_found")],
             lean=0, counts=[0]),
    # Who asks.
    Scenario("keys_of_no_till", keys_of_no_till,
             [no(403, "forbidden"), no(403, "forbidden"), no(401, "unauthenticated"),
              no(401, "unauthenticated")], lean=0, counts=[0]),
    Scenario("deactivated_till", till_turned_off(how="deactivated"),
             [no(403, "terminal_inactive")], lean=0, counts=[0]),
    Scenario("revoked_till_key", till_turned_off(how="revoked"),
             [no(401, "unauthenticated")], lean=0, counts=[0]),
    Scenario("till_throttled", failing(across_terminals=False),
             [*[no(404, "not_found")] * 5, no(429, "too_many_failures"), ok(100)], lean=1,
             counts=[1, None, None, None, None, None]),
    Scenario("address_throttled", failing(across_terminals=True),
             [*[no(404, "not_found")] * 5, no(429, "too_many_failures"), ok(100)], lean=1,
             counts=[1, None, None, None, None, None]),
    # The body names what the lean path leaves to the full path.
    Scenario("body_with_member", with_member(), [ok(100)], lean=0, counts=[1]),
    Scenario("body_with_lines", one({"lines": LINES}, value=300), [ok(300)], lean=0,
             counts=[1]),
    Scenario("body_with_the_merchants_currency", one({"currency": "JPY"}), [ok(100)],
             lean=0, counts=[1]),
    Scenario("body_with_another_currency", one({"currency": "USD"}),
             [no(422, "currency_not_merchants")], lean=0, counts=[0]),
    # Idempotency.
    Scenario("idempotency_single_use", idempotent(uses=1),
             [ok(100), ok(100), no(409, "idempotency_key_reused")], lean=1, counts=[1]),
    Scenario("idempotency_multi_use", idempotent(uses=3),
             [ok(100), ok(100), no(409, "idempotency_key_reused")], lean=1, counts=[1]),
    Scenario("idempotency_key_on_another_code", key_on_another_code,
             [ok(100), no(409, "idempotency_key_reused")], lean=1, counts=[1, 0]),
]


# --- one run ---------------------------------------------------------------------------


@dataclass
class Outcome:
    answers: list[tuple[int, str | None, str | None, Any]]  # status, Retry-After, type, body
    codes: list[int | None]
    offers: list[tuple[int, int]]
    rows: list[list[dict[str, Any]]]
    events: list[dict[str, Any]]
    lean: int
    # Who completed them: "thread" (the endpoint's ``direct.redeem``) or "event loop"
    # (the fast lane's ``direct.redeem_raw``), and whether with an idempotency key.
    by: list[tuple[str, bool]]


class Names:
    """What differs between the runs by construction (ids, codes, keys) replaced by
    what it is (``<code 0>``, ``<row answered to call 1>``...): anything else differs."""

    def __init__(self) -> None:
        self.exact: dict[str, str] = {}
        self.inside: dict[str, str] = {}  # codes, replaced inside text too

    def name(self, raw: Any, as_: str) -> None:
        self.exact.setdefault(str(raw), as_)

    def code(self, canonical: str, as_: str) -> None:
        for form in (canonical, codes.display(canonical)):
            self.inside.setdefault(form, as_)

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self(item) for item in value]
        if isinstance(value, uuid.UUID):
            value = str(value)
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, str):
            if value in self.exact:
                return self.exact[value]
            for raw, as_ in self.inside.items():
                value = value.replace(raw, as_)
        return value


def _canonical(text: str) -> str | None:
    try:
        return codes.parse_code(text)
    except (codes.CodeFormatError, codes.CodeCheckError):
        return None


def _tills(world: World) -> dict[str, str | None]:
    return {"pos": world.a.pos_key, "reader": world.a.reader_key,
            "merchant": world.a.merchant_key, "operator": world.operator_key,
            "b": world.b.pos_key}


def _last_event(database: Database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.coalesce(func.max(SecurityEvent.id), 0))) or 0


def run(ctx: Ctx, scenario: Scenario, *, lean_path: bool, real: Callable[..., str],
        real_raw: Callable[..., Awaitable[str]]) -> Outcome:
    """The scenario from a fresh start of the clock, the lean path on or off."""
    ctx.run = "lean" if lean_path else "full"
    clock.freeze(ctx.start)
    completed: list[tuple[str, bool]] = []

    def spy(*args: Any, **kwargs: Any) -> str:
        answer = real(*args, **kwargs)
        completed.append(("thread", kwargs["idempotency_key"] is not None))
        return answer

    def off(*args: Any, **kwargs: Any) -> str:
        raise direct.NotDirect

    async def spy_raw(*args: Any, **kwargs: Any) -> str:
        answer = await real_raw(*args, **kwargs)
        completed.append(("event loop", kwargs["idempotency_key"] is not None))
        return answer

    async def off_raw(*args: Any, **kwargs: Any) -> str:
        raise direct.NotDirect

    ctx.monkeypatch.setattr(direct, "redeem", spy if lean_path else off)
    ctx.monkeypatch.setattr(direct, "redeem_raw", spy_raw if lean_path else off_raw)
    trial = scenario.prepare(ctx)
    if trial.race is not None:
        _race(ctx.monkeypatch, trial.race)
    first_event = _last_event(ctx.database)
    tills = {**_tills(ctx.world), **trial.tills}
    responses = []
    for call in trial.calls:
        if call.at is not None:
            clock.freeze(ctx.start + call.at)
        till = tills[call.till]
        headers = {} if till is None else auth(till)
        if call.key is not None:
            headers["Idempotency-Key"] = f"{ctx.run}:{call.key}"
        responses.append(ctx.client.post(f"/v1/vouchers/{call.code}/redeem", headers=headers,
                                          json=call.body))
    for call, response in zip(trial.calls, responses, strict=True):
        if call.repeats is not None:
            assert response.content == responses[call.repeats].content, response.text

    names = Names()
    for index, code in enumerate(trial.codes):
        canonical = codes.parse_code(code)
        names.code(canonical, f"<code {index}>")
    for index, offer_id in enumerate(trial.offers):
        names.name(offer_id, f"<offer {index}>")
    for index, hold_id in enumerate(trial.setup_ids):
        names.name(hold_id, f"<setup row {index}>")
    for index, terminal_id in enumerate(trial.terminals):
        names.name(terminal_id, f"<the run's till {index}>")
    for index, (call, response) in enumerate(zip(trial.calls, responses, strict=True)):
        if response.status_code == 200:
            names.name(response.json()["id"], f"<row answered to call {index}>")
        digest = request_digest(RedeemWrite.model_validate(call.body), call.code, call.key)
        if digest is not None:
            names.name(digest, f"<hash of call {index}>")
        if call.key is not None:
            names.name(f"{ctx.run}:{call.key}", f"<key {call.key}>")
    trace_key = get_settings().derived_key("security-code")
    prefixes: dict[str, str] = {}
    for index, call in enumerate(trial.calls):
        prefix, digest = code_trace(call.code, trace_key)
        read = _canonical(call.code)
        which = (f"code {trial.codes.index(codes.display(read))}"
                 if read is not None and codes.display(read) in trial.codes
                 else f"text of call {index}")
        names.name(digest, f"<digest of {which}>")
        prefixes.setdefault(prefix, f"<prefix of {which}>")

    counts: list[int | None] = []
    rows: list[list[dict[str, Any]]] = []
    offers: list[tuple[int, int]] = []
    with ctx.database.session_scope() as session:
        for index, code in enumerate(trial.codes):
            voucher = session.scalars(select(Voucher).where(
                Voucher.code == codes.parse_code(code))).one_or_none()
            counts.append(None if voucher is None else voucher.redemptions_count)
            if voucher is None:
                rows.append([])
                continue
            names.name(voucher.id, f"<voucher {index}>")
            names.name(voucher.offer_id, f"<offer of code {index}>")
            found = session.scalars(select(VoucherRedemption).where(
                VoucherRedemption.voucher_id == voucher.id))
            rows.append(sorted((_row(names, row) for row in found),
                               key=lambda row: json.dumps(row, sort_keys=True, default=str)))
        for offer_id in trial.offers:
            offer = session.get(Offer, uuid.UUID(offer_id))
            assert offer is not None
            offers.append((offer.redemptions_count, offer.budget_used))
        added = select(SecurityEvent).where(SecurityEvent.id > first_event)
        events = [_event(names, prefixes, event)
                  for event in session.scalars(added.order_by(SecurityEvent.id))]
        # The throttle counts them: the other run starts without them, as this one did.
        session.execute(delete(SecurityEvent).where(SecurityEvent.id > first_event))
    answers = [(response.status_code, response.headers.get("retry-after"),
                response.headers.get("content-type"), names(response.json()))
               for response in responses]
    return Outcome(answers=answers, codes=counts, offers=offers, rows=rows, events=events,
                   lean=len(completed), by=completed)


def _row(names: Names, row: VoucherRedemption) -> dict[str, Any]:
    columns = {column.name: getattr(row, column.key)
               for column in VoucherRedemption.__table__.columns}
    if columns["response_json"] is not None:
        columns["response_json"] = json.loads(columns["response_json"])
    normal: dict[str, Any] = names(columns)
    return normal


def _event(names: Names, prefixes: dict[str, str], event: SecurityEvent) -> dict[str, Any]:
    columns = {column.name: getattr(event, column.key)
               for column in SecurityEvent.__table__.columns if column.name != "id"}
    columns["code_prefix"] = prefixes.get(columns["code_prefix"], columns["code_prefix"])
    normal: dict[str, Any] = names(columns)
    return normal


def _race(monkeypatch: pytest.MonkeyPatch, take_elsewhere: Callable[[], None]) -> None:
    """``take_elsewhere`` runs once, on another connection, at the last moment before
    the request writes: before the lean path's statement, or before the full path takes
    the counters (whichever comes first)."""
    armed = [True]

    def fire() -> None:
        if armed:
            armed.clear()
            take_elsewhere()

    write_at_once, write_raw, take = direct._write_at_once, direct._write_raw, service.take

    def hooked_write(*args: Any, **kwargs: Any) -> bool:
        fire()
        return write_at_once(*args, **kwargs)

    async def hooked_write_raw(*args: Any, **kwargs: Any) -> bool:
        fire()  # blocks the test server's event loop: nothing else runs meanwhile
        return await write_raw(*args, **kwargs)

    def hooked_take(*args: Any, **kwargs: Any) -> VoucherRedemption:
        fire()
        return take(*args, **kwargs)

    monkeypatch.setattr(direct, "_write_at_once", hooked_write)
    monkeypatch.setattr(direct, "_write_raw", hooked_write_raw)
    monkeypatch.setattr(service, "take", hooked_take)


# --- the test --------------------------------------------------------------------------


@pytest.fixture(params=["endpoint", pytest.param("fast lane", marks=pytest.mark.postgres)])
def client(request: pytest.FixtureRequest, app: FastAPI) -> Iterator[TestClient]:
    """The app as the tests serve it, or (PostgreSQL) behind the fast lane of a server
    worker (``vouchers.fastlane``), which then takes the common case on the event loop."""
    served = with_fast_lane(app) if request.param == "fast lane" else app
    with TestClient(served, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def ctx(client: TestClient, world: World, database: Database,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Ctx]:
    second = client.post(f"/v1/merchants/{world.a.merchant_id}/stores",
                         headers=auth(world.operator_key),
                         json={"code": "second", "name": "Second store"})
    assert second.status_code == 201, second.text
    member = enrol(client, world.a)
    yield Ctx(client=client, world=world, database=database, monkeypatch=monkeypatch,
              member_id=member["id"],
              second_store_id=second.json()["id"],
              start=utcnow().replace(microsecond=0))


@pytest.mark.parametrize("scenario", [
    pytest.param(s, id=s.name, marks=s.marks()) for s in SCENARIOS])
def test_the_lean_path_answers_and_writes_like_the_full_path(
        ctx: Ctx, scenario: Scenario, request: pytest.FixtureRequest) -> None:
    real, real_raw = direct.redeem, direct.redeem_raw
    lean = run(ctx, scenario, lean_path=True, real=real, real_raw=real_raw)
    full = run(ctx, scenario, lean_path=False, real=real, real_raw=real_raw)

    for index, (mine, theirs) in enumerate(zip(lean.answers, full.answers, strict=True)):
        assert mine == theirs, f"answer to call {index}"
    assert lean.codes == full.codes, "codes' redemptions_count"
    assert lean.offers == full.offers, "offers' redemptions_count and budget_used"
    for index, (mine_rows, their_rows) in enumerate(zip(lean.rows, full.rows, strict=True)):
        assert mine_rows == their_rows, f"redemption rows of code {index}"
    assert lean.events == full.events, "security events"

    # What both paths answer, and how many of the requests the lean path completed.
    said = [(status, body["discount"] if status == 200 else body["code"])
            for status, _, _, body in full.answers]
    assert said == scenario.answers
    assert lean.lean == scenario.lean, "requests the lean path completed"
    # Behind the fast lane it takes every one it can (those without an idempotency key);
    # without it, none.
    fast_lane = request.node.callspec.params["client"] == "fast lane"
    assert all((by == "event loop") == (fast_lane and not keyed) for by, keyed in lean.by)
    if scenario.counts is not None:
        assert full.codes == scenario.counts
    if scenario.offers is not None:
        assert full.offers == scenario.offers
    # Each refusal of a code is one security event; successes and bad input are none.
    refusals = [code for _, code in scenario.answers if code in COUNTED]
    assert [event["refusal"] for event in full.events] == refusals

