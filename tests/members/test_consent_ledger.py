"""The consent ledger per member x scope (a merchant, or the coalition) x channel x purpose,
its current state, and the one decision the delivery worker asks (docs/privacy.md,
"Consent")."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock
from patron.members import consent
from patron.members.consent import ConsentVerdict
from patron.members.models import (
    Channel,
    ConsentEvent,
    CurrentConsent,
    Membership,
    Purpose,
    consent_scope,
)
from tests.api.snapshot import changed_tables, snapshot
from tests.concurrency import all_at_once
from tests.conftest import World, auth

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
PIN = "1357"


def enrol(client: TestClient, key: str, **body: Any) -> str:
    response = client.post("/v1/members", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    member_id: str = response.json()["id"]
    return member_id


def change(client: TestClient, key: str, member_id: str, body: dict[str, Any]) -> Any:
    return client.post(f"/v1/members/{member_id}/consents", headers=auth(key), json=body)


def join(database: Database, member_id: str, merchant_id: str) -> None:
    """A membership with another merchant: its keys then relate to the member."""
    with database.session_scope() as session:
        session.add(Membership(member_id=uuid.UUID(member_id),
                               merchant_id=uuid.UUID(merchant_id), source="test"))


def verdict(database: Database, member_id: str | uuid.UUID, merchant_id: str | uuid.UUID,
            channel: str, purpose: str = "marketing") -> ConsentVerdict:
    with database.read_scope() as session:
        return consent.allows(session, member_id=uuid.UUID(str(member_id)),
                              merchant_id=uuid.UUID(str(merchant_id)), channel=channel,
                              purpose=purpose)


def ledger(database: Database, member_id: str) -> list[tuple[Any, ...]]:
    with database.read_scope() as session:
        return [(event.merchant_id, event.channel, event.purpose, event.granted, event.source,
                 event.policy_version, event.evidence)
                for event in consent.history(session, member_id=uuid.UUID(member_id))]


def states(database: Database, member_id: str) -> list[tuple[Any, ...]]:
    with database.read_scope() as session:
        return [(row.merchant_id, row.channel, row.purpose, row.granted, row.source)
                for row in consent.current(session, member_id=uuid.UUID(member_id))]


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the endpoint ----------------------------------------------------------------------

def test_the_flags_record_marketing_consent_for_the_keys_merchant(
        client: TestClient, world: World, database: Database) -> None:
    member_id = enrol(client, world.a.pos_key)
    a = uuid.UUID(world.a.merchant_id)
    response = change(client, world.a.merchant_key, member_id,
                      {"sms": True, "email": False, "push": None, "source": "web"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["current"] == {"sms": True, "email": False, "push": False}
    assert [(state["scope"], state["merchant_id"], state["channel"], state["purpose"],
             state["granted"], state["source"], state["policy_version"])
            for state in body["states"]] == [
        ("merchant", world.a.merchant_id, "email", "marketing", False, "web", None),
        ("merchant", world.a.merchant_id, "sms", "marketing", True, "web", None)]
    assert [(event["scope"], event["merchant_id"], event["channel"], event["purpose"],
             event["granted"], event["source"], event["policy_version"], event["evidence"])
            for event in body["history"]] == [
        ("merchant", world.a.merchant_id, "sms", "marketing", True, "web", None, None),
        ("merchant", world.a.merchant_id, "email", "marketing", False, "web", None, None)]
    assert ledger(database, member_id) == [(a, "sms", "marketing", True, "web", None, None),
                                           (a, "email", "marketing", False, "web", None, None)]
    # Only A's scope: B (and the coalition) have nothing from it.
    assert verdict(database, member_id, a, "sms") == ConsentVerdict(True, "granted")
    assert verdict(database, member_id, a, "email") == ConsentVerdict(False, "revoked")
    assert verdict(database, member_id, a, "push") == ConsentVerdict(
        False, "no_marketing_consent")
    assert verdict(database, member_id, world.b.merchant_id, "sms") == ConsentVerdict(
        False, "no_marketing_consent")
    read = client.get(f"/v1/members/{member_id}", headers=auth(world.a.merchant_key))
    assert read.json()["consents"] == {"sms": True, "email": False, "push": False}
    # A flag equal to the scope's state records nothing.
    again = change(client, world.a.merchant_key, member_id, {"sms": True, "email": False})
    assert again.status_code == 200, again.text
    assert len(ledger(database, member_id)) == 2


def test_one_change_with_purpose_policy_version_and_evidence(
        client: TestClient, world: World, database: Database) -> None:
    clock.freeze(NOW)
    member_id = enrol(client, world.a.pos_key)
    a = uuid.UUID(world.a.merchant_id)
    response = change(client, world.a.merchant_key, member_id, {
        "channel": "email", "purpose": "marketing", "granted": True, "source": "wallet",
        "policy_version": "2026-01", "evidence": "203.0.113.7"})
    assert response.status_code == 200, response.text
    body = response.json()
    [event_id] = [event["id"] for event in body["history"]]
    assert body["current"] == {"sms": False, "email": True, "push": False}
    assert [{**state, "since": at(state["since"])} for state in body["states"]] == [{
        "scope": "merchant", "merchant_id": world.a.merchant_id, "channel": "email",
        "purpose": "marketing", "granted": True, "source": "wallet",
        "policy_version": "2026-01", "since": NOW}]
    assert [{**event, "occurred_at": at(event["occurred_at"])}
            for event in body["history"]] == [{
        "id": event_id, "scope": "merchant", "merchant_id": world.a.merchant_id,
        "channel": "email", "purpose": "marketing", "granted": True, "source": "wallet",
        "policy_version": "2026-01", "evidence": "203.0.113.7", "occurred_at": NOW}]
    with database.read_scope() as session:
        [row] = consent.current(session, member_id=uuid.UUID(member_id))
        assert (row.scope, row.merchant_id, row.event_id, row.since) == (
            str(a), a, event_id, NOW)
    # A transactional change is its own key; it does not touch marketing.
    transactional = change(client, world.a.merchant_key, member_id, {
        "channel": "email", "purpose": "transactional", "granted": False,
        "source": "api"})
    assert transactional.status_code == 200, transactional.text
    assert states(database, member_id) == [(a, "email", "marketing", True, "wallet"),
                                           (a, "email", "transactional", False, "api")]
    assert verdict(database, member_id, a, "email") == ConsentVerdict(True, "granted")


BAD_BODIES = [
    pytest.param({"sms": True, "channel": "email", "purpose": "marketing", "granted": True},
                 "not both", id="both forms"),
    pytest.param({"email": False, "policy_version": "2026-01"}, "not both",
                 id="flags with a policy version"),
    pytest.param({"push": True, "scope": "coalition"}, "not both", id="flags with a scope"),
    pytest.param({"source": "web"}, "nothing to record", id="neither form"),
    pytest.param({}, "nothing to record", id="empty object"),
    pytest.param({"sms": None, "email": None}, "nothing to record", id="only nulls"),
    pytest.param({"channel": "email", "granted": True}, "give `purpose`",
                 id="change without purpose"),
    pytest.param({"granted": False, "evidence": "msg-1"}, "give `channel`, `purpose`",
                 id="change without channel and purpose"),
    pytest.param({"channel": "fax", "purpose": "marketing", "granted": True}, "channel",
                 id="unknown channel"),
    pytest.param({"channel": "email", "purpose": "spam", "granted": True}, "purpose",
                 id="unknown purpose"),
    pytest.param({"channel": "email", "purpose": "marketing", "granted": "yes"}, "granted",
                 id="granted not a boolean"),
    pytest.param({"channel": "email", "purpose": "marketing", "granted": True,
                  "scope": "everyone"}, "scope", id="scope neither coalition nor an id"),
    pytest.param({"channel": "email", "purpose": "marketing", "granted": True,
                  "evidence": "x" * 501}, "evidence", id="evidence too long"),
]


@pytest.mark.parametrize(("body", "says"), BAD_BODIES)
def test_a_bad_body_is_a_422_that_says_what_to_fix_and_stores_nothing(
        client: TestClient, world: World, database: Database, body: dict[str, Any],
        says: str) -> None:
    member_id = enrol(client, world.a.pos_key)
    before = snapshot(database)
    refused = problem(change(client, world.a.merchant_key, member_id, body), 422,
                      "validation_failed")
    assert says in refused["detail"], refused["detail"]
    assert changed_tables(before, snapshot(database)) == []


# --- the decision ----------------------------------------------------------------------

def test_a_merchants_own_consent_decides_before_the_coalitions_both_ways(
        client: TestClient, world: World, database: Database) -> None:
    member_id = uuid.UUID(enrol(client, world.a.pos_key))
    a, b = uuid.UUID(world.a.merchant_id), uuid.UUID(world.b.merchant_id)
    with database.session_scope() as session:
        for scope, channel, granted, source in (
                (None, "email", True, "wallet"), (a, "email", False, "unsubscribe_link"),
                (None, "sms", False, "stop_reply"), (a, "sms", True, "register")):
            consent.record(session, member_id=member_id, merchant_id=scope, channel=channel,
                           purpose="marketing", granted=granted, source=source)
    # The coalition grants e-mail, A withdrew it: A may not, B (no record of its own) may.
    assert verdict(database, member_id, a, "email") == ConsentVerdict(False, "revoked")
    assert verdict(database, member_id, b, "email") == ConsentVerdict(
        True, "granted_by_coalition")
    # The coalition refuses SMS, A was granted it: A may, B may not.
    assert verdict(database, member_id, a, "sms") == ConsentVerdict(True, "granted")
    assert verdict(database, member_id, b, "sms") == ConsentVerdict(False, "revoked")
    assert verdict(database, member_id, a, "push") == ConsentVerdict(
        False, "no_marketing_consent")
    # What the keys read as current: their merchant's decision; the operator's, the
    # coalition's own scope.
    join(database, str(member_id), world.b.merchant_id)
    for key, current in ((world.a.merchant_key, {"sms": True, "email": False, "push": False}),
                         (world.b.pos_key, {"sms": False, "email": True, "push": False}),
                         (world.operator_key, {"sms": False, "email": True, "push": False})):
        read = client.get(f"/v1/members/{member_id}/consents", headers=auth(key))
        assert read.json()["current"] == current, key


def test_a_withdrawal_of_consent_holds_at_once(client: TestClient, world: World,
                                               database: Database) -> None:
    member_id = uuid.UUID(enrol(client, world.a.pos_key, consents={"email": True}))
    a = uuid.UUID(world.a.merchant_id)
    assert verdict(database, member_id, a, "email") == ConsentVerdict(True, "granted")
    with database.session_scope() as session:
        consent.record(session, member_id=member_id, merchant_id=a, channel="email",
                       purpose="marketing", granted=False, source="unsubscribe_link",
                       evidence="message 5f2c")
        # In the same transaction, before it commits: the next decision already says no.
        assert consent.allows(session, member_id=member_id, merchant_id=a, channel="email",
                              purpose="marketing") == ConsentVerdict(False, "revoked")
    # And through the API, for the next message.
    change(client, world.a.merchant_key, str(member_id), {"email": True})
    assert verdict(database, member_id, a, "email") == ConsentVerdict(True, "granted")
    withdrawn = change(client, world.a.merchant_key, str(member_id),
                       {"channel": "email", "purpose": "marketing", "granted": False,
                        "source": "stop_reply"})
    assert withdrawn.status_code == 200, withdrawn.text
    assert withdrawn.json()["current"]["email"] is False
    assert verdict(database, member_id, a, "email") == ConsentVerdict(False, "revoked")


def test_a_transactional_message_needs_no_marketing_consent(
        client: TestClient, world: World, database: Database) -> None:
    member_id = uuid.UUID(enrol(client, world.a.pos_key))
    a, b = uuid.UUID(world.a.merchant_id), uuid.UUID(world.b.merchant_id)
    with database.session_scope() as session:
        for scope in (None, a):
            consent.record(session, member_id=member_id, merchant_id=scope, channel="sms",
                           purpose="marketing", granted=False, source="stop_reply")
        # Recorded for the record; a receipt or a one-time code still goes.
        consent.record(session, member_id=member_id, merchant_id=a, channel="sms",
                       purpose="transactional", granted=False, source="api")
    for merchant_id in (a, b):
        for channel in Channel:
            assert verdict(database, member_id, merchant_id, channel, "transactional") == \
                ConsentVerdict(True, "transactional")
    assert verdict(database, member_id, a, "sms") == ConsentVerdict(False, "revoked")


def test_a_member_who_left_gets_nothing_and_their_consent_is_withdrawn(
        client: TestClient, world: World, database: Database) -> None:
    member_id = enrol(client, world.a.pos_key, consents={"sms": True, "push": False})
    a = uuid.UUID(world.a.merchant_id)
    operator = change(client, world.operator_key, member_id, {"email": True})
    assert operator.status_code == 200, operator.text
    left = client.post(f"/v1/members/{member_id}/withdraw", headers=auth(world.a.merchant_key))
    assert left.status_code == 200, left.text
    assert left.json()["consents"] == {"sms": False, "email": False, "push": False}
    for purpose in Purpose:
        for channel in Channel:
            assert verdict(database, member_id, a, channel, purpose) == ConsentVerdict(
                False, "member_inactive")
    # Every grant was withdrawn in the ledger; what was not granted stays as it was.
    assert ledger(database, member_id)[3:] == [
        (None, "email", "marketing", False, "withdrawal", None, None),
        (a, "sms", "marketing", False, "withdrawal", None, None)]
    assert states(database, member_id) == [
        (None, "email", "marketing", False, "withdrawal"),
        (a, "push", "marketing", False, "api"), (a, "sms", "marketing", False, "withdrawal")]


def test_erasure_withdraws_every_consent_and_forgets_the_evidence(
        client: TestClient, world: World, database: Database) -> None:
    member_id = enrol(client, world.a.pos_key)
    a = uuid.UUID(world.a.merchant_id)
    granted = change(client, world.a.merchant_key, member_id, {
        "channel": "push", "purpose": "marketing", "granted": True, "source": "wallet",
        "policy_version": "2026-01", "evidence": "device 9f3e, 203.0.113.7"})
    assert granted.status_code == 200, granted.text
    erased = client.post(f"/v1/members/{member_id}/erase", headers=auth(world.a.merchant_key))
    assert erased.status_code == 200, erased.text
    assert ledger(database, member_id) == [
        (a, "push", "marketing", True, "wallet", "2026-01", None),
        (a, "push", "marketing", False, "erasure", None, None)]
    assert verdict(database, member_id, a, "push") == ConsentVerdict(False, "member_inactive")


def test_the_current_state_always_equals_the_replay_of_the_ledger(
        client: TestClient, world: World, database: Database) -> None:
    """Many changes in random order, in every scope, channel and purpose, by the service,
    the endpoint (both forms) and a withdrawal: each key's state is its last ledger row."""
    rng = random.Random(7)
    members = [enrol(client, world.a.pos_key, consents={"sms": True}) for _ in range(3)]
    scopes = [None, uuid.UUID(world.a.merchant_id), uuid.UUID(world.b.merchant_id)]
    start = datetime(2026, 12, 1, tzinfo=UTC)
    for step in range(120):
        member_id = rng.choice(members)
        channel, purpose = rng.choice(list(Channel)), rng.choice(list(Purpose))
        granted = rng.random() < 0.5
        if step % 10 == 3:
            response = change(client, world.a.merchant_key, member_id,
                              {channel.value: granted, "source": "web"})
            assert response.status_code == 200, response.text
        elif step % 10 == 7:
            response = change(client, world.operator_key, member_id, {
                "channel": channel.value, "purpose": purpose.value, "granted": granted,
                "scope": rng.choice(["coalition", world.b.merchant_id]),
                "source": "api", "policy_version": f"v{step}"})
            assert response.status_code == 200, response.text
        else:
            with database.session_scope() as session:
                # Times out of order on purpose: the ledger's order is its id.
                consent.record(session, member_id=uuid.UUID(member_id),
                               merchant_id=rng.choice(scopes), channel=channel,
                               purpose=purpose, granted=granted, source="import",
                               policy_version=rng.choice([None, "2026-01"]),
                               now=start + timedelta(minutes=rng.randint(0, 10_000)))
    left = client.post(f"/v1/members/{members[0]}/withdraw", headers=auth(world.a.merchant_key))
    assert left.status_code == 200, left.text

    with database.read_scope() as session:
        events = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)).all()
        replayed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for event in events:
            replayed[(event.member_id, consent_scope(event.merchant_id), event.channel,
                      event.purpose)] = (event.merchant_id, event.granted, event.source,
                                         event.policy_version, event.occurred_at, event.id)
        stored = {(row.member_id, row.scope, row.channel, row.purpose):
                  (row.merchant_id, row.granted, row.source, row.policy_version, row.since,
                   row.event_id)
                  for row in session.scalars(select(CurrentConsent))}
    assert len(events) > 120
    assert stored == replayed


