"""POST /v1/pos/taps: visits, points once per interval, refusals, and concurrency."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.kit.clock import clock
from patron.ledger.models import JournalEntry, PointLot
from patron.members.models import Membership
from patron.notify.models import OutboxEvent
from patron.operations import service
from patron.operations.models import TapGrant, Visit
from patron.operations.schemas import TapIn
from patron.tenancy.service import authenticate
from tests.api.snapshot import changed_tables, snapshot
from tests.concurrency import all_at_once
from tests.conftest import Tenant, World, auth

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CARD = "04:A1:B2:C3:D4:E5:F6"


@pytest.fixture(autouse=True)
def _frozen() -> None:
    clock.freeze(NOW)


def enrol(client: TestClient, tenant: Tenant, card: str = CARD) -> dict[str, Any]:
    member = client.post("/v1/members", headers=auth(tenant.merchant_key),
                         json={"card_uid": card})
    assert member.status_code == 201, member.text
    body: dict[str, Any] = member.json()
    return body


def tap(client: TestClient, key: str, **body: Any) -> Any:
    return client.post("/v1/pos/taps", headers=auth(key), json={"card_uid": CARD, **body})


def visits(database: Database) -> list[tuple[Any, ...]]:
    with database.session_scope() as session:
        return [tuple(row) for row in session.execute(
            select(Visit.member_id, Visit.terminal_id, Visit.occurred_at, Visit.points_granted,
                   Visit.reason, Visit.tap_id).order_by(Visit.occurred_at, Visit.received_at))]


def tap_entries(database: Database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(JournalEntry)
                              .where(JournalEntry.kind == "tap")) or 0


def tap_events(database: Database) -> list[dict[str, Any]]:
    """The tap.recorded events' payloads, in tap order."""
    with database.session_scope() as session:
        return [event.payload for event in session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == "tap.recorded")
            .order_by(OutboxEvent.occurred_at, OutboxEvent.created_at))]


def test_points_once_per_interval(client: TestClient, world: World, database: Database) -> None:
    member = enrol(client, world.a)
    first = tap(client, world.a.reader_key)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body == {"visit_id": body["visit_id"], "member_id": member["id"],
                    "points_granted": 5, "reason": None, "campaign_points": 0,
                    "points_total": 5, "campaigns": [], "balance": 5,
                    "receipt": {"facility_info": None, "questionnaire_url": None,
                                "consent_prompt": None},
                    "occurred_at": "2026-11-20T09:00:00Z"}

    clock.freeze(NOW + timedelta(minutes=59, seconds=59))
    second = tap(client, world.a.reader_key)
    assert second.status_code == 201, second.text
    assert (second.json()["points_granted"], second.json()["reason"],
            second.json()["balance"]) == (0, "interval", 5)

    clock.freeze(NOW + timedelta(minutes=60))
    third = tap(client, world.a.reader_key)
    assert (third.json()["points_granted"], third.json()["balance"]) == (5, 10)

    member_id, reader = uuid.UUID(member["id"]), uuid.UUID(world.a.reader_id)
    assert visits(database) == [
        (member_id, reader, NOW, 5, None, None),
        (member_id, reader, NOW + timedelta(minutes=59, seconds=59), 0, "interval", None),
        (member_id, reader, NOW + timedelta(minutes=60), 5, None, None)]
    assert tap_entries(database) == 2
    assert len({first.json()["visit_id"], second.json()["visit_id"],
                third.json()["visit_id"]}) == 3

    # One tap.recorded event per visit, granted or not, in the tap's transaction.
    base = {"member_id": member["id"], "merchant_id": world.a.merchant_id,
            "store_id": world.a.store_id, "terminal_id": world.a.reader_id}
    assert tap_events(database) == [
        {**base, "visit_id": first.json()["visit_id"], "points_granted": 5, "reason": None,
         "occurred_at": "2026-11-20T09:00:00+00:00"},
        {**base, "visit_id": second.json()["visit_id"], "points_granted": 0,
         "reason": "interval", "occurred_at": "2026-11-20T09:59:59+00:00"},
        {**base, "visit_id": third.json()["visit_id"], "points_granted": 5, "reason": None,
         "occurred_at": "2026-11-20T10:00:00+00:00"}]
    with database.session_scope() as session:
        assert set(session.execute(select(OutboxEvent.merchant_id, OutboxEvent.member_id)
                                   .where(OutboxEvent.type == "tap.recorded"))) == {
            (uuid.UUID(world.a.merchant_id), member_id)}
        # The two granted taps are earns: each also says so, with the balance after it.
        earned = [(event.payload["visit_id"], event.payload["points"],
                   event.payload["balance_after"], event.payload["source"])
                  for event in session.scalars(
                      select(OutboxEvent).where(OutboxEvent.type == "points.earned")
                      .order_by(OutboxEvent.occurred_at))]
    assert earned == [(first.json()["visit_id"], 5, 5, "tap"),
                      (third.json()["visit_id"], 5, 10, "tap")]


