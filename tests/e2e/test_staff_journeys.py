"""The console and the operator console in a real browser (headless Chromium): a manager
writes a campaign with a mistake, sees the error at the field, fixes it, simulates and
activates it, then generates 10,000 codes and downloads their CSV; the operator adds a
merchant, a store and a terminal and sees the terminal's key once (docs/web.md)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.campaigns.models import Campaign
from patron.db import Database
from patron.tenancy.models import StaffRole
from patron.vouchers.models import Voucher
from tests.browser import screenshot
from tests.conftest import World, auth
from tests.live_server import live_server
from tests.web.people import PASSWORD, add_staff

pytestmark = pytest.mark.slow

DESK = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[str]:
    with live_server(database.url, workers=1, env={
            "PATRON_CODE_BATCHES_IN_BACKGROUND": "true"}) as base:
        yield base


def _sign_in(page: Any, server: str, email: str) -> None:
    page.goto(f"{server}/login")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()


def test_a_manager_fixes_a_campaign_activates_it_and_downloads_10000_codes(
        client: TestClient, world: World, database: Database, server: str,
        browser: Any) -> None:
    offer = client.post("/v1/offers", headers=auth(world.a.merchant_key), json={
        "name": "Coffee ¥200 off", "kind": "amount_off", "value": 200}).json()
    email = add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    context = browser.new_context(viewport=DESK, locale="ja-JP", accept_downloads=True)
    try:
        page = context.new_page()
        _sign_in(page, server, email)
        assert page.url == f"{server}/console"
        page.goto(f"{server}/console/campaigns/new")
        page.fill("#f-name", "コーヒー好き")
        page.fill("#f-cond_field_0", "purchase.total_minor")
        page.select_option("#f-cond_op_0", "ge")
        page.fill("#f-cond_value_0", "1000")
        page.fill("#f-cond_field_1", "purchase.categoriez")  # the mistake
        page.select_option("#f-cond_op_1", "contains")
        page.fill("#f-cond_value_1", "coffee")
        page.select_option("#f-offer_id", offer["id"])
        page.locator("button.big[type=submit]").click()
        page.wait_for_load_state()
        error = page.locator("#e-cond_field_1")
        assert error.is_visible() and page.locator("#f-cond_field_1").get_attribute(
            "aria-invalid") == "true"
        assert page.locator("[id^=e-]").count() == 1  # there, and nowhere else
        screenshot(page, "journey-manager-1-campaign-error")
        page.fill("#f-cond_field_1", "purchase.categories")
        page.locator("button.big[type=submit]").click()
        page.wait_for_url(f"{server}/console/campaigns/*")
        page.locator("form[action$='/simulate'] button[type=submit]").click()
        page.wait_for_load_state()
        assert page.locator("table[aria-live=polite]").is_visible()
        page.locator("form[action$='/activate'] button[type=submit]").click()
        page.wait_for_load_state()
        screenshot(page, "journey-manager-2-campaign-active")
        with database.session_scope() as session:
            assert session.scalars(select(Campaign.status)).all() == ["active"]

        page.goto(f"{server}/console/offers/{offer['id']}")
        page.fill("#f-count", "10000")
        page.locator("form[action$='/codes'] button[type=submit]").click()
        page.wait_for_url(f"{server}/console/batches/*")
        download_link = page.locator("a[href$='codes.csv']")
        download_link.wait_for(timeout=60_000)  # htmx follows the batch until it is done
        screenshot(page, "journey-manager-3-batch-done")
        with page.expect_download() as download:
            download_link.click()
        rows = Path(download.value.path()).read_text().strip().splitlines()
        assert rows[0] == "code,barcode" and len(rows) == 10_001
        assert len({row.split(",")[0] for row in rows[1:]}) == 10_000
        with database.session_scope() as session:
            assert session.scalar(select(func.count()).select_from(Voucher)) == 10_000
    finally:
        context.close()


def test_the_operator_adds_a_merchant_a_store_and_a_terminal_and_sees_its_key_once(
        client: TestClient, database: Database, server: str, browser: Any) -> None:
    email = add_staff(database, StaffRole.operator)
    context = browser.new_context(viewport=DESK, locale="en-US")
    try:
        page = context.new_page()
        _sign_in(page, server, email)
        assert page.url == f"{server}/operator"
        for field, value in (("number", "45678"), ("name", "Harbour Books"),
                             ("currency", "USD"), ("timezone", "America/Los_Angeles"),
                             ("country", "US")):
            page.fill(f"#f-{field}", value)
        page.locator("form[action='/operator/merchants'] button[type=submit]").click()
        page.wait_for_url(f"{server}/operator/merchants/*")
        merchant_page = page.url
        page.fill("#f-store_code", "pier-39")
        page.fill("#f-store_name", "Pier 39")
        page.locator("form[action$='/stores'] button[type=submit]").click()
        page.wait_for_load_state()
        page.fill("#f-terminal-code-1", "till-1")
        page.locator("form[action$='/terminals'] button[type=submit]").click()
        page.wait_for_load_state()
        key = page.locator("#new-key").inner_text().strip()
        assert key.startswith("ptn_")
        screenshot(page, "journey-operator-1-terminal-key")
        # The key works as that terminal's; the page never shows it again.
        answer = client.post("/v1/identify", headers=auth(key),
                             json={"barcode": "45678000000000"})
        assert answer.status_code == 404 and answer.json()["code"] == "member_not_found"
        page.goto(merchant_page)
        assert "till-1" in page.content() and key not in page.content()
    finally:
        context.close()