def test_the_audience_agrees_with_the_single_decision_member_by_member(
        client: TestClient, world: World, database: Database) -> None:
    """A population with every combination of coalition and merchant state (none, granted,
    withdrawn), plus members who left with grants: ``allowed_members`` is exactly the
    members ``allows`` lets through (and ``verdicts`` says what ``allows`` says), for both
    merchants, every channel and purpose."""
    a, b = uuid.UUID(world.a.merchant_id), uuid.UUID(world.b.merchant_id)
    options = (None, True, False)
    combinations = [(coalition_state, merchant_state, other_channel)
                    for coalition_state in options for merchant_state in options
                    for other_channel in (True, False)]
    population = [uuid.UUID(enrol(client, world.a.pos_key)) for _ in combinations]
    with database.session_scope() as session:
        for member_id, (coalition_state, merchant_state, other_channel) in zip(
                population, combinations, strict=True):
            for scope, state in ((None, coalition_state), (a, merchant_state)):
                if state is not None:
                    consent.record(session, member_id=member_id, merchant_id=scope,
                                   channel="email", purpose="marketing",
                                   granted=state, source="import")
            consent.record(session, member_id=member_id,
                           merchant_id=None if other_channel else b, channel="sms",
                           purpose="marketing", granted=other_channel,
                           source="import")
    for ending in ("withdraw", "erase"):
        member_id = uuid.UUID(enrol(client, world.a.pos_key, consents={"email": True}))
        population.append(member_id)
        ended = client.post(f"/v1/members/{member_id}/{ending}",
                            headers=auth(world.a.merchant_key))
        assert ended.status_code == 200, ended.text
        with database.session_scope() as session:  # a grant after leaving decides nothing
            consent.record(session, member_id=member_id, merchant_id=None, channel="email",
                           purpose="marketing", granted=True, source="import")

    seen_reasons: set[str] = set()
    with database.read_scope() as session:
        for merchant_id in (a, b):
            for channel in Channel:
                for purpose in Purpose:
                    answers = {member_id: consent.allows(
                        session, member_id=member_id, merchant_id=merchant_id,
                        channel=channel, purpose=purpose) for member_id in population}
                    seen_reasons.update(answer.reason for answer in answers.values())
                    one_by_one = {member_id for member_id, answer in answers.items()
                                  if answer.allowed}
                    # The batch form answers exactly the same, reasons included.
                    assert consent.verdicts(session, member_ids=population,
                                            merchant_id=merchant_id, channel=channel,
                                            purpose=purpose) == answers
                    audience = consent.allowed_members(
                        session, merchant_id=merchant_id, channel=channel, purpose=purpose)
                    assert set(session.scalars(audience)) == one_by_one, (
                        merchant_id, channel, purpose)
                    some = population[::2]
                    of_some = consent.allowed_members(
                        session, merchant_id=merchant_id, channel=channel, purpose=purpose,
                        member_ids=some)
                    assert set(session.scalars(of_some)) == one_by_one & set(some)
                    counted = session.scalar(select(func.count())
                                             .select_from(audience.subquery()))
                    assert counted == len(one_by_one)
    assert seen_reasons == {reason.value for reason in consent.ConsentReason} - {
        "no_such_member"}


