"""What the API fuzzer found (schemathesis and a bad-input sweep), each pinned by a test:
out-of-range dates, integers too large for their column, lax booleans and dates, codes that
are not real currencies or time zones, past validity, a card registration race, frozen
weather, the error contract (body errors, authentication first, ``Allow``), security headers,
key expiry, and what a crash logs."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.identity.models import Card
from patron.kit.clock import clock, utcnow
from patron.kit.validation import Flag, Instant, Int32, Int64, audit_input_fields
from tests.api.operations import (
    JSON_WRITES_BY_KEY,
    Objects,
    all_operations,
    caller_key,
    objects_of,
    valid_body,
)
from tests.api.snapshot import changed_tables, snapshot
from tests.concurrency import all_at_once
from tests.conftest import World, auth

LATE = "9999-12-31T23:59:59-05:00"   # year 10000 in UTC
EARLY = "0001-01-01T00:00:00+05:00"  # year 0 in UTC


@pytest.fixture
def objects(client: TestClient, database: Database, world: World) -> Objects:
    return objects_of(client, database, world, world.a)


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    assert body["detail"]
    return body


def _write(client: TestClient, world: World, objects: Objects, key: tuple[str, str],
           body: Any) -> Any:
    op = JSON_WRITES_BY_KEY[key]
    return client.request(op.method, objects.url(op), json=body,
                          headers=auth(caller_key(op, world, world.a)))


# --- dates: ISO 8601 text only, within 1900 … 9998 in UTC, on every path ----------------------

DATED_WRITES = [
    (("POST", "/v1/offers"), "valid_from"), (("POST", "/v1/offers"), "valid_until"),
    (("POST", "/v1/campaigns"), "valid_from"), (("POST", "/v1/campaigns"), "valid_until"),
    (("PUT", "/v1/stores/{store_id}/weather"), "observed_at"),
]


@pytest.mark.parametrize("value", [LATE, EARLY, 0.5, 1700000000, "1700000000"],
                         ids=["year_9999_minus_5h", "year_1_plus_5h", "float", "int",
                              "numeric_text"])
@pytest.mark.parametrize(("key", "field"), DATED_WRITES,
                         ids=[f"{k[1]} {f}" for k, f in DATED_WRITES])
def test_a_date_out_of_range_or_not_iso_is_refused_and_changes_nothing(
        client: TestClient, world: World, database: Database, objects: Objects,
        key: tuple[str, str], field: str, value: Any) -> None:
    body = {**valid_body(JSON_WRITES_BY_KEY[key], objects), field: value}  # type: ignore[dict-item]
    before = snapshot(database)
    problem = _problem(_write(client, world, objects, key, body), 422, "validation_failed")
    assert [error["loc"] for error in problem["errors"]] == [["body", field]]
    assert changed_tables(before, snapshot(database)) == []


def _dated_queries() -> list[tuple[str, str]]:
    return [(op.path, parameter["name"]) for op in all_operations() if op.method == "GET"
            for parameter in op.spec.get("parameters", []) if parameter["in"] == "query"
            and any(s.get("format") == "date-time"
                    for s in parameter["schema"].get("anyOf", [parameter["schema"]]))]


DATED_QUERIES = _dated_queries()


def test_the_dated_query_parameters_are_the_known_ones() -> None:
    assert sorted(DATED_QUERIES) == [
        ("/v1/campaigns/{campaign_id}/results", "until"),
        ("/v1/data-exports", "since"),
        ("/v1/security-events", "since"),
        ("/v1/stores/{store_id}/events", "since"),
        ("/v1/stores/{store_id}/events", "until"),
        ("/v1/stores/{store_id}/visits", "since"),
        ("/v1/stores/{store_id}/visits", "until")]


# The record of exports is the operator's; every other dated list is the merchant's.
OPERATOR_ONLY = {"/v1/data-exports"}


@pytest.mark.parametrize("value", [LATE, EARLY, "0.5", "1700000000"])
@pytest.mark.parametrize(("path", "name"), DATED_QUERIES,
                         ids=[f"{p} {n}" for p, n in DATED_QUERIES])
def test_a_dated_query_parameter_takes_only_an_iso_date_in_range(
        client: TestClient, world: World, objects: Objects, path: str, name: str,
        value: str) -> None:
    url = path.format(**objects.path_ids())
    key = world.operator_key if path in OPERATOR_ONLY else world.a.merchant_key
    good = client.get(url, params={name: utcnow().isoformat()}, headers=auth(key))
    assert good.status_code == 200, good.text
    problem = _problem(client.get(url, params={name: value}, headers=auth(key)), 422,
                       "validation_failed")
    assert [error["loc"] for error in problem["errors"]] == [["query", name]]


# --- every request field: a bounded type, checked when its model is defined ----------------

def test_a_request_model_with_an_unbounded_field_cannot_be_defined() -> None:
    from patron.tenancy.schemas import Strict

    for annotation in (bool, int, datetime, "int | None", "list[int]"):
        with pytest.raises(TypeError, match=r"kit\.validation"):
            type("Loose", (Strict,), {"__annotations__": {"field": annotation},
                                      "__module__": __name__})

    class Bounded(BaseModel):
        flag: Flag
        small: Int32 | None = None
        big: list[Int64] = []
        at: Instant | None = None

    audit_input_fields(Bounded)  # no error


def _integer_leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [path]
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _integer_leaves(item,
                                                                                 (*path, key))]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value)
                for leaf in _integer_leaves(item, (*path, index))]
    return []


def _replaced(body: Any, path: tuple[Any, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(body))
    target = copy
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return copy


INTEGER_CASES = [pytest.param(key, id=f"{key[0]} {key[1]}") for key in JSON_WRITES_BY_KEY]


@pytest.mark.parametrize("key", INTEGER_CASES)
def test_no_integer_overflows_its_column(client: TestClient, world: World, database: Database,
                                         objects: Objects, key: tuple[str, str]) -> None:
    """Every integer of every valid body, at 2^63, 2^31 and -2^63 - 1: refused with a 4xx
    (or, where the column holds it, accepted), never a 500, and a refusal changes nothing."""
    body = valid_body(JSON_WRITES_BY_KEY[key], objects)
    for path in _integer_leaves(body):
        for value in (2**63, -(2**63) - 1, 2**31):
            before = snapshot(database)
            response = _write(client, world, objects, key, _replaced(body, path, value))
            assert response.status_code < 500, (path, value, response.text)
            if response.status_code >= 400:
                assert changed_tables(before, snapshot(database)) == [], (path, value)


def test_an_inventory_quantity_beyond_64_bits_is_refused(client: TestClient, world: World,
                                                         database: Database,
                                                         objects: Objects) -> None:
    key = ("PUT", "/v1/stores/{store_id}/inventory")
    before = snapshot(database)
    problem = _problem(_write(client, world, objects, key, {"items": [
        {"sku": "CR-1", "quantity": 2**63}]}), 422, "validation_failed")
    assert problem["errors"][0]["loc"] == ["body", "items", 0, "quantity"]
    assert changed_tables(before, snapshot(database)) == []
    accepted = _write(client, world, objects, key, {"items": [
        {"sku": "CR-1", "quantity": 2**63 - 1}]})
    assert accepted.status_code == 200, accepted.text


# --- booleans: JSON true / false only -----------------------------------------------------

@pytest.mark.parametrize("value", [0, 1, 0.0, "true", "false", "yes", None])
def test_a_consent_is_given_by_a_json_boolean_only(client: TestClient, world: World,
                                                   database: Database, objects: Objects,
                                                   value: Any) -> None:
    before = snapshot(database)
    key = ("POST", "/v1/members/{member_id}/consents")
    response = _write(client, world, objects, key, {"sms": value, "source": "pos"})
    if value is None:  # null: "no change" for this channel, and the others are absent
        assert response.status_code != 500
        return
    _problem(response, 422, "validation_failed")
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize("value", [0, 1, 0.0, "false"])
def test_require_pin_is_a_json_boolean_only(client: TestClient, world: World,
                                            database: Database, objects: Objects,
                                            value: Any) -> None:
    before = snapshot(database)
    response = client.patch(f"/v1/terminals/{world.a.reader_id}", json={"require_pin": value},
                            headers=auth(world.a.merchant_key))
    _problem(response, 422, "validation_failed")
    assert changed_tables(before, snapshot(database)) == []
    created = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                          json={"code": "pos-9", "kind": "pos", "require_pin": value},
                          headers=auth(world.a.merchant_key))
    _problem(created, 422, "validation_failed")


# --- codes that look right but are not ------------------------------------------------------

MERCHANT = {"number": 77777, "name": "Seventh", "currency": "EUR", "timezone": "Europe/Paris",
            "country": "FR"}


@pytest.mark.parametrize(("field", "value"), [
    ("number", 0), ("currency", "XXX"), ("currency", "XTS"), ("currency", "XAU"),
    ("currency", "XDR"), ("currency", "DEM"), ("timezone", "localtime"),
    ("timezone", "posixrules"), ("timezone", "Factory")])
def test_merchant_codes_must_be_real(client: TestClient, world: World, database: Database,
                                     field: str, value: Any) -> None:
    before = snapshot(database)
    problem = _problem(client.post("/v1/merchants", json={**MERCHANT, field: value},
                                   headers=auth(world.operator_key)), 422, "validation_failed")
    assert [error["loc"] for error in problem["errors"]] == [["body", field]]
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize(("field", "value"), [
    ("number", 1), ("currency", "XOF"), ("currency", "XCD"), ("timezone", "UTC"),
    ("timezone", "America/Argentina/Buenos_Aires")])
def test_real_codes_near_the_refused_ones_are_accepted(client: TestClient, world: World,
                                                       field: str, value: Any) -> None:
    response = client.post("/v1/merchants", json={**MERCHANT, field: value},
                           headers=auth(world.operator_key))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("currency", ["XXX", "XTS"])
def test_a_coalition_offer_in_a_non_currency_is_refused(client: TestClient, world: World,
                                                        database: Database,
                                                        currency: str) -> None:
    before = snapshot(database)
    _problem(client.post("/v1/offers", json={"name": "Off", "kind": "amount_off", "value": 100,
                                             "currency": currency},
                         headers=auth(world.operator_key)), 422, "invalid_offer")
    assert changed_tables(before, snapshot(database)) == []


def test_an_offer_already_ended_is_refused(client: TestClient, world: World,
                                           database: Database) -> None:
    before = snapshot(database)
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    problem = _problem(client.post("/v1/offers", json={
        "name": "Gone", "kind": "amount_off", "value": 100, "valid_until": past},
        headers=auth(world.a.merchant_key)), 422, "invalid_offer")
    assert problem["field"] == "valid_until"
    assert changed_tables(before, snapshot(database)) == []
    future = (utcnow() + timedelta(minutes=1)).isoformat()
    assert client.post("/v1/offers", json={
        "name": "Soon gone", "kind": "amount_off", "value": 100, "valid_until": future},
        headers=auth(world.a.merchant_key)).status_code == 201


def test_a_campaign_already_ended_is_refused(client: TestClient, world: World,
                                             database: Database) -> None:
    campaign = {"name": "Gone", "trigger": "checkout",
                "actions": [{"type": "bonus_points", "points": 10}],
                "valid_until": (utcnow() - timedelta(minutes=1)).isoformat()}
    before = snapshot(database)
    problem = _problem(client.post("/v1/campaigns", json=campaign,
                                   headers=auth(world.a.merchant_key)), 422, "invalid_campaign")
    assert problem["errors"][0]["loc"] == ["body", "valid_until"]
    assert changed_tables(before, snapshot(database)) == []
    campaign["valid_until"] = (utcnow() + timedelta(minutes=1)).isoformat()
    assert client.post("/v1/campaigns", json=campaign,
                       headers=auth(world.a.merchant_key)).status_code == 201


# --- weather from the future ----------------------------------------------------------------

def test_weather_from_the_future_is_refused_and_does_not_freeze_the_store(
        client: TestClient, world: World, database: Database) -> None:
    url = f"/v1/stores/{world.a.store_id}/weather"
    headers = auth(world.a.merchant_key)
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    clock.freeze(now)
    before = snapshot(database)
    problem = _problem(client.put(url, headers=headers, json={
        "condition": "sunny", "observed_at": (now + timedelta(days=365)).isoformat()}),
        422, "observed_at_in_future")
    assert problem["field"] == "observed_at"
    assert changed_tables(before, snapshot(database)) == []
    # Within the clock-skew allowance it is taken; a later observation still replaces it.
    ahead = client.put(url, headers=headers, json={
        "condition": "rain", "observed_at": (now + timedelta(minutes=4)).isoformat()})
    assert ahead.status_code == 200, ahead.text
    clock.freeze(now + timedelta(minutes=10))
    later = client.put(url, headers=headers, json={"condition": "snow"})
    assert later.status_code == 200, later.text
    stored = client.get(url, headers=headers).json()
    assert (stored["condition"], stored["observed_at"]) == (
        "snow", (now + timedelta(minutes=10)).isoformat().replace("+00:00", "Z"))


def test_the_weather_feed_counts_a_future_observation_as_invalid(
        database: Database, world: World) -> None:
    from patron.campaigns.weather_feed import pull

    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

    class Feed:
        name = "test-feed"

        def fetch(self) -> bytes:
            return json.dumps({"observations": [
                {"store_id": world.a.store_id, "condition": "rain",
                 "observed_at": (now + timedelta(days=1)).isoformat()},
                {"store_id": world.b.store_id, "condition": "sunny",
                 "observed_at": now.isoformat()}]}).encode()

    summary = pull(database, Feed(), now)
    assert summary == ("weather feed: 1 observation(s) stored, 0 for unknown stores, "
                       "1 invalid")


# --- a card registered by ten requests at once ----------------------------------------------

@pytest.mark.parametrize("how", ["add", "replace"])
def test_ten_registrations_of_one_new_card_at_once_give_one_card_and_nine_409s(
        client: TestClient, world: World, database: Database, objects: Objects,
        how: str) -> None:
    uid = "04F7799AB8C1D5"
    members = [objects.member_id]
    for index in range(9):
        member = client.post("/v1/members", headers=auth(world.a.merchant_key),
                             json={"email": f"racer{index}@example.com",
                                   "card_uid": f"04A0000000{index:04d}"})
        assert member.status_code == 201, member.text
        members.append(member.json()["id"])
    cards = {member_id: client.get(f"/v1/members/{member_id}/cards",
                                   headers=auth(world.a.merchant_key)).json()["items"][0]["id"]
             for member_id in members}

    def register(index: int) -> Any:
        member_id = members[index]
        if how == "add":
            url, body = f"/v1/members/{member_id}/cards", {"uid": uid}
        else:
            url = f"/v1/members/{member_id}/cards/{cards[member_id]}/replace"
            body = {"uid": uid, "reason": "lost"}
        return client.post(url, json=body, headers=auth(world.a.merchant_key))

    responses = all_at_once(10, register)
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses if r.status_code >= 500]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "card_already_registered"
    with database.session_scope() as session:
        from patron.members.service import card_lookup

        holders = session.scalars(select(Card.member_id).where(
            Card.uid_hash == card_lookup(uid))).all()
        assert len(holders) == 1
        if how == "replace":  # only the winner's old card was blocked
            blocked = session.scalar(select(func.count()).select_from(Card).where(
                Card.status == "blocked"))
            assert blocked == 1


# --- the error contract -----------------------------------------------------------------------

NESTED = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("content", "content_type", "status", "code"), [
    (b'{"email": "caf\xe9@example.com"}', "application/json", 400, "body_not_utf8"),
    (NESTED, "application/json", 400, "body_too_deep"),
    (b'{"email": "caf\xe9@example.com"}', "application/json; charset=latin-1", 415,
     "unsupported_media_type"),
    (b'{"email": "cafe@example.com"}', "application/json; charset=ISO-8859-1", 415,
     "unsupported_media_type"),
], ids=["not_utf8", "nested", "latin1_bytes", "latin1_ascii"])
def test_an_unreadable_body_says_what_to_fix_and_changes_nothing(
        client: TestClient, world: World, database: Database, content: bytes,
        content_type: str, status: int, code: str) -> None:
    before = snapshot(database)
    headers = {**auth(world.a.merchant_key), "Content-Type": content_type}
    problem = _problem(client.post("/v1/members", content=content, headers=headers),
                       status, code)
    assert "UTF-8" in problem["detail"] or "nested" in problem["detail"]
    assert changed_tables(before, snapshot(database)) == []


def test_a_declared_utf8_charset_is_accepted(client: TestClient, world: World) -> None:
    response = client.post("/v1/members", content=json.dumps({"email": "café@example.com"}),
                           headers={**auth(world.a.merchant_key),
                                    "Content-Type": "application/json; charset=UTF-8"})
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("path", "content", "content_type"), [
    ("/v1/members", b'{"phone": 5, "unknown": 1}', "application/json"),
    ("/v1/members", b'{"unterminated', "application/json"),
    ("/v1/members", b'{"email": "\xff"}', "application/json"),
    ("/v1/members", NESTED, "application/json"),
    ("/v1/members", b"{}", "application/json; charset=latin-1"),
    ("/v1/members", b"plain", "text/plain"),
    ("/v1/members/{member_id}/erase", b"{}", "application/json"),
], ids=["invalid", "malformed", "not_utf8", "nested", "latin1", "not_json", "body_not_taken"])
@pytest.mark.parametrize("key", ["none", "unknown"])
def test_without_a_valid_key_a_bad_body_is_401(client: TestClient, database: Database,
                                               objects: Objects, path: str, content: bytes,
                                               content_type: str, key: str) -> None:
    headers = {"Content-Type": content_type}
    if key == "unknown":
        headers.update(auth("ptn_" + "A" * 32))
    before = snapshot(database)
    _problem(client.post(path.format(member_id=objects.member_id), content=content,
                         headers=headers), 401, "unauthenticated")
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("DELETE", "/v1/merchants", "GET, HEAD, POST"),
    ("PUT", "/v1/offers", "GET, HEAD, POST"),
    ("DELETE", "/v1/members/{member_id}", "GET, HEAD, PATCH"),
    ("GET", "/v1/members/{member_id}/pin", "PUT"),
    # A literal path is its own resource, not the template beside it (/v1/vouchers/{code}).
    ("OPTIONS", "/v1/vouchers/validate", "POST"),
])
def test_a_405_names_every_method_of_the_path(client: TestClient, world: World,
                                              objects: Objects, method: str, path: str,
                                              allow: str) -> None:
    response = client.request(method, path.format(member_id=objects.member_id),
                              headers=auth(world.operator_key))
    _problem(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == allow


# --- headers ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v1/members/{member_id}", "/v1/members/{member_id}/export", "/v1/members/{member_id}/cards",
    "/v1/members/{member_id}/balances", "/v1/merchants/{merchant_id}", "/v1/no-such-thing"])
def test_every_v1_answer_is_not_stored_nor_sniffed(client: TestClient, world: World,
                                                   objects: Objects, path: str) -> None:
    response = client.get(path.format(member_id=objects.member_id,
                                      merchant_id=world.a.merchant_id),
                          headers=auth(world.a.merchant_key))
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_identify_and_refusals_carry_the_headers_too(client: TestClient, world: World,
                                                     objects: Objects) -> None:
    for response in (
            client.post("/v1/identify", json={"barcode": objects.member_number},
                        headers=auth(world.a.pos_key)),
            client.post("/v1/identify", json={"barcode": objects.member_number}),
            client.post("/v1/members", content=b"{", headers={
                **auth(world.a.merchant_key), "Content-Type": "application/json"})):
        assert response.headers["Cache-Control"] == "no-store", response.status_code
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"


def test_health_and_the_documents_are_not_sniffed(client: TestClient) -> None:
    for path in ("/health", "/openapi.json"):
        response = client.get(path)
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "Cache-Control" not in response.headers


# --- keys that expire ------------------------------------------------------------------------

def test_a_key_with_an_expiry_stops_working_then(client: TestClient, world: World,
                                                 database: Database) -> None:
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    clock.freeze(now)
    expires = now + timedelta(days=30)
    created = client.post("/v1/keys", headers=auth(world.operator_key), json={
        "role": "merchant", "merchant_id": world.a.merchant_id,
        "expires_at": expires.isoformat()})
    assert created.status_code == 201, created.text
    assert created.json()["expires_at"] == expires.isoformat().replace("+00:00", "Z")
    key = created.json()["key"]
    clock.freeze(expires - timedelta(seconds=1))
    assert client.get("/v1/offers", headers=auth(key)).status_code == 200
    clock.freeze(expires)
    before = snapshot(database)
    _problem(client.get("/v1/offers", headers=auth(key)), 401, "key_expired")
    _problem(client.post("/v1/offers", headers=auth(key), json={
        "name": "x", "kind": "amount_off", "value": 1}), 401, "key_expired")
    assert changed_tables(before, snapshot(database)) == []
    listed = client.get("/v1/keys", headers=auth(world.operator_key)).json()["items"]
    assert [k["expires_at"] for k in listed if k["id"] == created.json()["id"]] == [
        expires.isoformat().replace("+00:00", "Z")]


def test_a_key_cannot_be_created_already_expired(client: TestClient, world: World,
                                                 database: Database) -> None:
    before = snapshot(database)
    problem = _problem(client.post("/v1/keys", headers=auth(world.operator_key), json={
        "role": "merchant", "merchant_id": world.a.merchant_id,
        "expires_at": (utcnow() - timedelta(seconds=1)).isoformat()}),
        422, "invalid_key_expiry")
    assert problem["field"] == "expires_at"
    assert changed_tables(before, snapshot(database)) == []


# --- a crash logs one line: its type, never its parameters --------------------------------

def test_a_500_logs_once_with_the_type_and_no_bound_parameters(
        client: TestClient, world: World, database: Database, objects: Objects,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy.exc import IntegrityError

    from patron.members import service

    secret_phone = "+81 90-8765-4321"

    def crash(*_args: Any, **_kwargs: Any) -> Any:
        raise IntegrityError("INSERT INTO members (phone) VALUES (%(phone)s)",
                             {"phone": secret_phone}, Exception("boom " + secret_phone))

    monkeypatch.setattr(service, "update_member", crash)
    caplog.set_level(logging.DEBUG)
    response = client.patch(f"/v1/members/{objects.member_id}", json={"region": "Kanto"},
                            headers=auth(world.a.merchant_key))
    problem = _problem(response, 500, "internal_error")
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert len(errors) == 1, [record.getMessage() for record in errors]
    [record] = errors
    message = record.getMessage()
    assert message == ("internal error IntegrityError in PATCH /v1/members/{member_id} "
                       f"(request {problem['request_id']})")
    assert record.exc_info is None
    everything = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert secret_phone not in everything and "INSERT INTO" not in everything
    assert secret_phone not in response.text


@pytest.mark.parametrize("value", ["\x00", "A\x00B", "tab\there", "\x7f"])
def test_a_reference_with_a_control_character_is_refused_not_a_crash(
        client: TestClient, world: World, value: str) -> None:
    """Found by the full schemathesis run on PostgreSQL (its text cannot hold NUL): the
    look-up by ``external_ref`` answered 500."""
    answer = client.get("/v1/members", params={"external_ref": value},
                        headers=auth(world.a.merchant_key))
    body = _problem(answer, 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["query", "external_ref"]
