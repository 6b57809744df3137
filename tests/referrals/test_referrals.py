"""The referral program end to end: codes and links, the referee's first qualifying
purchase rewarding both sides once, the fraud checks (self-referral by phone, e-mail,
card or device; the monthly cap; the claw-back on return) and bad input."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import clock
from patron.members.models import Member
from patron.notify.models import OutboxEvent
from patron.referrals.models import Referral
from patron.security.models import SecurityEvent
from patron.vouchers.models import Voucher
from tests.api.snapshot import snapshot
from tests.conftest import World, auth
from tests.pos.conftest import enrol, purchase
from tests.pos.test_returns import balance, give_back
from tests.vouchers.conftest import make_offer

NOW = datetime(2026, 12, 10, 3, 0, tzinfo=UTC)
BIG = [{"sku": "TV-1", "name": "Kettle", "category": "home", "quantity": 1,
        "unit_price": 3000}]
SMALL = [{"sku": "GUM", "name": "Gum", "category": "sweets", "quantity": 1,
          "unit_price": 150}]


def _program(client: TestClient, world: World, **terms: Any) -> dict[str, Any]:
    body = {"referrer_points": 500, "referee_points": 100, "min_purchase_minor": 1000,
            **terms}
    put = client.put(f"/v1/merchants/{world.a.merchant_id}/referral-program",
                     headers=auth(world.a.merchant_key), json=body)
    assert put.status_code == 200, put.text
    program: dict[str, Any] = put.json()
    return program


def _code(client: TestClient, world: World, member: dict[str, Any]) -> str:
    got = client.get(f"/v1/members/{member['id']}/referral",
                     headers=auth(world.a.merchant_key))
    assert got.status_code == 200, got.text
    code: str = got.json()["code"]
    return code


def _buy(client: TestClient, world: World, member: dict[str, Any], receipt: str,
         lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    done = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key),
                       json=purchase(receipt_no=receipt, lines=lines or BIG,
                                     member={"member_id": member["id"]}))
    assert done.status_code == 201, done.text
    answer: dict[str, Any] = done.json()
    return answer


def _kettle_and_mug(kettle_price: int) -> list[dict[str, Any]]:
    """A kettle and a 600 mug: returning the mug takes 600 off the purchase."""
    return [{"sku": "TV-1", "name": "Kettle", "category": "home", "quantity": 1,
             "unit_price": kettle_price},
            {"sku": "MUG", "name": "Mug", "category": "home", "quantity": 1,
             "unit_price": 600}]


def _referrals(database: Database) -> list[Referral]:
    with database.session_scope() as session:
        return list(session.scalars(select(Referral).order_by(Referral.created_at)))


def _referral_offers(answer: dict[str, Any]) -> list[dict[str, Any]]:
    return [offer for offer in answer["offers"] if "referral_id" in offer]


def test_the_first_qualifying_purchase_rewards_both_once(
        client: TestClient, world: World, database: Database) -> None:
    clock.freeze(NOW)
    welcome = make_offer(client, world.a.merchant_key, name="Welcome", value=300)
    _program(client, world, referee_offer_id=welcome["id"])
    referrer = enrol(client, world.a, phone="+81 90-1111-2222")
    shown = client.get(f"/v1/members/{referrer['id']}/referral",
                       headers=auth(world.a.merchant_key)).json()
    assert shown["code"] == _code(client, world, referrer)  # made once, then kept
    assert shown["link"] == f"http://127.0.0.1:8000/join?ref={shown['code']}"
    assert shown["referred_by"] is None
    # Typed loosely: lower case, no hyphen, O for 0 and I for 1.
    typed = shown["code"].replace("-", "").lower().replace("0", "o").replace("1", "i")
    referee = enrol(client, world.a, phone="+81 90-3333-4444", referral_code=typed)
    [pending] = _referrals(database)
    assert (str(pending.referrer_id), str(pending.referee_id), pending.status) == (
        referrer["id"], referee["id"], "pending")

    assert _referral_offers(_buy(client, world, referee, "R-1", SMALL)) == []  # below 1,000
    before = balance(database, world.a.merchant_id, referee["id"])
    answer = _buy(client, world, referee, "R-2")
    [given] = _referral_offers(answer)
    assert given["points"] == 100 and given["voucher"]["offer_id"] == welcome["id"]
    assert balance(database, world.a.merchant_id, referee["id"]) == (
        before + answer["points_earned"] + 100)
    assert balance(database, world.a.merchant_id, referrer["id"]) == 500
    assert _referral_offers(_buy(client, world, referee, "R-3")) == []  # once only
    assert balance(database, world.a.merchant_id, referrer["id"]) == 500

    [rewarded] = _referrals(database)
    assert rewarded.status == "rewarded" and str(rewarded.transaction_id) == answer["id"]
    assert rewarded.referrer_refusal is None
    mine = client.get(f"/v1/members/{referee['id']}/referral",
                      headers=auth(world.a.merchant_key)).json()
    assert mine["referred_by"]["status"] == "rewarded"
    theirs = client.get(f"/v1/members/{referrer['id']}/referral",
                        headers=auth(world.a.merchant_key)).json()
    assert theirs["referrals"] == {"pending": 0, "rewarded": 1, "clawed_back": 0,
                                   "referrer_rewards_this_month": 0}
    with database.session_scope() as session:
        events = session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "referral.rewarded")).all()
        assert sorted(event.payload["role"] for event in events) == ["referee", "referrer"]


def test_self_referral_by_the_same_phone_even_a_former_one(
        client: TestClient, world: World, database: Database) -> None:
    _program(client, world)
    referrer = enrol(client, world.a, phone="+81 90-1111-2222")
    code = _code(client, world, referrer)
    before = snapshot(database)
    refused = client.post("/v1/members", headers=auth(world.a.merchant_key),
                          json={"phone": "+81 90-1111-2222", "referral_code": code})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "self_referral"
    assert "phone number" in refused.json()["detail"]
    assert snapshot(database) == before

    # The referrer moves to a new number; their old one is still theirs for referrals.
    moved = client.patch(f"/v1/members/{referrer['id']}", headers=auth(world.a.merchant_key),
                         json={"phone": "+81 90-5555-6666"})
    assert moved.status_code == 200, moved.text
    again = client.post("/v1/members", headers=auth(world.a.merchant_key),
                        json={"phone": "+81 90-1111-2222", "referral_code": code})
    assert again.json()["code"] == "self_referral"
    # Without the code the old number is free to enrol: only the referral was refused.
    assert client.post("/v1/members", headers=auth(world.a.merchant_key),
                       json={"phone": "+81 90-1111-2222"}).status_code == 201
    with database.session_scope() as session:
        recorded = session.scalars(select(SecurityEvent).where(
            SecurityEvent.refusal == "self_referral")).all()
        assert len(recorded) == 2 and {str(event.member_id) for event in recorded} == {
            referrer["id"]}
        assert session.scalar(select(func.count()).select_from(Referral)) == 0


def test_self_referral_by_the_same_card_e_mail_or_device(
        client: TestClient, world: World, database: Database) -> None:
    _program(client, world)
    referrer = enrol(client, world.a, card_uid="04A1B2C3D4E5F6", email="ann@example.com",
                     device_id="wallet-install-0001")
    code = _code(client, world, referrer)
    for field, value, named in (("card_uid", "04a1b2c3d4e5f6", "card"),
                                ("email", "Ann@Example.com", "e-mail address"),
                                ("device_id", "wallet-install-0001", "wallet device")):
        before = snapshot(database)
        refused = client.post("/v1/members", headers=auth(world.a.merchant_key),
                              json={field: value, "referral_code": code})
        assert refused.status_code == 422, (field, refused.text)
        assert refused.json()["code"] == "self_referral", field
        assert named in refused.json()["detail"]
        assert snapshot(database) == before
    # Another device is another person, as far as the program can tell.
    other = enrol(client, world.a, device_id="wallet-install-0002", referral_code=code)
    assert [str(row.referee_id) for row in _referrals(database)] == [other["id"]]


def test_a_second_enrolment_from_one_wallet_device_under_one_code_is_refused(
        client: TestClient, world: World, database: Database) -> None:
    _program(client, world)
    referrer = enrol(client, world.a, phone="+81 90-1111-2222")
    code = _code(client, world, referrer)
    first = enrol(client, world.a, device_id="wallet-install-0007", referral_code=code)
    before = snapshot(database)
    refused = client.post("/v1/members", headers=auth(world.a.merchant_key),
                          json={"device_id": "wallet-install-0007", "referral_code": code,
                                "email": "second@example.com"})
    assert refused.status_code == 422, refused.text
    assert (refused.json()["code"], refused.json()["field"]) == (
        "referral_device_reused", "referral_code")
    assert snapshot(database) == before  # no member, no referral
    with database.session_scope() as session:
        [recorded] = session.scalars(select(SecurityEvent).where(
            SecurityEvent.refusal == "referral_device_reused")).all()
        assert (recorded.kind, str(recorded.member_id), str(recorded.merchant_id)) == (
            "referral", referrer["id"], world.a.merchant_id)
    assert [str(row.referee_id) for row in _referrals(database)] == [first["id"]]
    listed = client.get("/v1/security-events", headers=auth(world.a.merchant_key))
    assert listed.status_code == 200, listed.text
    assert [event["refusal"] for event in listed.json()["events"]] == [
        "referral_device_reused"]

    # The device may still enrol without the code, and under another member's code.
    other_referrer = enrol(client, world.a, phone="+81 90-7777-8888")
    again = enrol(client, world.a, device_id="wallet-install-0007",
                  referral_code=_code(client, world, other_referrer))
    assert [str(row.referee_id) for row in _referrals(database)] == [first["id"], again["id"]]
    assert client.post("/v1/members", headers=auth(world.a.merchant_key), json={
        "device_id": "wallet-install-0007"}).status_code == 201


def test_a_return_below_the_minimum_claws_both_rewards_back(
        client: TestClient, world: World, database: Database) -> None:
    clock.freeze(NOW)
    welcome = make_offer(client, world.a.merchant_key, name="Welcome", value=300)
    gift = make_offer(client, world.a.merchant_key, name="Thanks", value=500)
    _program(client, world, referee_offer_id=welcome["id"], referrer_offer_id=gift["id"])
    referrer = enrol(client, world.a)
    referee = enrol(client, world.a, referral_code=_code(client, world, referrer))
    sale = _buy(client, world, referee, "R-1", _kettle_and_mug(900))
    assert _referral_offers(sale)
    # 1,500 less 600 is 900: below the minimum of 1,000.
    returned = give_back(client, world.a.pos_key, sale["id"], "RT-2",
                         lines=[{"line_no": 2, "quantity": 1}])
    assert returned.status_code == 201, returned.text
    [referral] = _referrals(database)
    assert returned.json()["referral_clawed_back"] == str(referral.id)
    assert referral.status == "clawed_back"
    assert balance(database, world.a.merchant_id, referrer["id"]) == 0
    # The referee keeps only what the part they kept earns.
    earned_kept = sale["lines"][0]["points_earned"]
    assert balance(database, world.a.merchant_id, referee["id"]) == earned_kept
    with database.session_scope() as session:
        revoked = session.scalars(select(Voucher).where(Voucher.id.in_(
            [referral.referee_voucher_id, referral.referrer_voucher_id]))).all()
        assert len(revoked) == 2 and all(row.revoked_at is not None for row in revoked)
    # Returning the rest changes nothing more for the referral.
    rest = give_back(client, world.a.pos_key, sale["id"], "RT-3")
    assert rest.status_code == 201 and rest.json()["referral_clawed_back"] is None


def test_a_return_that_keeps_the_minimum_keeps_the_rewards(
        client: TestClient, world: World, database: Database) -> None:
    _program(client, world)
    referrer = enrol(client, world.a)
    referee = enrol(client, world.a, referral_code=_code(client, world, referrer))
    sale = _buy(client, world, referee, "R-1", _kettle_and_mug(3000))
    returned = give_back(client, world.a.pos_key, sale["id"], "RT-1",
                         lines=[{"line_no": 2, "quantity": 1}])
    assert returned.status_code == 201 and returned.json()["referral_clawed_back"] is None
    assert [row.status for row in _referrals(database)] == ["rewarded"]
    assert balance(database, world.a.merchant_id, referrer["id"]) == 500


def test_the_monthly_cap_stops_the_referrers_rewards_not_the_referees(
        client: TestClient, world: World, database: Database) -> None:
    clock.freeze(NOW)
    _program(client, world, monthly_cap=2)
    referrer = enrol(client, world.a)
    code = _code(client, world, referrer)
    referees = [enrol(client, world.a, referral_code=code) for _ in range(4)]
    for index, referee in enumerate(referees[:3]):
        assert _referral_offers(_buy(client, world, referee, f"R-{index}"))[0]["points"] == 100
    assert balance(database, world.a.merchant_id, referrer["id"]) == 2 * 500
    assert sorted(str(row.referrer_refusal) for row in _referrals(database)
                  if row.status == "rewarded") == ["None", "None", "monthly_cap_reached"]
    shown = client.get(f"/v1/members/{referrer['id']}/referral",
                       headers=auth(world.a.merchant_key)).json()
    assert shown["referrals"]["referrer_rewards_this_month"] == 2
    # A new month, a new allowance.
    clock.freeze(datetime(2027, 1, 2, 3, 0, tzinfo=UTC))
    _buy(client, world, referees[3], "R-9")
    assert balance(database, world.a.merchant_id, referrer["id"]) == 3 * 500


def test_bad_referral_input_is_refused_and_changes_nothing(
        client: TestClient, world: World, database: Database) -> None:
    referrer = enrol(client, world.a)
    code = _code(client, world, referrer)
    before = snapshot(database)
    no_program = client.post("/v1/members", headers=auth(world.a.merchant_key),
                             json={"referral_code": code})
    assert no_program.json()["code"] == "no_referral_program"
    assert snapshot(database) == before
    _program(client, world)
    other = enrol(client, world.b)
    other_code = client.get(f"/v1/members/{other['id']}/referral",
                            headers=auth(world.b.merchant_key)).json()["code"]
    before = snapshot(database)
    for body, expected in (
            ({"referral_code": "ZZZZZ-ZZZZZ"}, "unknown_referral_code"),
            ({"referral_code": "SHORT"}, "unknown_referral_code"),
            ({"referral_code": "UUUUU-UUUUU"}, "unknown_referral_code"),
            ({"referral_code": other_code}, "unknown_referral_code"),  # merchant B's
            ({"referral_code": ""}, "validation_failed"),
            ({"device_id": "short"}, "validation_failed"),
            ({"device_id": "has space in it"}, "validation_failed")):
        refused = client.post("/v1/members", headers=auth(world.a.merchant_key), json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["code"] == expected, (body, refused.json())
    url = f"/v1/merchants/{world.a.merchant_id}/referral-program"
    for body, expected in (
            ({"referee_offer_id": str(uuid.uuid4())}, "invalid_referral_program"),
            ({"referrer_points": 0, "referee_points": 0}, "invalid_referral_program"),
            ({"referrer_points": -1}, "validation_failed"),
            ({"monthly_cap": -1}, "validation_failed"),
            ({"bogus": 1}, "validation_failed")):
        refused = client.put(url, headers=auth(world.a.merchant_key), json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert refused.json()["code"] == expected, (body, refused.json())
    # Another merchant's program and member are not there for this key.
    assert client.get(f"/v1/merchants/{world.b.merchant_id}/referral-program",
                      headers=auth(world.a.merchant_key)).status_code == 404
    assert client.put(f"/v1/merchants/{world.b.merchant_id}/referral-program",
                      headers=auth(world.a.merchant_key),
                      json={"referee_points": 1}).status_code == 404
    assert client.get(f"/v1/members/{other['id']}/referral",
                      headers=auth(world.a.merchant_key)).status_code == 404
    assert snapshot(database) == before


def test_a_withdrawn_referrers_code_is_unknown_and_earns_nothing(
        client: TestClient, world: World, database: Database) -> None:
    _program(client, world)
    referrer = enrol(client, world.a)
    code = _code(client, world, referrer)
    referee = enrol(client, world.a, referral_code=code)
    withdrawn = client.post(f"/v1/members/{referrer['id']}/withdraw",
                            headers=auth(world.a.merchant_key))
    assert withdrawn.status_code == 200, withdrawn.text
    refused = client.post("/v1/members", headers=auth(world.a.merchant_key),
                          json={"referral_code": code})
    assert refused.json()["code"] == "unknown_referral_code"
    assert _referral_offers(_buy(client, world, referee, "R-1"))[0]["points"] == 100
    [referral] = _referrals(database)
    assert referral.referrer_refusal == "referrer_not_active"
    assert balance(database, world.a.merchant_id, referrer["id"]) == 0


def test_erasure_forgets_the_identifier_history(
        client: TestClient, world: World, database: Database) -> None:
    from patron.members.models import MemberIdentifier

    member = enrol(client, world.a, phone="+81 90-1111-2222", device_id="wallet-install-0009")
    erased = client.post(f"/v1/members/{member['id']}/erase",
                         headers=auth(world.a.merchant_key))
    assert erased.status_code == 200, erased.text
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(MemberIdentifier).where(
            MemberIdentifier.member_id == uuid.UUID(member["id"]))) == 0
        assert session.get(Member, uuid.UUID(member["id"])) is not None



def test_a_referral_security_event_is_listed_and_filtered_by_its_kind(
        client: TestClient, world: World) -> None:
    """The answer matches the schema: `referral` is a kind of the enum and of the filter."""
    _program(client, world)
    referrer = enrol(client, world.a, phone="+81 90-1111-2222")
    code = _code(client, world, referrer)
    refused = client.post("/v1/members", headers=auth(world.a.merchant_key),
                          json={"phone": "+81 90-1111-2222", "referral_code": code})
    assert refused.json()["code"] == "self_referral"
    listed = client.get("/v1/security-events", params={"kind": "referral"},
                        headers=auth(world.a.merchant_key))
    assert listed.status_code == 200, listed.text
    assert [(e["kind"], e["refusal"]) for e in listed.json()["events"]] == [
        ("referral", "self_referral")]
    schema = client.get("/openapi.json").json()
    read = schema["components"]["schemas"]["SecurityEventRead"]["properties"]["kind"]
    kinds = schema["components"]["schemas"][read["$ref"].rsplit("/", 1)[-1]]["enum"]
    assert "referral" in kinds
