"""axe-core (vendored from the npm registry, web/static/vendor/axe-core) on every page, in
every language: no serious or critical violation (docs/web.md, "Accessibility"). Each
page is opened as the person it is for, with content on it (a member with points,
vouchers and history; an offer with a batch; a campaign), and its screenshot kept."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.db import Database
from patron.kit.i18n import LANGUAGES
from patron.tenancy import staff
from patron.tenancy.models import StaffRole
from tests.browser import screenshot
from tests.conftest import World, auth
from tests.live_server import live_server
from tests.web.people import PASSWORD, add_staff

pytestmark = [pytest.mark.slow, pytest.mark.markup]

AXE = "/static/vendor/axe-core/axe.min.js"
LOCALES = {"en": "en-US", "ja": "ja-JP", "zh-Hans": "zh-CN", "ko": "ko-KR"}


@pytest.fixture(scope="module")
def server(database: Database) -> Iterator[str]:
    with live_server(database.url, workers=1, env={
            "PATRON_CODE_BATCHES_IN_BACKGROUND": "true"}) as base:
        yield base


def _violations(page: Any) -> list[dict[str, Any]]:
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(url=AXE)
    found: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".filter(v => v.impact === 'serious' || v.impact === 'critical')"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))")
    return found


def _content(client: TestClient, world: World) -> dict[str, str]:
    """What the pages show: a member with a purchase, points and a voucher; an offer with
    a batch of codes; a campaign."""
    key = auth(world.a.merchant_key)
    offer = client.post("/v1/offers", headers=key, json={
        "name": "Next visit ¥500", "kind": "amount_off", "value": 500}).json()["id"]
    campaign = client.post("/v1/campaigns", headers=key, json={
        "name": "Big basket", "trigger": "checkout", "control_share_bp": 1000,
        "conditions": {"all": [{"field": "purchase.total_minor", "op": "ge", "value": 1000}]},
        "actions": [{"type": "issue_voucher", "offer_id": offer}]}).json()["id"]
    member = client.post("/v1/members", headers=key, json={
        "language": "en", "email": "axe@example.jp"}).json()
    sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "AXE-1", "occurred_at": "2026-12-07T10:00:00+09:00", "currency": "JPY",
        "member": {"member_id": member["id"]},
        "lines": [{"sku": "TEA", "name": "Tea", "quantity": 3, "unit_price": 600}]})
    assert sale.status_code == 201, sale.text
    batch = client.post(f"/v1/offers/{offer}/codes", headers=key, json={"count": 1500})
    return {"offer": offer, "campaign": campaign, "member": member["id"],
            "member_number": member["member_number"], "transaction": sale.json()["id"],
            "batch": batch.json()["batch_id"]}


def _signed_in(context: Any, server: str, email: str) -> Any:
    page = context.new_page()
    page.goto(f"{server}/login")
    page.fill("#f-email", email)
    page.fill("#f-password", PASSWORD)
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()
    return page


def _joined_with_a_purchase(context: Any, server: str, client: TestClient,
                            world: World) -> Any:
    """The member's own phone: joined on the join page, then a purchase at the till."""
    page = context.new_page()
    page.goto(f"{server}/join?m={world.a.number:05d}")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{server}/wallet?welcome=1")
    number = page.locator(".membership-card .number").inner_text().strip()
    sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "AXE-2", "occurred_at": "2026-12-07T11:00:00+09:00", "currency": "JPY",
        "member": {"barcode": number},
        "lines": [{"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": 600}]})
    assert sale.status_code == 201, sale.text
    return page


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_page_has_a_serious_or_critical_accessibility_violation(
        client: TestClient, world: World, database: Database, server: str, browser: Any,
        language: str) -> None:
    content = _content(client, world)
    with database.session_scope() as session:
        _user, invitation = staff.create_staff(
            session, inviter=None, email=f"new-{language}@example.com", name="New",
            role=StaffRole.cashier, merchant_id=uuid.UUID(world.a.merchant_id))
    people = {
        "anonymous": [f"/?lang={language}", f"/join?m={world.a.number:05d}&lang={language}",
                      f"/wallet/sign-in?lang={language}", f"/login?lang={language}",
                      f"/invitation/{invitation}?lang={language}",
                      f"/no-such-page?lang={language}"],
        "member": [f"/wallet?lang={language}"],
        "cashier": [f"/register/choose?lang={language}"],
        "manager": [f"/console?lang={language}", f"/console/members?lang={language}",
                    f"/console/members/{content['member']}?lang={language}",
                    f"/console/offers?lang={language}",
                    f"/console/offers/{content['offer']}?lang={language}",
                    f"/console/batches/{content['batch']}?lang={language}",
                    f"/console/campaigns?lang={language}",
                    f"/console/campaigns/new?lang={language}",
                    f"/console/campaigns/{content['campaign']}?lang={language}",
                    *(f"/console/{section}?lang={language}" for section in (
                        "program", "benefits", "referrals", "stores", "security",
                        "settlements", "messages", "messages/new", "webhooks"))],
        "owner": [f"/console/staff?lang={language}", f"/account?lang={language}"],
        "operator": [f"/operator?lang={language}",
                     f"/operator/merchants/{world.a.merchant_id}?lang={language}",
                     *(f"/operator/{section}?lang={language}" for section in (
                         "rates", "settlements", "staff", "keys", "jobs", "deliveries"))],
    }
    emails = {"cashier": add_staff(database, StaffRole.cashier,
                                   merchant_id=world.a.merchant_id),
              "manager": add_staff(database, StaffRole.manager,
                                   merchant_id=world.a.merchant_id),
              "owner": add_staff(database, StaffRole.owner, merchant_id=world.a.merchant_id),
              "operator": add_staff(database, StaffRole.operator)}
    found: dict[str, list[dict[str, Any]]] = {}
    for person, paths in people.items():
        context = browser.new_context(locale=LOCALES[language],
                                      viewport={"width": 390, "height": 844}
                                      if person in ("anonymous", "member")
                                      else {"width": 1280, "height": 900})
        try:
            if person == "member":
                page = _joined_with_a_purchase(context, server, client, world)
            elif person in emails:
                page = _signed_in(context, server, emails[person])
            else:
                page = context.new_page()
            if person == "cashier":
                paths += _register_pages(page, server, language, content)
            for path in paths:
                if not path.startswith("#"):
                    page.goto(f"{server}{path}")
                assert page.locator("html").get_attribute("lang") == language, path
                violations = _violations(page)
                if violations:
                    found[path] = violations
                # The page's address without its ids: one screenshot per page and language.
                route = re.sub(r"/[0-9a-f-]{36}", "/one",
                               re.sub(r"(/invitation)/\w+", r"\1", path.split("?")[0]))
                name = re.sub(r"[^a-z0-9]+", "-", route.strip("/#")) or "home"
                screenshot(page, f"a11y-{language}-{name}"[:80])
        finally:
            context.close()
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def _register_pages(page: Any, server: str, language: str,
                    content: dict[str, str]) -> list[str]:
    """The register with a member and a quote on it, then a receipt: reached by its own
    forms (each is a page of its own, checked where it stands: '#…')."""
    page.goto(f"{server}/register/choose?lang={language}")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(f"{server}/register")
    page.fill("#f-scan", content["member_number"])
    page.locator("form[action='/register/identify'] button[type=submit]").click()
    page.wait_for_load_state()
    page.fill("#f-new_sku", "TEA")
    page.fill("#f-new_name", "Tea")
    page.fill("#f-new_unit_price", "600")
    page.locator("form[action='/register/line'] button[type=submit]").click()
    page.wait_for_load_state()
    page.locator("#sale-form button[type=submit]").first.click()
    page.wait_for_load_state()
    return ["#register-with-a-quote", f"/register/receipts/{content['transaction']}"
            f"?lang={language}"]
