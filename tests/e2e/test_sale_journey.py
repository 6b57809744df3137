"""A member's first purchase, in a real browser (headless Chromium), in Japanese and in
English: a referral link opened on a phone, joining anonymously, the QR shown; a cashier
on a tablet scans it (its text typed as a keyboard-wedge scanner types), rings up a basket
with the member's welcome voucher and commits; the wallet then shows the new points, the
history line and the voucher the campaign gave (docs/web.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.db import Database
from patron.tenancy.models import StaffRole
from tests.browser import screenshot
from tests.conftest import World, auth
from tests.live_server import live_server
from tests.web.people import PASSWORD, add_staff

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 1024, "height": 1366}
# What each language's pages say (the catalog's words): join button, points heading,
# the history's earn line, the register's buttons.
WORDS = {
    "ja": {"locale": "ja-JP", "points": "ポイント", "earned": "獲得", "total": "￥2,100"},
    "en": {"locale": "en-US", "points": "Points", "earned": "Earned", "total": "¥2,100"},
}


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[str]:
    with live_server(database.url, workers=1) as base:
        yield base


def _setup(client: TestClient, world: World) -> str:
    """Merchant A's referral program, a welcome voucher on joining, a voucher won by a
    purchase of 2,000 or more; a referrer member; their referral code."""
    key = auth(world.a.merchant_key)
    welcome = client.post("/v1/offers", headers=key, json={
        "name": "Welcome ¥300", "kind": "amount_off", "value": 300}).json()["id"]
    won = client.post("/v1/offers", headers=key, json={
        "name": "Next visit ¥500", "kind": "amount_off", "value": 500}).json()["id"]
    for name, trigger, conditions, offer in (
            ("Welcome", "enrolment", {"all": []}, welcome),
            ("Big basket", "checkout",
             {"all": [{"field": "purchase.total_minor", "op": "ge", "value": 2000}]}, won)):
        created = client.post("/v1/campaigns", headers=key, json={
            "name": name, "trigger": trigger, "conditions": conditions,
            "actions": [{"type": "issue_voucher", "offer_id": offer}]})
        assert created.status_code == 201, created.text
    assert client.put(f"/v1/merchants/{world.a.merchant_id}/referral-program", headers=key,
                      json={"active": True, "referrer_points": 100, "referee_points": 50}
                      ).status_code == 200
    referrer = client.post("/v1/members", headers=key, json={"language": "en"}).json()
    code: str = client.get(f"/v1/members/{referrer['id']}/referral",
                           headers=key).json()["code"]
    return code


@pytest.mark.parametrize("language", ["ja", "en"])
def test_join_by_referral_scan_at_the_register_and_see_the_sale_in_the_wallet(
        client: TestClient, world: World, database: Database, server: str, browser: Any,
        language: str) -> None:
    words = WORDS[language]
    code = _setup(client, world)
    cashier_email = add_staff(database, StaffRole.cashier, merchant_id=world.a.merchant_id)

    phone = browser.new_context(viewport=PHONE, locale=words["locale"], is_mobile=True,
                                has_touch=True)
    tablet = browser.new_context(viewport=TABLET, locale=words["locale"], has_touch=True)
    try:
        member = phone.new_page()
        joined = member.goto(f"{server}/join?ref={code}")
        assert joined is not None and joined.status == 200
        assert member.locator("html").get_attribute("lang") == language
        screenshot(member, f"journey-{language}-1-join")
        member.locator("main form button[type=submit]").click()
        member.wait_for_url(f"{server}/wallet?welcome=1")
        qr = member.locator("img.qr")
        assert qr.is_visible()
        token = qr.get_attribute("data-token")
        assert token and token.count(".") == 2
        # The welcome campaign's voucher is in the wallet already.
        assert "Welcome ¥300" in member.locator("#vouchers").inner_text()
        screenshot(member, f"journey-{language}-2-wallet")

        register = tablet.new_page()
        register.goto(f"{server}/login")
        register.fill("#f-email", cashier_email)
        register.fill("#f-password", PASSWORD)
        register.locator("main form button[type=submit]").click()
        register.wait_for_url(f"{server}/register/choose")
        register.locator("main form button[type=submit]").click()
        register.wait_for_url(f"{server}/register")
        # A keyboard-wedge scanner types the QR's text and Enter into the focused field.
        register.locator("#f-scan").focus()
        register.keyboard.type(token)
        register.keyboard.press("Enter")
        register.wait_for_load_state()
        number = member.locator(".membership-card .number").inner_text().strip()
        assert number in register.locator("#member-heading + p").inner_text()
        register.fill("#f-new_sku", "4006381333931")
        register.fill("#f-new_name", "Coffee beans")
        register.fill("#f-new_quantity", "2")
        register.fill("#f-new_unit_price", "1200")
        register.locator("form[action='/register/line'] button[type=submit]").click()
        register.wait_for_load_state()
        register.locator("input[name=voucher][type=checkbox]").check()
        register.locator("#sale-form button[formaction='/register/commit']").click()
        register.wait_for_url(f"{server}/register/receipts/**")
        receipt = register.locator("article.receipt").inner_text()
        assert "Welcome ¥300" in receipt and words["total"] in receipt
        assert "Next visit ¥500" in receipt  # the campaign's voucher, with its barcode
        screenshot(register, f"journey-{language}-3-receipt")

        member.reload()
        points = member.locator("#points").inner_text()
        history = member.locator("#history").inner_text()
        vouchers = member.locator("#vouchers").inner_text()
        # 1 point per ¥100 paid, and the referral program's 50 for the first purchase.
        assert words["points"] in points and "71" in points
        assert words["earned"] in history and "+21" in history and "+50" in history
        assert "Next visit ¥500" in vouchers and "Welcome ¥300" not in vouchers
        screenshot(member, f"journey-{language}-4-wallet-after")
    finally:
        phone.close()
        tablet.close()
