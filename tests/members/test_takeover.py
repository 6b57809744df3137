"""Another merchant's till cannot take a member over (issue: "any merchant's till can take
over another merchant's member"), and a till changes a member only with the member there."""

from __future__ import annotations

import base64

from sqlalchemy import select

from patron.config import get_settings
from patron.kit.crypto import decrypt
from patron.members.access import VERIFICATION_CODE
from patron.notify.models import OutboxEvent
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import auth
from tests.identity.test_identify import assert_problem

PHONE = "+81 90-1111-2222"
CARD = "04A2246AB35C80"


def _victim(client, world):
    enrolled = client.post("/v1/members", headers=auth(world.a.merchant_key), json={
        "phone": PHONE, "email": "victim@example.com", "card_uid": CARD, "pin": "1357"})
    assert enrolled.status_code == 201, enrolled.text
    return enrolled.json()


def _zero_sale(client, key, member_number, receipt_no="B-0"):
    return client.post("/v1/pos/transactions", headers=auth(key), json={
        "receipt_no": receipt_no, "occurred_at": "2026-12-01T10:00:00+00:00",
        "currency": "USD", "member": {"barcode": member_number},
        "lines": [{"sku": "X", "name": "Nothing", "quantity": 1, "unit_price": 0}],
        "channel": "store"})


def test_a_sale_at_another_merchants_till_gives_no_hold_over_the_member(client, world,
                                                                          database):
    victim = _victim(client, world)
    member_id = victim["id"]
    b_pos = auth(world.b.pos_key)
    found = client.post("/v1/identify", headers=b_pos,
                        json={"barcode": victim["member_number"]})
    assert found.status_code == 200 and found.json()["known_here"] is False
    assert _zero_sale(client, world.b.pos_key, victim["member_number"]).status_code == 201
    cards = client.get(f"/v1/members/{member_id}/cards", headers=b_pos).json()["items"]

    before = snapshot(database)
    attempts = [
        client.get(f"/v1/members/{member_id}/export", headers=b_pos),
        client.patch(f"/v1/members/{member_id}", headers=b_pos,
                     json={"phone": "+81 80-9999-0000"}),
        client.put(f"/v1/members/{member_id}/pin", headers=b_pos, json={"pin": "0000"}),
        client.post(f"/v1/members/{member_id}/cards", headers=b_pos,
                    json={"uid": "04FFEEDDCCBBAA"}),
        client.post(f"/v1/members/{member_id}/cards/{cards[0]['id']}/block", headers=b_pos,
                    json={"reason": "lost"}),
        client.post(f"/v1/members/{member_id}/consents", headers=b_pos,
                    json={"sms": True, "email": True}),
        client.get(f"/v1/members/{member_id}/qr-token", headers=b_pos),
        # B's own staff fare no better than its till.
        client.get(f"/v1/members/{member_id}/export", headers=auth(world.b.merchant_key)),
        client.patch(f"/v1/members/{member_id}", headers=auth(world.b.merchant_key),
                     json={"email": "thief@example.com"}),
    ]
    assert [r.status_code for r in attempts] == [403] * len(attempts), \
        [r.text for r in attempts]
    assert changed_tables(before, snapshot(database)) == []

    # B's keys read the member without the personal attributes.
    read = client.get(f"/v1/members/{member_id}", headers=b_pos).json()
    assert read["phone_masked"] is None and read["email_masked"] is None
    # The victim's real phone still finds them at their own merchant's till.
    again = client.post("/v1/identify", headers=auth(world.a.pos_key), json={"phone": PHONE})
    assert again.status_code == 200 and again.json()["member_id"] == member_id


def test_terminal_keys_never_export_erase_or_withdraw_even_their_own_members(client, world,
                                                                             database):
    member_id = _victim(client, world)["id"]
    before = snapshot(database)
    for key in (world.a.pos_key, world.a.reader_key):
        for method, path in (("GET", "export"), ("POST", "erase"), ("POST", "withdraw")):
            response = client.request(method, f"/v1/members/{member_id}/{path}",
                                      headers=auth(key))
            assert_problem(response, 403, "forbidden")
    assert changed_tables(before, snapshot(database)) == []


def _sent_code(database, verification_id: str) -> str:
    with database.session_scope() as session:
        events = session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "member.verification_code")).all()
    [event] = [e for e in events if e.payload["verification_id"] == verification_id]
    sealed = base64.b64decode(event.payload["code_encrypted"])
    return decrypt(get_settings().encryption_key, sealed, context=VERIFICATION_CODE)


