"""Idempotency-Key: Stripe's rules on every write, by one mechanism (patron.idempotency)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from patron.db import Database
from patron.idempotency import service
from patron.idempotency.errors import IdempotencyKeyInProgress
from patron.idempotency.models import IdempotencyKey
from patron.kit.clock import clock, utcnow
from patron.members.models import Member
from patron.tenancy.models import Merchant
from patron.tenancy.service import authenticate
from tests.conftest import World, auth


def _members(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(Member)) or 0)


def _enrol(client: TestClient, key: str, idempotency_key: str,
           body: dict[str, Any] | None = None) -> Any:
    return client.post("/v1/members", json=body or {"phone": "+81 90-1111-2222"},
                       headers={**auth(key), "Idempotency-Key": idempotency_key})


def test_enrolling_twice_with_one_key_makes_one_member(client: TestClient, world: World,
                                                       database: Database) -> None:
    first = _enrol(client, world.a.merchant_key, "enrol-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = _enrol(client, world.a.merchant_key, "enrol-1")
    assert again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == "application/json"
    assert _members(database) == 1


def test_the_same_key_with_another_body_is_a_conflict(client: TestClient, world: World,
                                                      database: Database) -> None:
    assert _enrol(client, world.a.merchant_key, "enrol-1").status_code == 201
    other = _enrol(client, world.a.merchant_key, "enrol-1", {"phone": "+81 90-3333-4444"})
    assert other.status_code == 409
    assert other.headers["content-type"] == "application/problem+json"
    assert other.json()["code"] == "idempotency_key_reused"
    assert _members(database) == 1


def test_key_order_and_spacing_of_the_body_do_not_matter(client: TestClient,
                                                         world: World) -> None:
    headers = {**auth(world.a.merchant_key), "Idempotency-Key": "k",
               "Content-Type": "application/json"}
    first = client.post("/v1/members", headers=headers,
                        content=b'{"phone": "+81 90-1111-2222", "birth_year": 1980}')
    again = client.post("/v1/members", headers=headers,
                        content=b'{"birth_year":1980,"phone":"+81 90-1111-2222"}')
    assert first.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


def test_keys_are_scoped_per_api_key(client: TestClient, world: World,
                                     database: Database) -> None:
    spare = client.post("/v1/keys", headers=auth(world.operator_key),
                        json={"role": "merchant", "merchant_id": world.a.merchant_id})
    assert spare.status_code == 201
    first = _enrol(client, world.a.merchant_key, "shared")
    second = _enrol(client, spare.json()["key"], "shared", {"phone": "+81 90-5555-6666"})
    assert first.status_code == 201 and second.status_code == 201
    assert "idempotent-replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]
    assert _members(database) == 2


def test_a_refusal_is_replayed_too(client: TestClient, world: World) -> None:
    # 4xx answers are stored: the retry of a refused request is refused alike.
    first = client.post("/v1/merchants", json={"number": 11111, "name": "X"},
                        headers={**auth(world.a.merchant_key), "Idempotency-Key": "m"})
    again = client.post("/v1/merchants", json={"number": 11111, "name": "X"},
                        headers={**auth(world.a.merchant_key), "Idempotency-Key": "m"})
    assert first.status_code in (403, 422)
    assert again.status_code == first.status_code and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "naïve"])
def test_a_malformed_key_is_refused(client: TestClient, world: World, database: Database,
                                    key: str) -> None:
    response = client.post("/v1/members", json={"phone": "+81 90-1111-2222"},
                           headers={**auth(world.a.merchant_key),
                                    "Idempotency-Key": key.encode()})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_idempotency_key"
    assert response.json()["field"] == "Idempotency-Key"
    assert _members(database) == 0


def test_a_server_error_is_not_stored(client: TestClient, world: World, database: Database,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from patron.members import endpoints

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(endpoints.service, "enrol", broken)
        failed = _enrol(client, world.a.merchant_key, "retry-me")
    assert failed.status_code == 500
    assert _rows(database) == []
    retried = _enrol(client, world.a.merchant_key, "retry-me")
    assert retried.status_code == 201 and "idempotent-replayed" not in retried.headers
    assert _members(database) == 1


def _rows(database: Database) -> list[IdempotencyKey]:
    with database.session_scope() as session:
        return list(session.scalars(select(IdempotencyKey)))


def _claim(database: Database, world: World, body: bytes) -> service.Claim:
    with database.read_scope() as session:
        principal = authenticate(session, key=world.a.merchant_key)
    digest = service.request_hash("POST", "/v1/members", "", body)
    claimed = service.claim(database, principal=principal, key="k", digest=digest,
                            now=utcnow(), retention=timedelta(hours=24),
                            encryption_key=b"\0" * 32)
    assert isinstance(claimed, service.Claim)
    return claimed


BODY = b'{"phone": "+81 90-1111-2222"}'


def test_a_retry_while_the_first_runs_is_a_conflict(client: TestClient, world: World,
                                                    database: Database) -> None:
    _claim(database, world, BODY)  # the first request, still running
    response = _enrol(client, world.a.merchant_key, "k")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_progress"
    assert _members(database) == 0


def test_a_claim_abandoned_before_its_work_committed_is_taken_over(
        client: TestClient, world: World, database: Database) -> None:
    _claim(database, world, BODY)  # its process died before committing anything
    clock.freeze(utcnow() + service.LEASE + timedelta(seconds=1))
    response = _enrol(client, world.a.merchant_key, "k")
    assert response.status_code == 201, response.text
    assert _members(database) == 1


def test_a_request_whose_claim_was_taken_over_cannot_commit(world: World,
                                                            database: Database) -> None:
    slow = _claim(database, world, BODY)
    clock.freeze(utcnow() + service.LEASE + timedelta(seconds=1))
    _claim(database, world, BODY)  # a retry takes the claim over
    with pytest.raises(IdempotencyKeyInProgress), database.session_scope() as session:
        session.execute(update(Merchant).values(name="the slow request's work"))
        service.mark_committed(session, slow)
    with database.session_scope() as session:
        assert "the slow request's work" not in session.scalars(select(Merchant.name)).all()


def test_work_committed_without_a_stored_answer_is_never_done_twice(
        client: TestClient, world: World, database: Database) -> None:
    claim = _claim(database, world, BODY)
    with database.session_scope() as session:  # the work commits, then the process dies
        service.mark_committed(session, claim)
    clock.freeze(utcnow() + service.LEASE + timedelta(seconds=1))
    response = _enrol(client, world.a.merchant_key, "k")
    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_answer_lost"
    assert _members(database) == 0


def test_keys_are_kept_a_day_then_purged(client: TestClient, world: World,
                                         database: Database) -> None:
    assert _enrol(client, world.a.merchant_key, "day").status_code == 201
    clock.freeze(utcnow() + timedelta(hours=23, minutes=59))
    assert service.purge(database, utcnow()) == 0
    assert _enrol(client, world.a.merchant_key, "day").headers["idempotent-replayed"] == "true"
    clock.freeze(utcnow() + timedelta(minutes=2))
    assert service.purge(database, utcnow()) == 1
    assert _rows(database) == []


def test_an_expired_key_not_yet_purged_is_free_again(client: TestClient, world: World,
                                                     database: Database) -> None:
    assert _enrol(client, world.a.merchant_key, "day").status_code == 201
    clock.freeze(utcnow() + timedelta(hours=24, minutes=1))
    again = _enrol(client, world.a.merchant_key, "day", {"phone": "+81 90-7777-8888"})
    assert again.status_code == 201 and "idempotent-replayed" not in again.headers
    assert _members(database) == 2


def test_stored_answers_are_encrypted(client: TestClient, world: World,
                                      database: Database) -> None:
    response = _enrol(client, world.a.merchant_key, "pii", {"email": "someone@example.com"})
    assert response.status_code == 201
    [row] = _rows(database)
    assert row.response_body is not None and b"someone@example.com" not in row.response_body
    assert row.tenant_id == uuid.UUID(world.a.merchant_id)


def test_without_a_key_nothing_is_kept(client: TestClient, world: World,
                                       database: Database) -> None:
    assert client.post("/v1/members", json={}, headers=auth(world.a.merchant_key)
                       ).status_code == 201
    assert _rows(database) == []


def test_a_method_or_path_no_route_takes_is_answered_by_the_app_not_the_key(
        client: TestClient, world: World, database: Database) -> None:
    """The key of a POST sent again with PUT, or to a path nobody serves: 405 and 404 as
    without a key, and nothing claimed (schemathesis sends exactly this)."""
    headers = {**auth(world.a.merchant_key), "Idempotency-Key": "enrol-1"}
    assert _enrol(client, world.a.merchant_key, "enrol-1").status_code == 201
    assert len(_rows(database)) == 1
    wrong_method = client.put("/v1/members", json={"phone": "+81 90-1111-2222"},
                              headers=headers)
    assert wrong_method.status_code == 405, wrong_method.text
    assert set(wrong_method.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD",
                                                                              "POST"}
    nowhere = client.post("/v1/no-such-thing", json={}, headers={
        **auth(world.a.merchant_key), "Idempotency-Key": "other"})
    assert nowhere.status_code == 404, nowhere.text
    assert len(_rows(database)) == 1
