"""A member opens their wallet on a second device with a code sent to their e-mail — a
real SMTP server receives it from the delivery worker of a running Patron — and sees the
same wallet (docs/web.md, "The member's wallet"); in a real browser."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from bench.sinks import smtp_server
from fastapi.testclient import TestClient

from patron.db import Database
from tests.browser import screenshot
from tests.conftest import World
from tests.live_server import live_server
from tests.notify.test_email import text_of

pytestmark = pytest.mark.slow


def test_a_code_sent_by_email_opens_the_same_wallet_on_a_second_phone(
        client: TestClient, world: World, database: Database, browser: Any) -> None:
    with smtp_server() as mailbox, live_server(database.url, workers=1, env={
            "PATRON_DELIVERIES_IN_SERVE": "true", "PATRON_SMTP_URL": mailbox.url,
            "PATRON_MAIL_FROM": "wallet@patron.example"}) as server:
        first = browser.new_context(viewport={"width": 390, "height": 844}, locale="en-US")
        second = browser.new_context(viewport={"width": 412, "height": 915}, locale="en-US")
        try:
            phone = first.new_page()
            phone.goto(f"{server}/join?m={world.a.number:05d}")
            phone.fill("#f-email", "hana@example.jp")
            phone.locator("main form button[type=submit]").click()
            phone.wait_for_url(f"{server}/wallet?welcome=1")
            number = phone.locator(".membership-card .number").inner_text().strip()

            other = second.new_page()
            other.goto(f"{server}/wallet")
            other.wait_for_url(f"{server}/wallet/sign-in")
            other.fill("#f-address", "hana@example.jp")
            other.locator("main form button[type=submit]").click()
            other.wait_for_selector("#f-code")
            screenshot(other, "second-device-1-code")
            deadline = time.monotonic() + 10
            code = None
            while code is None and time.monotonic() < deadline:
                mails = [m for m in mailbox.messages if m["To"] == "hana@example.jp"]
                found = [re.search(r"\b(\d{6})\b", text_of(m)) for m in mails]
                code = next((f.group(1) for f in found if f), None)
                time.sleep(0.1)
            assert code is not None, "no code arrived by e-mail within 10 s"
            other.fill("#f-code", code)
            other.locator("main form button[type=submit]").click()
            other.wait_for_url(f"{server}/wallet")
            assert other.locator(".membership-card .number").inner_text().strip() == number
            devices = other.locator("#devices").inner_text()
            assert devices.count("Sign out") == 2
            screenshot(other, "second-device-2-wallet")
        finally:
            first.close()
            second.close()
