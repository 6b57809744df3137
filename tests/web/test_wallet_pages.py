"""The member's pages (docs/web.md, "The member's wallet"): joining (anonymous, with a
referral link, refused), the wallet after a sale, consents, language, the data export,
deleting the account, devices, and signing in on a second device with a one-time code."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

from sqlalchemy import func, select

from patron.config import get_settings
from patron.db import Database
from patron.kit.crypto import decrypt
from patron.members.access import VERIFICATION_CODE
from patron.members.models import ConsentEvent, Member, MemberDevice, MemberIdentifier
from patron.notify.models import OutboxEvent
from patron.referrals.models import Referral
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.web.people import browser, csrf, join, text_of


def _count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _referral_on(client: Any, database: Database, world: World) -> None:
    client.put(f"/v1/merchants/{world.a.merchant_id}/referral-program",
               headers=auth(world.a.merchant_key),
               json={"active": True, "referrer_points": 100, "referee_points": 50})


def test_joining_anonymously_binds_this_browser_and_keeps_no_personal_data(
        app: Any, database: Database, world: World) -> None:
    joined = join(app, database, world.a.number, language="ja")
    with database.session_scope() as session:
        member = session.get(Member, uuid.UUID(joined.member_id))
        assert member is not None
        assert (member.phone_hash, member.email_hash, member.language) == (None, None, "ja")
        [device] = session.scalars(select(MemberDevice).where(
            MemberDevice.member_id == member.id)).all()
        assert device.source == "join" and device.revoked_at is None
        # The installation id, as a keyed hash: the referral program's device check.
        kinds = session.scalars(select(MemberIdentifier.kind).where(
            MemberIdentifier.member_id == member.id)).all()
    assert kinds == ["device"]
    wallet = joined.client.get("/wallet")
    assert wallet.headers["content-language"] == "ja" and '<html lang="ja">' in wallet.text
    assert "ポイント" in wallet.text


def test_a_referral_link_enrols_with_the_referrers_merchant_and_records_the_referral(
        app: Any, client: Any, database: Database, world: World) -> None:
    _referral_on(client, database, world)
    referrer = join(app, database, world.a.number)
    link = re.search(r'id="referral-link">([^<]+)<', referrer.client.get("/wallet").text)
    assert link
    code = link.group(1).rsplit("ref=", 1)[1]
    friend = browser(app)
    page = friend.get(f"/join?ref={code}")
    assert page.status_code == 200 and f"Merchant {world.a.number}" in page.text
    done = friend.post("/join", data={"csrf_token": csrf(page), "ref": code,
                                      "m": f"{world.a.number:05d}"})
    assert done.url.path == "/wallet"
    with database.session_scope() as session:
        [referral] = session.scalars(select(Referral)).all()
        assert str(referral.referrer_id) == referrer.member_id
    # The same browser cannot enrol a second time with the code.
    again = friend.get(f"/join?ref={code}")
    refused = friend.post("/join", data={"csrf_token": csrf(again), "ref": code})
    assert refused.status_code == 422 and "same wallet device" in text_of(refused)
    assert _count(database, Referral) == 1


def test_a_refused_enrolment_shows_the_reason_at_the_field_and_stores_nothing(
        app: Any, database: Database, world: World) -> None:
    join(app, database, world.a.number, email="taken@example.com")
    before = snapshot(database)
    client = browser(app)
    page = client.get(f"/join?m={world.a.number:05d}")
    refused = client.post("/join", data={"csrf_token": csrf(page), "email": "taken@example.com",
                                         "m": f"{world.a.number:05d}"})
    assert refused.status_code == 422
    assert 'aria-invalid="true"' in refused.text and 'id="e-email"' in refused.text
    assert changed_tables(before, snapshot(database)) == []
    unknown = client.post("/join", data={"csrf_token": csrf(page), "m": "99999"})
    assert unknown.status_code == 422 and 'id="e-m"' in unknown.text


def test_the_wallet_shows_a_sale_made_with_its_qr_code(app: Any, client: Any,
                                                       database: Database, world: World) -> None:
    joined = join(app, database, world.a.number)
    token = re.search(r'data-token="([^"]+)"', joined.client.get("/wallet/card").text)
    assert token
    sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "R-1", "occurred_at": "2026-12-07T10:00:00+09:00", "currency": "JPY",
        "member": {"qr": token.group(1)},
        "lines": [{"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": 600}]})
    assert sale.status_code == 201, sale.text
    earned = sale.json()["points_earned"]
    assert earned > 0
    wallet = text_of(joined.client.get("/wallet"))
    assert f"Merchant {world.a.number} {earned}" in wallet
    assert f"Earned · Merchant {world.a.number} +{earned} pt" in wallet


def test_consent_and_language_are_the_members_own_to_change(
        app: Any, database: Database, world: World) -> None:
    joined = join(app, database, world.a.number)
    wallet = joined.client.get("/wallet")
    on = joined.client.post("/wallet/consents", data={
        "csrf_token": csrf(wallet), "merchant_id": world.a.merchant_id, "channel": "email",
        "granted": "1"})
    assert on.url.path == "/wallet" and "Your choice is saved" in on.text
    with database.session_scope() as session:
        [event] = session.scalars(select(ConsentEvent)).all()
        assert (event.channel, event.purpose, event.granted, event.source,
                str(event.merchant_id)) == ("email", "marketing", True, "wallet",
                                            world.a.merchant_id)
    # Another merchant's scope, where the member has no membership: not theirs to set.
    other = joined.client.post("/wallet/consents", data={
        "csrf_token": csrf(wallet), "merchant_id": world.b.merchant_id, "channel": "email",
        "granted": "1"})
    assert other.status_code == 404 and _count(database, ConsentEvent) == 1
    korean = joined.client.post("/wallet/language", data={"csrf_token": csrf(wallet),
                                                          "language": "ko"})
    assert korean.headers["content-language"] == "ko"
    with database.session_scope() as session:
        assert session.get(Member, uuid.UUID(joined.member_id)).language == "ko"


def test_deleting_the_account_erases_the_member_and_signs_every_device_out(
        app: Any, database: Database, world: World) -> None:
    joined = join(app, database, world.a.number, email="gone@example.com")
    wallet = joined.client.get("/wallet")
    unconfirmed = joined.client.post("/wallet/delete", data={"csrf_token": csrf(wallet)})
    assert unconfirmed.url.path == "/wallet"
    gone = joined.client.post("/wallet/delete", data={"csrf_token": csrf(wallet),
                                                      "confirm": "delete"})
    assert gone.url.path == "/"
    with database.session_scope() as session:
        member = session.get(Member, uuid.UUID(joined.member_id))
        assert member is not None and member.status == "erased" and member.email_hash is None
    assert _count(database, MemberDevice) == 0
    assert joined.client.get("/wallet", follow_redirects=False).headers["location"] == \
        "/wallet/sign-in"


def _sent_code(database: Database, verification_id: str) -> str:
    with database.session_scope() as session:
        events = session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "member.verification_code")).all()
    [event] = [e for e in events if e.payload["verification_id"] == verification_id]
    sealed = base64.b64decode(event.payload["code_encrypted"])
    return decrypt(get_settings().encryption_key, sealed, context=VERIFICATION_CODE)


def test_a_second_device_signs_in_with_a_code_sent_to_the_members_email(
        app: Any, database: Database, world: World) -> None:
    first = join(app, database, world.a.number, email="hana@example.com")
    second = browser(app)
    page = second.get("/wallet/sign-in")
    # An address of no member gets the same answer, and nothing is sent.
    nobody = second.post("/wallet/sign-in", data={"csrf_token": csrf(page),
                                                  "address": "nobody@example.com"})
    sent = second.post("/wallet/sign-in", data={"csrf_token": csrf(page),
                                                "address": "Hana@Example.com"})
    assert nobody.status_code == sent.status_code == 200
    assert text_of(nobody).replace(" ", "")[:400] == text_of(sent).replace(" ", "")[:400]
    verification_id = re.search(r'name="verification_id" value="([^"]+)"', sent.text)
    assert verification_id
    code = _sent_code(database, verification_id.group(1))
    wrong = second.post("/wallet/sign-in/code", data={
        "csrf_token": csrf(sent), "verification_id": verification_id.group(1),
        "code": "000000" if code != "000000" else "111111", "channel": "email"})
    assert wrong.status_code == 403 and 'id="e-code"' in wrong.text
    signed_in = second.post("/wallet/sign-in/code", data={
        "csrf_token": csrf(sent), "verification_id": verification_id.group(1), "code": code,
        "channel": "email"})
    assert signed_in.url.path == "/wallet"
    assert first.member_number in signed_in.text
    with database.session_scope() as session:
        sources = sorted(session.scalars(select(MemberDevice.source)).all())
    assert sources == ["code", "join"]
    # A code works once.
    third = browser(app)
    third.get("/wallet/sign-in")
    replay = third.post("/wallet/sign-in/code", data={
        "csrf_token": csrf(third.get("/wallet/sign-in")),
        "verification_id": verification_id.group(1), "code": code, "channel": "email"})
    assert replay.status_code == 403


def test_signing_a_device_out_from_another_ends_its_session(
        app: Any, database: Database, world: World) -> None:
    first = join(app, database, world.a.number, email="two@example.com")
    second = browser(app)
    sent = second.post("/wallet/sign-in", data={"csrf_token": csrf(second.get("/wallet/sign-in")),
                                                "address": "two@example.com"})
    verification_id = re.search(r'name="verification_id" value="([^"]+)"', sent.text).group(1)
    second.post("/wallet/sign-in/code", data={
        "csrf_token": csrf(sent), "verification_id": verification_id,
        "code": _sent_code(database, verification_id), "channel": "email"})
    with database.session_scope() as session:
        device_of_second = session.scalars(select(MemberDevice.id).where(
            MemberDevice.source == "code")).one()
    wallet = first.client.get("/wallet")
    done = first.client.post(f"/wallet/devices/{device_of_second}/sign-out",
                             data={"csrf_token": csrf(wallet)})
    assert done.url.path == "/wallet"
    assert second.get("/wallet", follow_redirects=False).status_code == 303
    assert first.client.get("/wallet").status_code == 200


def test_a_device_is_named_by_its_browser_and_system() -> None:
    from patron.web.pages.wallet import device_label

    assert device_label("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36") == \
        "Chrome · Android"
    assert device_label("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                        "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 "
                        "Safari/604.1") == "Safari · iPhone"
    assert device_label("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                        "(KHTML, like Gecko) Chrome/131.0 Safari/537.36 Edg/131.0") == \
        "Edge · Windows"
    assert device_label("curl/8.5") == ""