def test_an_unknown_member_is_not_allowed(database: Database, world: World) -> None:
    assert verdict(database, uuid.uuid4(), world.a.merchant_id, "email",
                   "transactional") == ConsentVerdict(False, "no_such_member")


# --- who may ---------------------------------------------------------------------------

def test_a_merchant_records_consent_in_its_own_scope_only(
        client: TestClient, world: World, database: Database) -> None:
    member_id = enrol(client, world.a.pos_key, pin=PIN)
    join(database, member_id, world.b.merchant_id)
    body = {"channel": "email", "purpose": "marketing", "granted": True, "source": "pos"}
    before = snapshot(database)
    attempts = [
        # B's till, with the member proving it, for A's scope.
        (world.b.pos_key, {**body, "scope": world.a.merchant_id, "proof": {"pin": PIN}}),
        # A's own keys, for B's scope or the coalition's.
        (world.a.merchant_key, {**body, "scope": world.b.merchant_id}),
        (world.a.merchant_key, {**body, "scope": "coalition"}),
        (world.a.pos_key, {**body, "scope": "coalition", "proof": {"pin": PIN}}),
    ]
    for key, attempt in attempts:
        refused = problem(change(client, key, member_id, attempt), 403,
                          "consent_scope_not_allowed")
        assert refused["field"] == "scope"
    assert changed_tables(before, snapshot(database)) == []
    # The same till, in its own merchant's scope (named or not), is recorded there.
    for scope in ({}, {"scope": world.b.merchant_id}):
        own = change(client, world.b.pos_key, member_id,
                     {**body, **scope, "proof": {"pin": PIN}})
        assert own.status_code == 200, own.text
    b = uuid.UUID(world.b.merchant_id)
    assert ledger(database, member_id) == [
        (b, "email", "marketing", True, "pos", None, None)] * 2
    # B's till sees the coalition's scope and B's own, not A's.
    assert [state["merchant_id"] for state in own.json()["states"]] == [world.b.merchant_id]


