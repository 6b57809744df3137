"""The merchant console (docs/web.md, "The merchant console"): today's figures, a member's
page and a correction of their points, offers and code batches with their CSV, and a
campaign written with a mistake, fixed, simulated and activated."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.campaigns.models import Campaign
from patron.db import Database
from patron.kit.clock import clock
from patron.ledger.models import JournalEntry
from patron.tenancy.models import StaffRole
from patron.vouchers.models import Voucher
from tests.conftest import World, auth
from tests.web.people import add_staff, browser, csrf, join, sign_in, text_of


def _manager(app: Any, database: Database, world: World) -> tuple[TestClient, Any]:
    client = browser(app)
    return client, sign_in(client, add_staff(database, StaffRole.manager,
                                             merchant_id=world.a.merchant_id))


def _count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_todays_figures_count_the_merchants_own_sales_only(
        app: Any, client: Any, database: Database, world: World) -> None:
    # Noon in Tokyo: the merchant's day is the 7th, from 2026-12-06T15:00Z.
    clock.freeze(datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    member = join(app, database, world.a.number)
    for key, receipt, member_number in ((world.a.pos_key, "A-1", member.member_number),
                                        (world.a.pos_key, "A-2", None),
                                        (world.b.pos_key, "B-1", None)):
        body: dict[str, Any] = {
            "receipt_no": receipt, "occurred_at": "2026-12-07T02:00:00+00:00",
            "currency": "JPY" if key == world.a.pos_key else "USD",
            "lines": [{"sku": "X", "name": "X", "quantity": 1, "unit_price": 1000}]}
        if member_number:
            body["member"] = {"barcode": member_number}
        assert client.post("/v1/pos/transactions", headers=auth(key), json=body
                           ).status_code == 201
    manager, _home = _manager(app, database, world)
    page = text_of(manager.get("/console"))
    assert "Sales ¥2,000 2 purchases" in page
    assert "Identified share 50%" in page
    assert "New members 1" in page


def test_a_manager_corrects_a_members_points_with_a_reason_once(
        app: Any, database: Database, world: World) -> None:
    member = join(app, database, world.a.number)
    manager, _home = _manager(app, database, world)
    page = manager.get(f"/console/members/{member.member_id}")
    assert page.status_code == 200 and member.member_number in page.text
    key = re.search(r'name="key" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    form = {"csrf_token": csrf(page), "key": key, "points": "150", "reason": "Goodwill"}
    done = manager.post(f"/console/members/{member.member_id}/adjustments", data=form)
    assert done.status_code == 200 and "150" in text_of(done)
    # The same form sent twice is one correction.
    manager.post(f"/console/members/{member.member_id}/adjustments", data=form)
    assert _count(database, JournalEntry) == 1
    wallet = text_of(member.client.get("/wallet"))
    assert f"Merchant {world.a.number} 150" in wallet
    refused = manager.post(f"/console/members/{member.member_id}/adjustments", data={
        **form, "key": uuid.uuid4().hex, "points": "ten"})
    assert refused.status_code == 422 and 'id="e-points"' in refused.text
    no_reason = manager.post(f"/console/members/{member.member_id}/adjustments", data={
        **form, "key": uuid.uuid4().hex, "reason": ""})
    assert no_reason.status_code == 422 and _count(database, JournalEntry) == 1


def test_codes_are_generated_in_a_batch_and_downloaded_as_csv(
        app: Any, database: Database, world: World) -> None:
    app.state.settings = app.state.settings.model_copy(
        update={"code_batches_in_background": True})
    manager, _home = _manager(app, database, world)
    offers = manager.get("/console/offers")
    created = manager.post("/console/offers", data={"csrf_token": csrf(offers),
                                                    "name": "Coffee", "kind": "amount_off",
                                                    "value": "200"})
    assert created.url.path.startswith("/console/offers/")
    offer_path = created.url.path
    few = manager.post(f"{offer_path}/codes", data={"csrf_token": csrf(created), "count": "3"})
    assert "3 codes issued" in text_of(few)
    started = manager.post(f"{offer_path}/codes", data={"csrf_token": csrf(created),
                                                        "count": "2500"})
    assert started.url.path.startswith("/console/batches/")
    batch_path = started.url.path
    for _ in range(200):
        progress = manager.get(batch_path, headers={"HX-Request": "true"})
        if "done" in progress.text:
            break
    assert "2,500 of 2,500 codes" in text_of(progress)
    download = manager.get(f"{batch_path}/codes.csv")
    rows = download.text.strip().splitlines()
    assert download.headers["content-type"].startswith("text/csv")
    assert rows[0] == "code,barcode" and len(rows) == 2501
    assert _count(database, Voucher) == 2503
    # Another merchant's manager sees neither the batch nor its codes.
    other = browser(app)
    sign_in(other, add_staff(database, StaffRole.manager, merchant_id=world.b.merchant_id))
    assert other.get(batch_path).status_code == 404
    assert other.get(f"{batch_path}/codes.csv").status_code == 404
    bad = manager.post(f"{offer_path}/codes", data={"csrf_token": csrf(created), "count": "0"})
    assert bad.status_code == 422 and 'id="e-count"' in bad.text


def test_a_campaign_with_a_mistake_is_refused_at_the_field_then_saved_and_activated(
        app: Any, database: Database, world: World) -> None:
    manager, _home = _manager(app, database, world)
    offers = manager.get("/console/offers")
    offer = manager.post("/console/offers", data={"csrf_token": csrf(offers), "name": "Tea",
                                                  "kind": "amount_off", "value": "100"})
    offer_id = offer.url.path.rsplit("/", 1)[1]
    form = {"csrf_token": csrf(offer), "name": "Tea lovers", "trigger": "checkout",
            "combine": "all", "cond_field": ["purchase.total_minor", "purchase.categoriez"],
            "cond_key": ["", ""], "cond_op": ["ge", "contains"],
            "cond_value": ["1000", "tea"], "action": "issue_voucher", "offer_id": offer_id,
            "control_share": "10"}
    refused = manager.post("/console/campaigns/new", data=form)
    assert refused.status_code == 422
    # The error is at the second row's field, and only there; the form keeps what was typed.
    assert re.findall(r'id="e-(cond_\w+)"', refused.text) == ["cond_field_1"]
    assert 'value="purchase.categoriez"' in refused.text
    assert _count(database, Campaign) == 0
    form["cond_field"] = ["purchase.total_minor", "purchase.categories"]
    saved = manager.post("/console/campaigns/new", data=form)
    assert saved.url.path.startswith("/console/campaigns/")
    with database.session_scope() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.status == "paused" and campaign.control_share_bp == 1000
        assert campaign.conditions == {"all": [
            {"field": "purchase.total_minor", "op": "ge", "value": 1000},
            {"field": "purchase.categories", "op": "contains", "value": "tea"}]}
    simulated = manager.post(f"{saved.url.path}/simulate", data={"csrf_token": csrf(saved),
                                                                 "days": "30"})
    assert "If the campaign had run in the last 30 days" in text_of(simulated)
    active = manager.post(f"{saved.url.path}/activate", data={"csrf_token": csrf(saved)})
    assert active.status_code == 200
    with database.session_scope() as session:
        assert session.scalars(select(Campaign.status)).one() == "active"