def test_a_given_occurred_at_decides_the_interval(client: TestClient, world: World,
                                                  database: Database) -> None:
    enrol(client, world.a)
    early = (NOW - timedelta(hours=3)).isoformat()
    assert tap(client, world.a.reader_key, occurred_at=early).json()["points_granted"] == 5
    later = tap(client, world.a.reader_key, occurred_at=(NOW - timedelta(hours=2, minutes=1))
                .isoformat())
    assert (later.json()["points_granted"], later.json()["occurred_at"]) == (
        0, "2026-11-20T06:59:00Z")
    assert tap(client, world.a.reader_key).json()["points_granted"] == 5


def test_the_interval_is_a_setting(client: TestClient, world: World,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(get_settings(), "tap_interval_minutes", 5)
    enrol(client, world.a)
    assert tap(client, world.a.reader_key).json()["points_granted"] == 5
    clock.freeze(NOW + timedelta(minutes=4))
    assert tap(client, world.a.reader_key).json()["points_granted"] == 0
    clock.freeze(NOW + timedelta(minutes=5))
    assert tap(client, world.a.reader_key).json()["balance"] == 10


def test_each_reader_counts_its_own_interval(client: TestClient, world: World) -> None:
    enrol(client, world.a)
    second = client.post(f"/v1/stores/{world.a.store_id}/terminals",
                         headers=auth(world.a.merchant_key),
                         json={"code": "reader-2", "kind": "reader", "points_per_tap": 3})
    assert second.status_code == 201, second.text
    assert tap(client, world.a.reader_key).json()["points_granted"] == 5
    other = tap(client, second.json()["api_key"])
    assert (other.json()["points_granted"], other.json()["balance"]) == (3, 8)


def test_a_member_of_another_merchant_joins_by_tapping(client: TestClient, world: World,
                                                       database: Database) -> None:
    member = enrol(client, world.b)
    response = tap(client, world.a.reader_key)
    assert response.status_code == 201, response.text
    assert response.json()["points_granted"] == 5
    with database.session_scope() as session:
        joined = set(session.execute(
            select(Membership.merchant_id, Membership.source)
            .where(Membership.member_id == uuid.UUID(member["id"]))).all())
    assert {merchant for merchant, _ in joined} == {uuid.UUID(world.a.merchant_id),
                                                    uuid.UUID(world.b.merchant_id)}
    assert (uuid.UUID(world.a.merchant_id), "tap") in joined
    # Merchant A now sees the member; a second tap adds no second membership.
    assert client.get(f"/v1/members/{member['id']}",
                      headers=auth(world.a.merchant_key)).status_code == 200
    clock.freeze(NOW + timedelta(hours=2))
    assert tap(client, world.a.reader_key).status_code == 201
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Membership)) == 2


def test_points_expire_by_the_merchants_program(client: TestClient, world: World,
                                                database: Database) -> None:
    program = client.put(f"/v1/merchants/{world.a.merchant_id}/program",
                         headers=auth(world.a.merchant_key),
                         json={"earn_points": 1, "earn_per_amount": 100,
                               "point_value_minor": 1, "expiry_months": 0})
    assert program.status_code == 200, program.text
    enrol(client, world.a)
    assert tap(client, world.a.reader_key).json()["points_granted"] == 5
    with database.session_scope() as session:
        lot = session.scalars(select(PointLot)).one()
    # 20 Nov 18:00 in Tokyo: usable through November, gone at 1 Dec 00:00 Tokyo.
    assert (lot.amount, lot.expires_at) == (5, datetime(2026, 11, 30, 15, 0, tzinfo=UTC))


def test_a_reader_without_points_per_tap_records_the_visit(client: TestClient, world: World,
                                                           database: Database) -> None:
    enrol(client, world.a)
    patched = client.patch(f"/v1/terminals/{world.a.reader_id}",
                           headers=auth(world.a.merchant_key), json={"points_per_tap": 0})
    assert patched.status_code == 200, patched.text
    response = tap(client, world.a.reader_key)
    assert (response.status_code, response.json()["points_granted"],
            response.json()["reason"]) == (201, 0, "no_points_per_tap")
    assert tap_entries(database) == 0
    assert len(visits(database)) == 1
    assert [(e["points_granted"], e["reason"]) for e in tap_events(database)] == [
        (0, "no_points_per_tap")]


def test_a_resent_tap_id_answers_the_first_visit(client: TestClient, world: World,
                                                 database: Database) -> None:
    enrol(client, world.a)
    first = tap(client, world.a.reader_key, tap_id="r1-000017")
    clock.freeze(NOW + timedelta(seconds=30))
    again = tap(client, world.a.reader_key, tap_id="r1-000017")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert len(visits(database)) == 1 and tap_entries(database) == 1
    # The resend is not a new tap: no second event.
    assert [e["visit_id"] for e in tap_events(database)] == [first.json()["visit_id"]]

    enrol(client, world.a, card="04FFEEDDCCBBAA")
    before = snapshot(database)
    other_card = client.post("/v1/pos/taps", headers=auth(world.a.reader_key),
                             json={"card_uid": "04FFEEDDCCBBAA", "tap_id": "r1-000017"})
    assert (other_card.status_code, other_card.json()["code"]) == (409, "tap_id_reused")
    assert changed_tables(before, snapshot(database)) == []