def test_terminal_keys_change_consent_only_as_today(client: TestClient, world: World,
                                                    database: Database) -> None:
    """A till needs the member's proof (the member rules, unchanged); another merchant's
    staff may not change consent at all."""
    member_id = enrol(client, world.a.pos_key, pin=PIN)
    join(database, member_id, world.b.merchant_id)
    before = snapshot(database)
    for key in (world.a.pos_key, world.a.reader_key, world.b.pos_key):
        for body in ({"sms": True}, {"channel": "sms", "purpose": "marketing",
                                     "granted": True}):
            problem(change(client, key, member_id, body), 403, "member_proof_required")
    problem(change(client, world.b.merchant_key, member_id, {"sms": True}), 403,
            "not_home_merchant")
    assert changed_tables(before, snapshot(database)) == []
    with_proof = change(client, world.a.pos_key, member_id,
                        {"sms": True, "source": "pos", "proof": {"pin": PIN}})
    assert with_proof.status_code == 200, with_proof.text
    a = uuid.UUID(world.a.merchant_id)
    assert ledger(database, member_id) == [(a, "sms", "marketing", True, "pos", None, None)]


def test_the_operator_records_the_coalitions_consent_and_any_merchants(
        client: TestClient, world: World, database: Database) -> None:
    member_id = enrol(client, world.a.pos_key)
    a = uuid.UUID(world.a.merchant_id)
    flags = change(client, world.operator_key, member_id, {"push": True, "source": "wallet"})
    assert flags.status_code == 200, flags.text
    assert flags.json()["current"] == {"sms": False, "email": False, "push": True}
    named = change(client, world.operator_key, member_id, {
        "channel": "sms", "purpose": "marketing", "granted": True, "scope": world.a.merchant_id,
        "source": "import", "policy_version": "2025-07"})
    assert named.status_code == 200, named.text
    assert ledger(database, member_id) == [
        (None, "push", "marketing", True, "wallet", None, None),
        (a, "sms", "marketing", True, "import", "2025-07", None)]
    assert [(state["scope"], state["merchant_id"], state["channel"])
            for state in named.json()["states"]] == [("coalition", None, "push"),
                                                     ("merchant", world.a.merchant_id, "sms")]
    # The coalition's grant reaches every merchant without a record of its own.
    assert verdict(database, member_id, world.b.merchant_id, "push") == ConsentVerdict(
        True, "granted_by_coalition")
    before = snapshot(database)
    unknown = change(client, world.operator_key, member_id, {
        "channel": "sms", "purpose": "marketing", "granted": True, "scope": str(uuid.uuid4())})
    problem(unknown, 404, "not_found")
    assert changed_tables(before, snapshot(database)) == []


