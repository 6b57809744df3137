"""The unsubscribe link's page in a real browser (headless Chromium), in English and
Japanese: it says whose e-mails stop, changes nothing when opened, and its button
withdraws that merchant's e-mail marketing consent; the consent ledger shows the source."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.db import Database
from patron.notify.messages import Unsubscribe, unsubscribe_token
from tests.api.snapshot import changed_tables, snapshot
from tests.browser import screenshot
from tests.conftest import World, auth
from tests.live_server import live_server
from tests.notify.helpers import enrol

pytestmark = pytest.mark.slow

PAGES = {
    "en": ("Stop e-mails from", "Stop these e-mails", "Done:"),
    "ja": ("からのメールの停止", "メールを停止する", "お知らせメール"),
}


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[str]:
    """One server for the module's tests: each test's rows are its own (the server reads
    them from the database as it is)."""
    with live_server(database.url, workers=1) as base:
        yield base


def _consents(client: TestClient, world: World, member_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/members/{member_id}/consents",
                          headers=auth(world.a.merchant_key))
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


@pytest.mark.parametrize("language", sorted(PAGES))
def test_the_page_says_whose_emails_stop_and_its_button_stops_them(
        client: TestClient, world: World, database: Database, server: str, browser: Any,
        language: str) -> None:
    title, button, done = PAGES[language]
    member = enrol(client, world.a.merchant_key, email=f"{language}@example.jp",
                   language=language, consents={"email": True})
    token = unsubscribe_token(Unsubscribe(
        member_id=uuid.UUID(member["id"]), merchant_id=uuid.UUID(world.a.merchant_id),
        channel="email", delivery_id=uuid.uuid4()))
    context = browser.new_context(viewport={"width": 390, "height": 700},
                                  locale="ja-JP" if language == "ja" else "en-US")
    page = context.new_page()
    try:
        before = snapshot(database)
        opened = page.goto(f"{server}/unsubscribe/{token}")
        assert opened is not None and opened.status == 200
        assert title in page.title()
        assert page.locator("html").get_attribute("lang") == language
        # Opening the link (as a mail scanner does) changes nothing.
        assert changed_tables(before, snapshot(database)) == []
        screenshot(page, f"unsubscribe-{language}")
        page.get_by_role("button", name=button).click()
        page.wait_for_load_state()
        assert done in page.locator("main").inner_text()
        screenshot(page, f"unsubscribe-{language}-done")
    finally:
        context.close()
    history = _consents(client, world, member["id"])
    [revoked] = [entry for entry in history["history"]
                 if entry["channel"] == "email" and entry["granted"] is False]
    assert revoked["source"] == "unsubscribe_link"


def test_a_link_that_is_not_patrons_is_a_plain_404_page(server: str, browser: Any) -> None:
    page = browser.new_page()
    try:
        answer = page.goto(f"{server}/unsubscribe/not.a.real.token.x")
        assert answer is not None and answer.status == 404
        assert "not valid" in page.locator("body").inner_text()
    finally:
        page.close()