def _refused(client: TestClient, database: Database, key: str, status: int, code: str,
             **body: Any) -> dict[str, Any]:
    before = snapshot(database)
    response = tap(client, key, **body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    assert changed_tables(before, snapshot(database)) == []
    return problem


def test_refusals_change_nothing(client: TestClient, world: World, database: Database) -> None:
    member = enrol(client, world.a)
    _refused(client, database, world.a.reader_key, 404, "card_not_found",
             card_uid="0400000000000001")
    _refused(client, database, world.a.pos_key, 403, "not_a_reader")
    _refused(client, database, world.a.merchant_key, 403, "forbidden")
    _refused(client, database, world.a.reader_key, 422, "occurred_at_in_future",
             occurred_at=(NOW + timedelta(minutes=6)).isoformat())
    _refused(client, database, world.a.reader_key, 422, "occurred_at_too_old",
             occurred_at=(NOW - timedelta(days=31)).isoformat())
    _refused(client, database, world.a.reader_key, 422, "validation_failed",
             occurred_at="2026-11-20T09:00:00")
    _refused(client, database, world.a.reader_key, 422, "validation_failed", points=100)

    cards = client.get(f"/v1/members/{member['id']}/cards", headers=auth(world.a.merchant_key))
    card_id = cards.json()['items'][0]['id']
    blocked = client.post(f"/v1/members/{member['id']}/cards/{card_id}/block",
                          headers=auth(world.a.merchant_key), json={"reason": "lost"})
    assert blocked.status_code == 200, blocked.text
    _refused(client, database, world.a.reader_key, 403, "card_blocked")


def test_a_withdrawn_member_cannot_tap(client: TestClient, world: World,
                                       database: Database) -> None:
    member = enrol(client, world.a)
    withdrawn = client.post(f"/v1/members/{member['id']}/withdraw",
                            headers=auth(world.a.merchant_key))
    assert withdrawn.status_code == 200, withdrawn.text
    _refused(client, database, world.a.reader_key, 410, "member_withdrawn")


def test_a_reader_that_requires_a_pin(client: TestClient, world: World,
                                      database: Database) -> None:
    member = enrol(client, world.a)
    assert client.put(f"/v1/members/{member['id']}/pin", headers=auth(world.a.merchant_key),
                      json={"pin": "2468"}).status_code in (200, 204)
    assert client.patch(f"/v1/terminals/{world.a.reader_id}", headers=auth(world.a.merchant_key),
                        json={"require_pin": True}).status_code == 200
    _refused(client, database, world.a.reader_key, 403, "pin_required")
    assert tap(client, world.a.reader_key, pin="2468").json()["points_granted"] == 5


# --- concurrency (PostgreSQL) ------------------------------------------------------------------

@pytest.mark.postgres
@pytest.mark.slow
def test_20_simultaneous_taps_grant_points_once(client: TestClient, world: World,
                                                database: Database) -> None:
    member = enrol(client, world.a)
    with database.session_scope() as session:
        reader = authenticate(session, key=world.a.reader_key)

    def one_tap(index: int) -> int:
        with database.session_scope() as session:
            return service.record_tap(session, actor=reader, data=TapIn(card_uid=CARD)
                                      ).points_granted

    granted = all_at_once(20, one_tap)
    assert sorted(granted) == [0] * 19 + [5]
    assert len(visits(database)) == 20 and tap_entries(database) == 1
    assert sorted(e["points_granted"] for e in tap_events(database)) == [0] * 19 + [5]
    with database.session_scope() as session:
        grant = session.scalars(select(TapGrant)).one()
        assert (str(grant.member_id), grant.last_granted_at) == (member["id"], NOW)
    assert tap(client, world.a.reader_key).json()["balance"] == 5


@pytest.mark.postgres
@pytest.mark.slow
def test_20_simultaneous_resends_of_one_tap_record_one_visit(client: TestClient, world: World,
                                                             database: Database) -> None:
    enrol(client, world.a)
    with database.session_scope() as session:
        reader = authenticate(session, key=world.a.reader_key)

    def one_tap(index: int) -> tuple[Any, ...]:
        with database.session_scope() as session:
            result = service.record_tap(session, actor=reader,
                                        data=TapIn(card_uid=CARD, tap_id="same"))
            return result.visit_id, result.points_granted

    answers = all_at_once(20, one_tap)
    assert len(set(answers)) == 1 and answers[0][1] == 5
    assert len(visits(database)) == 1 and tap_entries(database) == 1
    assert [e["visit_id"] for e in tap_events(database)] == [str(answers[0][0])]