def test_a_one_time_code_to_the_members_phone_proves_them_present_once(client, world,
                                                                       database):
    victim = _victim(client, world)
    member_id = victim["id"]
    assert _zero_sale(client, world.b.pos_key, victim["member_number"]).status_code == 201
    b_pos = auth(world.b.pos_key)
    sent = client.post(f"/v1/members/{member_id}/verification-codes", headers=b_pos,
                       json={"channel": "sms"})
    assert sent.status_code == 201, sent.text
    assert sent.json()["sent_to"] == "+81********22"
    verification_id = sent.json()["verification_id"]
    code = _sent_code(database, verification_id)
    # The code is kept only as a keyed hash.
    with database.engine.connect() as connection:
        stored = connection.exec_driver_sql(
            "SELECT code_hash FROM member_verifications").scalar_one()
    assert code not in stored

    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    refused = client.post(f"/v1/members/{member_id}/consents", headers=b_pos, json={
        "sms": True, "proof": {"verification_id": verification_id, "code": wrong}})
    assert_problem(refused, 403, "verification_code_incorrect")
    assert refused.json()["attempts_left"] == 4

    granted = client.post(f"/v1/members/{member_id}/consents", headers=b_pos, json={
        "sms": True, "proof": {"verification_id": verification_id, "code": code}})
    assert granted.status_code == 200, granted.text
    assert granted.json()["current"]["sms"] is True
    # Once only.
    replay = client.post(f"/v1/members/{member_id}/consents", headers=b_pos, json={
        "email": True, "proof": {"verification_id": verification_id, "code": code}})
    assert_problem(replay, 403, "verification_code_incorrect")


def test_a_code_stops_after_five_wrong_attempts(client, world, database):
    member_id = _victim(client, world)["id"]
    a_pos = auth(world.a.pos_key)
    verification_id = client.post(f"/v1/members/{member_id}/verification-codes",
                                  headers=a_pos, json={"channel": "email"}).json()[
        "verification_id"]
    code = _sent_code(database, verification_id)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for left in (4, 3, 2, 1, 0):
        response = client.patch(f"/v1/members/{member_id}", headers=a_pos, json={
            "region": "Kanto", "proof": {"verification_id": verification_id, "code": wrong}})
        assert_problem(response, 403, "verification_code_incorrect")
        assert response.json()["attempts_left"] == left
    right = client.patch(f"/v1/members/{member_id}", headers=a_pos, json={
        "region": "Kanto", "proof": {"verification_id": verification_id, "code": code}})
    assert_problem(right, 403, "verification_code_incorrect")
    assert client.get(f"/v1/members/{member_id}",
                      headers=a_pos).json()["region"] is None


def test_a_wrong_pin_as_proof_counts_towards_the_lock(client, world):
    member_id = _victim(client, world)["id"]
    a_pos = auth(world.a.pos_key)
    for _ in range(4):
        wrong = client.put(f"/v1/members/{member_id}/pin", headers=a_pos,
                           json={"pin": "0000", "proof": {"pin": "9999"}})
        assert_problem(wrong, 403, "pin_incorrect")
    locked = client.put(f"/v1/members/{member_id}/pin", headers=a_pos,
                        json={"pin": "0000", "proof": {"pin": "9999"}})
    assert_problem(locked, 423, "pin_locked")
    # Even the right PIN waits for the lock to end.
    assert_problem(client.put(f"/v1/members/{member_id}/pin", headers=a_pos,
                              json={"pin": "0000", "proof": {"pin": "1357"}}), 423, "pin_locked")


def test_codes_per_member_are_limited(client, world):
    member_id = _victim(client, world)["id"]
    a_pos = auth(world.a.pos_key)
    for _ in range(5):
        assert client.post(f"/v1/members/{member_id}/verification-codes", headers=a_pos,
                           json={"channel": "sms"}).status_code == 201
    limited = client.post(f"/v1/members/{member_id}/verification-codes", headers=a_pos,
                          json={"channel": "sms"})
    assert_problem(limited, 429, "too_many_verification_codes")
    assert limited.headers["Retry-After"] == "3600"


def test_a_member_without_a_phone_cannot_get_a_code_by_sms(client, world):
    anonymous = client.post("/v1/members", headers=auth(world.a.pos_key), json={}).json()
    response = client.post(f"/v1/members/{anonymous['id']}/verification-codes",
                           headers=auth(world.a.pos_key), json={"channel": "sms"})
    assert_problem(response, 409, "no_channel_for_code")


def test_proof_takes_a_pin_or_a_code_not_both(client, world):
    member_id = _victim(client, world)["id"]
    for proof in ({}, {"pin": "1357", "code": "123456"}, {"code": "123456"}):
        response = client.patch(f"/v1/members/{member_id}", headers=auth(world.a.pos_key),
                                json={"region": "Kanto", "proof": proof})
        assert response.status_code == 422, (proof, response.text)


def test_every_export_is_recorded_and_listed_for_the_operator(client, world):
    member_id = _victim(client, world)["id"]
    assert client.get(f"/v1/members/{member_id}/export",
                      headers=auth(world.a.merchant_key)).status_code == 200
    assert client.get(f"/v1/members/{member_id}/export",
                      headers=auth(world.operator_key)).status_code == 200
    listed = client.get("/v1/data-exports", headers=auth(world.operator_key),
                        params={"member_id": member_id, "limit": 1})
    assert listed.status_code == 200, listed.text
    first = listed.json()
    assert [item["actor_role"] for item in first["items"]] == ["operator"]
    second = client.get("/v1/data-exports", headers=auth(world.operator_key),
                        params={"member_id": member_id, "cursor": first["next_cursor"]})
    assert [item["actor_role"] for item in second.json()["items"]] == ["merchant"]
    assert second.json()["items"][0]["actor_merchant_id"] == world.a.merchant_id
    assert second.json()["next_cursor"] is None
    for key in (world.a.merchant_key, world.a.pos_key):
        assert_problem(client.get("/v1/data-exports", headers=auth(key)), 403, "forbidden")
