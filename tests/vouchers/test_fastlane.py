"""The register's fast lane (``patron.vouchers.fastlane``): what it leaves to the app and
how, and what it answers itself when something unexpected fails. That it answers the
common case like the endpoint is ``test_direct.py``'s differential test, run through it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from starlette.types import Message

from patron.app import create_app, with_fast_lane
from patron.config import get_settings
from patron.db import Database
from patron.vouchers import direct, fastlane
from tests.conftest import World, auth
from tests.vouchers.conftest import make_codes, make_offer

pytestmark = pytest.mark.postgres


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which path completed each redemption: "event loop" (the lane) or "thread"."""
    seen: list[str] = []
    raw, threaded = direct.redeem_raw, direct.redeem

    async def spy_raw(*args: Any, **kwargs: Any) -> str:
        answer = await raw(*args, **kwargs)
        seen.append("event loop")
        return answer

    def spy(*args: Any, **kwargs: Any) -> str:
        answer = threaded(*args, **kwargs)
        seen.append("thread")
        return answer

    monkeypatch.setattr(direct, "redeem_raw", spy_raw)
    monkeypatch.setattr(direct, "redeem", spy)
    return seen


@pytest.fixture
def lane(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(with_fast_lane(app), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def code(lane: TestClient, world: World) -> str:
    offer = make_offer(lane, world.a.merchant_key, kind="amount_off", value=300)
    codes: list[str] = make_codes(lane, world.a.merchant_key, offer["id"], 1)
    return codes[0]


def _redeem(client: TestClient, code: str, key: str | None, **kwargs: Any) -> Any:
    headers = {**(auth(key) if key else {}), **kwargs.pop("headers", {})}
    return client.post(f"/v1/vouchers/{code}/redeem", headers=headers, **kwargs)


def test_the_common_case_is_answered_on_the_event_loop(
        lane: TestClient, world: World, code: str, calls: list[str]) -> None:
    first = _redeem(lane, code, world.a.pos_key, json={})
    again = _redeem(lane, code, world.a.pos_key, json={})
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "application/json"
    assert int(first.headers["content-length"]) == len(first.content)
    assert first.json()["discount"] == 300
    # The second is refused: the lane declines it and the endpoint gives the reason.
    assert again.status_code == 409 and again.json()["code"] == "voucher_already_redeemed"
    assert calls == ["event loop"]


@pytest.mark.parametrize(("case", "request_kwargs", "status", "problem"), [
    ("no key", {"key": None, "json": {}}, 401, None),
    ("not JSON by its media type", {"content": b"{}",
                                    "headers": {"Content-Type": "text/plain"}}, 415, None),
    ("malformed JSON", {"content": b"{", "headers": {"Content-Type": "application/json"}},
     400, None),
    ("not the model", {"json": {"channel": "carrier-pigeon"}}, 422, None),
    ("over the body limit", {"json": {"note": "x" * 2_000_000}}, 413, "payload_too_large"),
])
def test_what_the_lane_does_not_take_the_app_answers(
        lane: TestClient, database: Database, world: World, code: str, calls: list[str],
        case: str, request_kwargs: dict[str, Any], status: int, problem: str | None) -> None:
    key = request_kwargs.pop("key", world.a.pos_key)
    answer = _redeem(lane, code, key, **request_kwargs)
    bare = TestClient(create_app(get_settings(), database), raise_server_exceptions=False)
    with bare:  # an app of its own, without the lane
        expected = _redeem(bare, code, key, **request_kwargs)
    assert (answer.status_code, answer.json()) == (expected.status_code, expected.json())
    assert answer.status_code == status, case
    if problem is not None:
        assert answer.json()["code"] == problem
    assert "event loop" not in calls


def test_an_idempotency_key_goes_to_the_endpoint_and_replays(
        lane: TestClient, world: World, code: str, calls: list[str]) -> None:
    headers = {"Idempotency-Key": "till-7-receipt-1"}
    first = _redeem(lane, code, world.a.pos_key, json={}, headers=headers)
    again = _redeem(lane, code, world.a.pos_key, json={}, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert calls == ["thread"]  # the endpoint's lean path, then its replay


def test_other_routes_and_methods_pass_through(lane: TestClient, world: World, code: str,
                                               calls: list[str]) -> None:
    assert lane.get(f"/v1/vouchers/{code}/redeem",
                    headers=auth(world.a.pos_key)).status_code == 405
    assert lane.get("/health").json()["status"] == "ok"
    validated = lane.post("/v1/vouchers/validate", headers=auth(world.a.pos_key),
                          json={"code": code})
    assert validated.status_code == 200, validated.text
    assert calls == []


def test_an_unexpected_failure_is_a_500_problem_and_nothing_is_retried(
        lane: TestClient, world: World, code: str, calls: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("the connection broke after the write was sent")

    monkeypatch.setattr(direct, "redeem_raw", broken)
    answer = _redeem(lane, code, world.a.pos_key, json={})
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "internal_error"
    assert "connection" not in answer.text
    assert calls == []  # the endpoint did not try again what may have been written


def test_a_database_that_cannot_answer_now_is_a_503_and_nothing_is_retried(
        lane: TestClient, world: World, code: str, calls: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def gone(*args: Any, **kwargs: Any) -> str:
        raise psycopg.OperationalError("consuming input failed: server closed the connection")

    monkeypatch.setattr(direct, "redeem_raw", gone)
    answer = _redeem(lane, code, world.a.pos_key, json={})
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "database_unavailable"
    assert "server closed" not in answer.text
    assert calls == []  # the register retries, not the server: the write may have landed


def test_without_its_pool_the_lane_leaves_everything_to_the_app(
        app: FastAPI, world: World, calls: list[str]) -> None:
    with TestClient(with_fast_lane(app), raise_server_exceptions=False) as client:
        offer = make_offer(client, world.a.merchant_key, kind="amount_off", value=300)
        code = make_codes(client, world.a.merchant_key, offer["id"], 1)[0]
        pool, app.state.raw_pool = app.state.raw_pool, None
        try:
            assert _redeem(client, code, world.a.pos_key, json={}).status_code == 200
        finally:
            app.state.raw_pool = pool
    assert calls == ["thread"]
    assert app.state.raw_pool is None  # closed when the app stopped


def test_a_body_in_several_messages_is_handed_on_as_it_came() -> None:
    """What the lane read is replayed to the app message by message, then the rest."""
    sent: list[Message] = [
        {"type": "http.request", "body": b'{"chan', "more_body": True},
        {"type": "http.request", "body": b'nel": "pos"}', "more_body": False}]

    async def receive() -> Message:
        return sent.pop(0) if sent else {"type": "http.disconnect"}

    async def read_all() -> tuple[bytes | None, list[Message]]:
        messages, body = await fastlane._read_body(receive, 1_000)
        replayed = fastlane._replay(messages, receive)
        return body, [await replayed() for _ in range(3)]

    body, again = asyncio.run(read_all())
    assert body is not None and json.loads(body) == {"channel": "pos"}
    assert [m.get("body") for m in again] == [b'{"chan', b'nel": "pos"}', None]
    assert again[2]["type"] == "http.disconnect"


def test_a_body_over_the_limit_stops_the_reading() -> None:
    sent: list[Message] = [{"type": "http.request", "body": b"x" * 600, "more_body": True},
                           {"type": "http.request", "body": b"x" * 600, "more_body": False}]

    async def receive() -> Message:
        return sent.pop(0)

    messages, body = asyncio.run(fastlane._read_body(receive, 1_000))
    assert body is None and len(messages) == 2 and sent == []


def test_a_repeated_header_is_read_as_the_app_reads_it(
        lane: TestClient, world: World, code: str, calls: list[str]) -> None:
    """The first of two Authorization headers counts, as in Starlette: a bogus first key
    is refused even when a good one follows."""
    answer = lane.post(f"/v1/vouchers/{code}/redeem", json={}, headers=[
        ("Authorization", "Bearer ptn_not_a_key"),
        ("Authorization", f"Bearer {world.a.pos_key}")])
    assert answer.status_code == 401 and calls == []


@pytest.mark.parametrize(("header", "key"), [
    (b"Bearer ptn_abc", "ptn_abc"), (b"bearer ptn_abc", "ptn_abc"), (b"Basic abc", None),
    (b"Bearer", None), (b"Bearer ", None), (None, None)])
def test_the_bearer_key_is_read_as_fastapi_reads_it(header: bytes | None,
                                                    key: str | None) -> None:
    assert fastlane._bearer(header) == key
