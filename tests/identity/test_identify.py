import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest

from patron.kit.clock import clock
from tests.conftest import auth

PHONE = "+81 90-1234-5678"
CARD = "04:A2:24:6A:B3:5C:80"
WEBHOOK_SECRET = "telephony-test-secret"


@pytest.fixture
def member(client, world):
    response = client.post("/v1/members", headers=auth(world.a.pos_key),
                           json={"phone": PHONE, "card_uid": CARD, "language": "ja"})
    assert response.status_code == 201, response.text
    return response.json()


def identify(client, key, **body):
    return client.post("/v1/identify", headers=auth(key), json=body)


def assert_identified(response, member, method):
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["member_id"] == member["id"]
    assert body["member_number"] == member["member_number"]
    assert body["method"] == method


def assert_problem(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


def test_by_member_number(client, world, member):
    assert_identified(identify(client, world.a.pos_key, barcode=member["member_number"]),
                      member, "barcode")


def test_by_fresh_qr_token(client, world, member):
    token = client.get(f"/v1/members/{member['id']}/qr-token",
                       headers=auth(world.a.merchant_key)).json()["token"]
    assert_identified(identify(client, world.a.pos_key, qr=token), member, "qr")


@pytest.mark.parametrize("uid", [CARD, "04a2246ab35c80", "04-A2-24-6A-B3-5C-80"])
def test_by_card_uid(client, world, member, uid):
    assert_identified(identify(client, world.a.reader_key, card_uid=uid), member, "card_uid")


@pytest.mark.parametrize("typed", ["090-1234-5678", "+81 90 1234 5678", "09012345678",
                                   "0081-90-1234-5678", "(090) 1234-5678"])
def test_by_phone_typed_different_ways(client, world, member, typed):
    assert_identified(identify(client, world.a.pos_key, phone=typed), member, "phone")


def test_by_phone_at_a_merchant_in_another_country_needs_the_country_code(
        client, world, member):
    # Merchant b is in the US: a Japanese national number is not a valid US number there.
    assert_problem(identify(client, world.b.pos_key, phone="090-1234-5678"), 422,
                   "invalid_phone")
    found = identify(client, world.b.pos_key, phone="+81 90 1234 5678")
    assert_identified(found, member, "phone")
    assert found.json()["known_here"] is False


def _png_of(client, key, url):
    response = client.get(url, headers=auth(key))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    return base64.b64encode(response.content).decode()


def test_by_png_of_barcode(client, world, member):
    image = _png_of(client, world.a.pos_key, f"/v1/members/{member['id']}/barcode.png")
    assert_identified(identify(client, world.a.pos_key, image=image), member, "image")


def test_by_png_of_qr(client, world, member):
    image = _png_of(client, world.a.merchant_key, f"/v1/members/{member['id']}/qr.png")
    assert_identified(identify(client, world.a.pos_key, image=image), member, "image")


def test_by_data_url_jpeg_photo_of_barcode(client, world, member):
    import io

    from PIL import Image

    png = base64.b64decode(_png_of(client, world.a.pos_key,
                                   f"/v1/members/{member['id']}/barcode.png"))
    photo = Image.new("RGB", (1280, 720), (230, 228, 220))
    with Image.open(io.BytesIO(png)) as code:
        photo.paste(code.convert("RGB"), (300, 200))
    out = io.BytesIO()
    photo.save(out, format="JPEG", quality=85)
    data_url = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode()
    assert_identified(identify(client, world.a.pos_key, image=data_url), member, "image")


def test_svg_images_are_served(client, world, member):
    for name in ("barcode.svg", "qr.svg"):
        response = client.get(f"/v1/members/{member['id']}/{name}",
                              headers=auth(world.a.merchant_key))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert b"<svg" in response.content


def _signed_call(client, caller, called):
    body = urlencode({"From": caller, "To": called, "CallSid": "CA123"}).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return client.post("/v1/telephony/inbound", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Patron-Signature": signature})


def test_by_caller_id_webhook(client, world, member):
    wait = client.post("/v1/identify/caller-id", headers=auth(world.a.pos_key))
    assert wait.status_code == 201, wait.text
    assert wait.json()["status"] == "waiting"
    assert wait.json()["call_number"] == "+81356781234"
    answer = _signed_call(client, "+819012345678", "+81356781234")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/xml")
    assert b"identified" in answer.content
    polled = client.get(f"/v1/identify/caller-id/{wait.json()['id']}",
                        headers=auth(world.a.pos_key))
    assert polled.status_code == 200
    assert polled.json()["status"] == "matched"
    assert polled.json()["member_id"] == member["id"]


def test_caller_id_unknown_caller_and_no_waiting_register(client, world, member):
    no_wait = _signed_call(client, "+819012345678", "+81356781234")
    assert b"No register is waiting" in no_wait.content
    wait = client.post("/v1/identify/caller-id", headers=auth(world.a.pos_key)).json()
    _signed_call(client, "+819099998888", "+81356781234")
    polled = client.get(f"/v1/identify/caller-id/{wait['id']}", headers=auth(world.a.pos_key))
    assert polled.json()["status"] == "unknown_caller"
    assert polled.json()["member_id"] is None


def test_caller_id_wait_expires(client, world, member):
    start = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    clock.freeze(start)
    wait = client.post("/v1/identify/caller-id", headers=auth(world.a.pos_key)).json()
    clock.freeze(start + timedelta(minutes=5))
    answer = _signed_call(client, "+819012345678", "+81356781234")
    assert b"No register is waiting" in answer.content
    polled = client.get(f"/v1/identify/caller-id/{wait['id']}", headers=auth(world.a.pos_key))
    assert polled.json()["status"] == "expired"


def test_caller_id_webhook_refuses_bad_signature(client, world, member):
    wait = client.post("/v1/identify/caller-id", headers=auth(world.a.pos_key)).json()
    body = urlencode({"From": "+819012345678", "To": "+81356781234"})
    response = client.post("/v1/telephony/inbound", content=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Patron-Signature": "00" * 32})
    assert_problem(response, 401, "bad_signature")
    polled = client.get(f"/v1/identify/caller-id/{wait['id']}", headers=auth(world.a.pos_key))
    assert polled.json()["status"] == "waiting"


def test_caller_id_token_in_url_is_accepted(client, world, member):
    wait = client.post("/v1/identify/caller-id", headers=auth(world.a.pos_key)).json()
    response = client.post(f"/v1/telephony/inbound?token={WEBHOOK_SECRET}",
                           data={"From": "+819012345678", "To": "+81356781234"})
    assert response.status_code == 200
    polled = client.get(f"/v1/identify/caller-id/{wait['id']}", headers=auth(world.a.pos_key))
    assert polled.json()["member_id"] == member["id"]


def test_caller_id_needs_a_call_number(client, world):
    assert_problem(client.post("/v1/identify/caller-id", headers=auth(world.b.pos_key)),
                   409, "no_call_number")


# --- refusals -----------------------------------------------------------------------------

def test_wrong_check_digit_and_transposition_are_no_member(client, world, member):
    # Answered as a number nobody has (docs/identification.md, "No such member").
    number = member["member_number"]
    wrong_digit = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert_problem(identify(client, world.a.pos_key, barcode=wrong_digit), 404,
                   "member_not_found")
    for i in range(len(number) - 1):
        if number[i] != number[i + 1]:
            swapped = number[:i] + number[i + 1] + number[i] + number[i + 2:]
            assert_problem(identify(client, world.a.pos_key, barcode=swapped), 404,
                           "member_not_found")


@pytest.mark.parametrize("barcode", ["12345", "abcdefghijklmn", "123450000001845"])
def test_malformed_code_refused(client, world, member, barcode):
    assert_problem(identify(client, world.a.pos_key, barcode=barcode), 422, "malformed_code")


def test_unknown_valid_number_is_not_found(client, world, member):
    from patron.identity.numbers import format_member_number

    assert_problem(identify(client, world.a.pos_key, barcode=format_member_number(12345, 999)),
                   404, "member_not_found")


def test_qr_token_two_steps_old_is_refused(client, world, member):
    start = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
    clock.freeze(start)
    token = client.get(f"/v1/members/{member['id']}/qr-token",
                       headers=auth(world.a.merchant_key)).json()["token"]
    clock.freeze(start + timedelta(seconds=30))
    assert_identified(identify(client, world.a.pos_key, qr=token), member, "qr")
    clock.freeze(start + timedelta(seconds=60))
    assert_problem(identify(client, world.a.pos_key, qr=token), 410, "qr_expired")


def test_tampered_qr_refused(client, world, member):
    token = client.get(f"/v1/members/{member['id']}/qr-token",
                       headers=auth(world.a.merchant_key)).json()["token"]
    number, step, mac = token.split(".")
    forged = f"{number}.{step}.{'A' * len(mac)}"
    assert_problem(identify(client, world.a.pos_key, qr=forged), 422, "qr_invalid")


def test_withdrawn_member_identifiers_stop_working(client, world, member):
    withdrawn = client.post(f"/v1/members/{member['id']}/withdraw",
                            headers=auth(world.a.merchant_key))
    assert withdrawn.status_code == 200
    assert withdrawn.json()["status"] == "withdrawn"
    for body in ({"barcode": member["member_number"]}, {"card_uid": CARD}, {"phone": PHONE}):
        assert_problem(identify(client, world.a.pos_key, **body), 410, "member_withdrawn")


def test_blocked_card_refused_and_replacement_works(client, world, member):
    cards = client.get(f"/v1/members/{member['id']}/cards", headers=auth(world.a.pos_key))
    card_id = cards.json()["items"][0]["id"]
    new = client.post(f"/v1/members/{member['id']}/cards/{card_id}/replace",
                      headers=auth(world.a.merchant_key), json={"uid": "04BEEF00112233",
                                                           "reason": "lost"})
    assert new.status_code == 201, new.text
    assert_problem(identify(client, world.a.reader_key, card_uid=CARD), 403, "card_blocked")
    assert_identified(identify(client, world.a.reader_key, card_uid="04BEEF00112233"),
                      member, "card_uid")
    cards = client.get(f"/v1/members/{member['id']}/cards", headers=auth(world.a.pos_key))
    by_id = {c["id"]: c for c in cards.json()["items"]}
    assert by_id[card_id]["status"] == "blocked"
    assert by_id[card_id]["replaced_by_id"] == new.json()["id"]
    again = client.post(f"/v1/members/{member['id']}/cards/{card_id}/block",
                        headers=auth(world.a.merchant_key), json={})
    assert_problem(again, 409, "card_already_blocked")


def test_several_cards_per_member(client, world, member):
    added = client.post(f"/v1/members/{member['id']}/cards", headers=auth(world.a.merchant_key),
                        json={"uid": "0499887766"})
    assert added.status_code == 201
    assert added.json()["uid_last4"] == "7766"
    assert_identified(identify(client, world.a.reader_key, card_uid="0499887766"), member,
                      "card_uid")
    assert_identified(identify(client, world.a.reader_key, card_uid=CARD), member, "card_uid")
    taken = client.post(f"/v1/members/{member['id']}/cards", headers=auth(world.a.merchant_key),
                        json={"uid": "04 99 88 77 66"})
    assert_problem(taken, 409, "card_already_registered")


def test_exactly_one_identifier(client, world, member):
    assert_problem(identify(client, world.a.pos_key), 422, "validation_failed")
    assert_problem(identify(client, world.a.pos_key, barcode=member["member_number"],
                            phone=PHONE), 422, "validation_failed")


def test_image_without_a_code_and_garbage_image(client, world, member):
    import io

    from PIL import Image

    blank = io.BytesIO()
    Image.new("RGB", (320, 200), (255, 255, 255)).save(blank, format="PNG")
    assert_problem(identify(client, world.a.pos_key,
                            image=base64.b64encode(blank.getvalue()).decode()),
                   422, "no_code_in_image")
    assert_problem(identify(client, world.a.pos_key,
                            image=base64.b64encode(b"not an image at all").decode()),
                   422, "invalid_image")
    assert_problem(identify(client, world.a.pos_key, image="!!!not-base64!!!"), 422,
                   "invalid_image")
