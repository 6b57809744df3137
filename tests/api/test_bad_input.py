"""Bad input on every write endpoint gets a 4xx problem+json and changes nothing.

Every POST / PUT / PATCH in the app's own OpenAPI document is sent each kind of bad input,
aimed at real objects with a key that may do the operation, so that the only thing wrong
with the request is the input. ``test_the_valid_request_is_accepted`` proves that: the same
request with a good body succeeds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from tests.api.operations import (
    FORM_MEDIA_TYPE,
    SMS_INBOUND,
    TELEPHONY,
    VALID_BODIES,
    Objects,
    Operation,
    caller_key,
    objects_of,
    resolve,
    valid_body,
    write_operations,
)
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code"}
LIMIT = get_settings().max_body_bytes

WRITES = write_operations()
JSON_WRITES = [op for op in WRITES if op.takes_json]
BODYLESS_WRITES = [op for op in WRITES if op.body_media_type is None]
# The history imports take a file (docs/imports.md).
CSV_WRITES = [op for op in WRITES if op.body_media_type == "text/csv"]
TELEPHONY_OP = next(op for op in WRITES if op.key == TELEPHONY)
SMS_INBOUND_OP = next(op for op in WRITES if op.key == SMS_INBOUND)

# Each kind of bad input, and the (status, code) a JSON endpoint answers with.
JSON_KINDS = {
    "malformed_json": (400, "malformed_json"),
    "wrong_types": (422, "validation_failed"),
    "unknown_fields": (422, "validation_failed"),
    "not_an_object": (422, "validation_failed"),
    "empty_body": (422, "body_required"),
    "wrong_content_type": (415, "unsupported_media_type"),
    "over_1mb": (413, "payload_too_large"),
    "over_1mb_chunked": (413, "payload_too_large"),
}
# An endpoint that takes no body refuses one, whatever it is; no body at all is its good input.
BODYLESS_KINDS = {kind: (422, "body_not_allowed") for kind in JSON_KINDS if kind != "empty_body"}
BODYLESS_KINDS["over_1mb"] = BODYLESS_KINDS["over_1mb_chunked"] = (413, "payload_too_large")


@dataclass
class BadRequest:
    content: bytes | Iterator[bytes]
    content_type: str | None


def _wrong_value(schema: dict[str, Any]) -> Any:
    """A JSON value of a type the property does not allow (nor coerce from)."""
    options = [resolve(s) for s in schema.get("anyOf", [schema])]
    takes_object = any(o.get("type") == "object" or "properties" in o for o in options)
    return "not an object" if takes_object else {"wrong": "type"}


def _chunks(payload: bytes) -> Iterator[bytes]:
    # A generator body goes out chunked, without Content-Length: the limit must hold anyway.
    for start in range(0, len(payload), 65536):
        yield payload[start:start + 65536]


def _oversized(base: dict[str, Any] | None) -> bytes:
    # The good body padded with JSON whitespace: still valid, only one byte too long.
    payload = json.dumps(base or {}).encode()
    return payload + b" " * (LIMIT + 1 - len(payload))


def bad_request(kind: str, op: Operation, objects: Objects) -> BadRequest:
    base = valid_body(op, objects)
    if base is None and op.body_media_type is None:
        base = {}
    json_type = "application/json"
    if kind == "malformed_json":
        return BadRequest(b'{"unterminated": [1, 2', json_type)
    if kind == "wrong_types":
        properties = op.body_schema["properties"] if op.takes_json else {"anything": {}}
        wrong = {name: _wrong_value(schema) for name, schema in properties.items()}
        return BadRequest(json.dumps(wrong).encode(), json_type)
    if kind == "unknown_fields":
        return BadRequest(json.dumps({**(base or {}), "unexpected_field": 1}).encode(),
                          json_type)
    if kind == "not_an_object":
        return BadRequest(json.dumps([base]).encode(), json_type)
    if kind == "empty_body":
        return BadRequest(b"", json_type)
    if kind == "wrong_content_type":
        return BadRequest(json.dumps(base or {"x": 1}).encode(), "text/plain")
    if kind == "over_1mb":
        return BadRequest(_oversized(base), json_type)
    if kind == "over_1mb_chunked":
        return BadRequest(_chunks(_oversized(base)), json_type)
    raise AssertionError(kind)


@pytest.fixture
def objects(client: TestClient, database: Database, world: World) -> Objects:
    return objects_of(client, database, world, world.a)


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"https://patron.dev/problems/{code}"
    assert body["title"] and body["detail"]
    return body


def send(client: TestClient, op: Operation, objects: Objects, key: str,
         request: BadRequest) -> Any:
    headers = auth(key)
    if request.content_type is not None:
        headers["Content-Type"] = request.content_type
    return client.request(op.method, objects.url(op), headers=headers, content=request.content)


# --- every write, every kind of bad input ---------------------------------------------------

CASES = [pytest.param(op, kind, status, code, id=f"{op.id} {kind}")
         for op in JSON_WRITES for kind, (status, code) in JSON_KINDS.items()] + [
    pytest.param(op, kind, status, code, id=f"{op.id} {kind}")
    for op in BODYLESS_WRITES for kind, (status, code) in BODYLESS_KINDS.items()]


@pytest.mark.parametrize(("op", "kind", "status", "code"), CASES)
def test_bad_input_is_refused_and_changes_nothing(client: TestClient, world: World,
                                                  database: Database, objects: Objects,
                                                  op: Operation, kind: str, status: int,
                                                  code: str) -> None:
    request = bad_request(kind, op, objects)
    before = snapshot(database)
    response = send(client, op, objects, caller_key(op, world, world.a), request)
    problem = assert_problem(response, status, code)
    assert changed_tables(before, snapshot(database)) == []
    if kind == "wrong_types" and op.takes_json:
        # Every field is named in the answer, so the client learns all it must fix.
        faulted = {tuple(error["loc"][:2]) for error in problem["errors"]}
        assert faulted == {("body", name) for name in op.body_schema["properties"]}
    if kind == "unknown_fields" and op.takes_json:
        assert problem["errors"] == [{"loc": ["body", "unexpected_field"],
                                      "msg": "Extra inputs are not permitted",
                                      "type": "extra_forbidden"}]


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in JSON_WRITES
                                + BODYLESS_WRITES])
def test_the_valid_request_is_accepted(client: TestClient, world: World, database: Database,
                                       objects: Objects, op: Operation) -> None:
    """The control: with a good body (or none) the very same request succeeds, so the
    refusals above are about the input and nothing else."""
    body = valid_body(op, objects)
    response = client.request(op.method, objects.url(op), json=body,
                              headers=auth(caller_key(op, world, world.a)))
    assert response.status_code == op.success_status, response.text
    assert response.headers["content-type"] == "application/json"


def test_a_body_of_exactly_the_limit_is_accepted(client: TestClient, world: World,
                                                 objects: Objects) -> None:
    op = next(op for op in JSON_WRITES if op.key == ("PATCH", "/v1/members/{member_id}"))
    payload = _oversized(valid_body(op, objects))[:-1]
    assert len(payload) == LIMIT
    response = client.patch(objects.url(op), content=payload,
                            headers={**auth(world.a.merchant_key),
                                     "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["region"] == "Kanto"


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in BODYLESS_WRITES])
def test_where_no_body_is_taken_an_empty_json_object_is_no_body(
        client: TestClient, world: World, database: Database, objects: Objects,
        op: Operation) -> None:
    """Action POSTs (revoke, pause, erase…) take no body and `{}` alike."""
    response = client.request(op.method, objects.url(op), json={},
                              headers=auth(caller_key(op, world, world.a)))
    assert response.status_code == op.success_status, response.text
    assert response.headers["content-type"] == "application/json"


def test_every_write_is_covered() -> None:
    """A new write endpoint fails here until it has a valid body (and so its bad-input
    tests); the form-encoded telephony webhook is tested on its own below."""
    assert {op.key for op in JSON_WRITES} == set(VALID_BODIES)
    assert {op.key for op in WRITES} == ({op.key for op in JSON_WRITES}
                                         | {op.key for op in BODYLESS_WRITES}
                                         | {op.key for op in CSV_WRITES} | {TELEPHONY}
                                         | {SMS_INBOUND})
    assert {op.key for op in CSV_WRITES} == {("POST", "/v1/imports/members"),
                                             ("POST", "/v1/imports/purchases")}
    assert TELEPHONY_OP.body_media_type == FORM_MEDIA_TYPE
    assert SMS_INBOUND_OP.body_media_type == FORM_MEDIA_TYPE
    assert {op.key for op in BODYLESS_WRITES} == {
        ("POST", "/v1/keys/{key_id}/revoke"), ("POST", "/v1/members/{member_id}/withdraw"),
        ("POST", "/v1/members/{member_id}/erase"), ("POST", "/v1/identify/caller-id"),
        ("POST", "/v1/members/{member_id}/pin/unlock"),
        ("POST", "/v1/benefit-rules/{rule_id}/deactivate"),
        ("POST", "/v1/offers/{offer_id}/revoke"),
        ("POST", "/v1/vouchers/reservations/{reservation_id}/release"),
        ("POST", "/v1/campaigns/{campaign_id}/pause"),
        ("POST", "/v1/campaigns/{campaign_id}/resume"),
        ("POST", "/v1/webhook-endpoints/{endpoint_id}/rotate-secret"),
        ("POST", "/v1/webhook-deliveries/{delivery_id}/replay"),
        ("POST", "/v1/deliveries/{delivery_id}/replay")}


# --- the history imports: a CSV file as the body ------------------------------------------

CSV_KINDS: dict[str, tuple[dict[str, str], bytes, int, str]] = {
    "json": ({"content-type": "application/json"}, b'{"external_ref": "X"}', 415,
             "unsupported_media_type"),
    "no_media_type": ({}, b"external_ref\nX\n", 415, "unsupported_media_type"),
    "latin_1": ({"content-type": "text/csv; charset=latin-1"}, b"external_ref\nX\n", 415,
                "unsupported_media_type"),
    "empty": ({"content-type": "text/csv"}, b"", 422, "import_columns"),
    "unknown_column": ({"content-type": "text/csv"}, b"external_ref,shoe_size\nX,42\n", 422,
                       "import_columns"),
    "no_header": ({"content-type": "text/csv"}, b"\xff\xfe\x00garbage\n", 422,
                  "import_columns"),
}


@pytest.mark.parametrize(("op", "kind"), [pytest.param(op, kind, id=f"{op.id} {kind}")
                                          for op in CSV_WRITES for kind in CSV_KINDS])
def test_a_bad_file_is_refused_and_changes_nothing(client: TestClient, world: World,
                                                   database: Database, objects: Objects,
                                                   op: Operation, kind: str) -> None:
    headers, body, status, code = CSV_KINDS[kind]
    before = snapshot(database)
    response = client.post(op.path, content=body,
                           headers={**auth(world.a.merchant_key), **headers})
    assert_problem(response, status, code)
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize("op", [pytest.param(op, id=op.id) for op in CSV_WRITES])
def test_a_file_over_the_import_limit_is_refused(client: TestClient, world: World,
                                                 database: Database, objects: Objects,
                                                 op: Operation) -> None:
    limit = get_settings().max_import_bytes
    before = snapshot(database)
    response = client.post(op.path, content=b"external_ref\nX\n",
                           headers={**auth(world.a.merchant_key), "content-type": "text/csv",
                                    "content-length": str(limit + 1)})
    assert_problem(response, 413, "payload_too_large")
    assert changed_tables(before, snapshot(database)) == []


# --- the signed webhooks: form-encoded, authenticated by signature --------------------------

def _sign(body: bytes, secret: str | None = None) -> str:
    key = (secret or get_settings().telephony_secret).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


# A well-formed call that would identify the member at the waiting register is refused too;
# so is a STOP reply from the member's phone.
GOOD_CALL = b"From=%2B81%2090-1234-5678&To=%2B81356781234&CallSid=CA1"
GOOD_STOP = b"From=%2B81%2090-1234-5678&Body=STOP"
TELEPHONY_KINDS = {kind: (401, "bad_signature") for kind in [*JSON_KINDS, "good_call"]}
TELEPHONY_KINDS["over_1mb"] = TELEPHONY_KINDS["over_1mb_chunked"] = (413, "payload_too_large")
WEBHOOKS = {"telephony": (TELEPHONY_OP, GOOD_CALL), "sms": (SMS_INBOUND_OP, GOOD_STOP)}


@pytest.mark.parametrize(("kind", "status", "code"),
                         [pytest.param(kind, status, code, id=kind)
                          for kind, (status, code) in TELEPHONY_KINDS.items()])
@pytest.mark.parametrize("signature", ["missing", "wrong"])
@pytest.mark.parametrize("webhook", list(WEBHOOKS))
def test_webhook_bad_input_without_a_valid_signature_is_refused(
        client: TestClient, database: Database, objects: Objects, kind: str, status: int,
        code: str, signature: str, webhook: str) -> None:
    op, good = WEBHOOKS[webhook]
    request = (BadRequest(good, FORM_MEDIA_TYPE) if kind == "good_call"
               else bad_request(kind, op, objects))
    headers = {"Content-Type": request.content_type} if request.content_type else {}
    if signature == "wrong":
        headers["X-Patron-Signature"] = _sign(b"some other body")
    before = snapshot(database)
    response = client.post(op.path, headers=headers, content=request.content)
    assert_problem(response, status, code)
    assert changed_tables(before, snapshot(database)) == []


@pytest.mark.parametrize("body", [b"", b"From=&Body=", b"garbage\xff\x00", b'{"From": 1}',
                                  b"From=not-a-number&Body=STOP",
                                  b"From=%2B15550000000&Body=STOP",
                                  b"From=%2B81%2090-1234-5678&Body=hello"],
                         ids=["empty", "blank", "binary", "json", "bad_from", "unknown_from",
                              "not_stop"])
def test_signed_sms_garbage_changes_nothing(client: TestClient, database: Database,
                                            objects: Objects, body: bytes) -> None:
    before = snapshot(database)
    response = client.post("/v1/sms/inbound", content=body, headers={
        "Content-Type": FORM_MEDIA_TYPE,
        "X-Patron-Signature": _sign(body, get_settings().sms_inbound_token)})
    assert response.status_code == 200, response.text
    assert response.json()["consents_withdrawn"] == 0
    assert changed_tables(before, snapshot(database)) == []


def test_the_signed_good_call_is_accepted(client: TestClient, world: World,
                                          database: Database, objects: Objects) -> None:
    """The control for the refusals above: signed, the same call identifies the member."""
    before = snapshot(database)
    response = client.post("/v1/telephony/inbound", content=GOOD_CALL,
                           headers={"Content-Type": FORM_MEDIA_TYPE,
                                    "X-Patron-Signature": _sign(GOOD_CALL)})
    assert response.status_code == 200, response.text
    assert "You are identified at the register" in response.text
    assert changed_tables(before, snapshot(database)) == ["caller_id_waits"]
    wait = client.get(f"/v1/identify/caller-id/{objects.wait_id}", headers=auth(world.a.pos_key))
    assert (wait.json()["status"], wait.json()["member_id"]) == ("matched", objects.member_id)


@pytest.mark.parametrize("body", [b"", b"From=&To=", b"garbage\xff\x00", b'{"From": 1}',
                                  b"From=%2B81%2090-1234-5678&To=not-a-number",
                                  b"From=%2B81%2090-1234-5678&To=%2B15550000000"],
                         ids=["empty", "blank", "binary", "json", "bad_to", "unknown_to"])
def test_signed_telephony_garbage_answers_the_caller_and_changes_nothing(
        client: TestClient, database: Database, objects: Objects, body: bytes) -> None:
    """A signed webhook is the provider's; it always gets something to say to the caller.
    Garbage in it matches no waiting register, and nothing changes."""
    before = snapshot(database)
    response = client.post("/v1/telephony/inbound", content=body,
                           headers={"Content-Type": FORM_MEDIA_TYPE,
                                    "X-Patron-Signature": _sign(body)})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/xml"
    assert "No register is waiting for your call" in response.text
    assert changed_tables(before, snapshot(database)) == []


def test_signed_call_from_an_unreadable_number_resolves_the_wait_as_unknown(
        client: TestClient, world: World, database: Database, objects: Objects) -> None:
    """The register's number is right but the caller ID is not a number (withheld, or
    garbage): the waiting register learns that the caller is unknown; nothing else changes."""
    body = b"From=anonymous&To=%2B81356781234"
    before = snapshot(database)
    response = client.post("/v1/telephony/inbound", content=body,
                           headers={"Content-Type": FORM_MEDIA_TYPE,
                                    "X-Patron-Signature": _sign(body)})
    assert response.status_code == 200, response.text
    assert "could not find your membership" in response.text
    assert changed_tables(before, snapshot(database)) == ["caller_id_waits"]
    wait = client.get(f"/v1/identify/caller-id/{objects.wait_id}", headers=auth(world.a.pos_key))
    assert (wait.json()["status"], wait.json()["member_id"]) == ("unknown_caller", None)