def test_a_merchant_reads_the_coalitions_scope_and_its_own_not_another_merchants(
        client: TestClient, world: World, database: Database) -> None:
    member_id = enrol(client, world.a.pos_key, consents={"sms": True})
    join(database, member_id, world.b.merchant_id)
    coalition = change(client, world.operator_key, member_id, {
        "channel": "email", "purpose": "marketing", "granted": True, "source": "wallet",
        "evidence": "203.0.113.7"})
    assert coalition.status_code == 200, coalition.text
    seen = client.get(f"/v1/members/{member_id}/consents", headers=auth(world.b.merchant_key))
    assert seen.status_code == 200, seen.text
    body = seen.json()
    assert [(state["scope"], state["channel"]) for state in body["states"]] == [
        ("coalition", "email")]
    # The coalition's evidence is the operator's; B sees the change without it.
    assert [(event["scope"], event["channel"], event["evidence"])
            for event in body["history"]] == [("coalition", "email", None)]
    whole = client.get(f"/v1/members/{member_id}/consents", headers=auth(world.operator_key))
    assert [(event["scope"], event["channel"], event["evidence"])
            for event in whole.json()["history"]] == [("merchant", "sms", None),
                                                      ("coalition", "email", "203.0.113.7")]


# --- concurrency -----------------------------------------------------------------------

@pytest.mark.postgres
def test_concurrent_changes_of_one_consent_leave_the_last_ledger_row(
        client: TestClient, world: World, database: Database) -> None:
    """Threads change the same member x scope x channel x purpose at once, each in its own
    transaction: the state is the ledger's last row, whatever order they committed in."""
    member_id = uuid.UUID(enrol(client, world.a.pos_key))
    a = uuid.UUID(world.a.merchant_id)

    def flip(index: int) -> None:
        for turn in range(10):
            with database.session_scope() as session:
                consent.record(session, member_id=member_id, merchant_id=a, channel="email",
                               purpose="marketing", granted=(index + turn) % 2 == 0,
                               source=f"thread_{index}")

    all_at_once(8, flip)
    with database.read_scope() as session:
        last = session.scalars(select(ConsentEvent).order_by(ConsentEvent.id.desc())
                               .limit(1)).one()
        count = session.scalar(select(func.count()).select_from(ConsentEvent))
        [state] = consent.current(session, member_id=member_id)
    assert count == 80
    assert (state.event_id, state.granted, state.source) == (last.id, last.granted,
                                                              last.source)
