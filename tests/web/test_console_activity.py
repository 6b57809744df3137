"""The merchant console's activity sections (docs/web.md, "The merchant console"):
security events, coalition settlements, targeted messages and webhooks — each with
content, a refusal at its field that changes nothing, and who may: the merchant's owner
and manager, not its cashier, and another merchant's manager never sees this merchant's
rows or objects (404)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.db import Database
from patron.kit.clock import clock
from patron.notify.models import OutboxEvent, TargetedMessage, WebhookEndpoint
from patron.notify.worker import dispatch
from patron.security.models import SecurityEventKind, Throttle
from patron.security.service import record_security_event
from patron.tenancy.models import StaffRole
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.notify.helpers import enrol
from tests.web.people import add_staff, browser, csrf, join, sign_in, text_of

PAGES = ("/console/security", "/console/settlements", "/console/messages",
         "/console/messages/new", "/console/webhooks")


def _person(app: Any, database: Database, role: StaffRole,
            merchant_id: str | None) -> tuple[TestClient, Any]:
    client = browser(app)
    return client, sign_in(client, add_staff(database, role, merchant_id=merchant_id))


def _count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _buy(client: TestClient, world: World, receipt: str, total: int,
         member_number: str | None = None) -> None:
    body: dict[str, Any] = {"receipt_no": receipt, "occurred_at": "2026-12-07T02:00:00+00:00",
                            "currency": "JPY",
                            "lines": [{"sku": "X", "name": "X", "quantity": 1,
                                       "unit_price": total}]}
    if member_number:
        body["member"] = {"barcode": member_number}
    response = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json=body)
    assert response.status_code == 201, response.text


def test_who_may_open_the_activity_sections(app: Any, database: Database,
                                            world: World) -> None:
    owner, _ = _person(app, database, StaffRole.owner, world.a.merchant_id)
    manager, _ = _person(app, database, StaffRole.manager, world.a.merchant_id)
    cashier, _ = _person(app, database, StaffRole.cashier, world.a.merchant_id)
    operator, _ = _person(app, database, StaffRole.operator, None)
    anonymous = browser(app)
    for page in PAGES:
        assert owner.get(page).status_code == 200, page
        shown = manager.get(page)
        assert shown.status_code == 200, page
        # The nav marks the section (its links are the console layout's to add).
        assert 'class="console"' in shown.text
        for refused in (cashier, operator):
            answer = refused.get(page, follow_redirects=False)
            assert answer.status_code == 403, page
            assert answer.headers["content-type"].startswith("text/html")
        away = anonymous.get(page, follow_redirects=False)
        assert away.status_code == 303 and away.headers["location"].startswith("/login")


def test_security_events_are_the_merchants_own_newest_first_and_paged(
        app: Any, database: Database, world: World) -> None:
    start = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
    with database.session_scope() as session:
        record_security_event(session, merchant_id=uuid.UUID(world.a.merchant_id),
                              kind=SecurityEventKind.identification,
                              refusal="member_not_found", occurred_at=start)
        for minute in range(55):
            record_security_event(
                session, merchant_id=uuid.UUID(world.a.merchant_id),
                kind=SecurityEventKind.voucher_validation, refusal=f"a_refusal_{minute:02d}",
                throttle=Throttle.voucher, terminal_id=uuid.UUID(world.a.pos_id),
                client_address="198.51.100.7", code="ABCD-EFGH-JKLM",
                occurred_at=start + timedelta(minutes=minute))
        record_security_event(session, merchant_id=uuid.UUID(world.b.merchant_id),
                              kind=SecurityEventKind.voucher_validation,
                              refusal="b_only_refusal", occurred_at=start)
    manager, _ = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/security")
    assert page.status_code == 200
    shown = re.findall(r"a_refusal_(\d\d)", page.text)
    # Newest first, 50 to a page; the terminal by its code, the code tried by its start.
    assert shown == [f"{minute:02d}" for minute in range(54, 4, -1)]
    assert "main/pos-1" in page.text and "ABCD…" in page.text
    assert "ABCDEFGHJKLM" not in page.text and "b_only_refusal" not in page.text
    older = re.search(r'href="(/console/security\?cursor=\d+)"', page.text)
    assert older
    rest = manager.get(older.group(1).replace("&amp;", "&"))
    assert re.findall(r"a_refusal_(\d\d)", rest.text) == ["04", "03", "02", "01", "00"]
    assert "member_not_found" in rest.text
    only = manager.get("/console/security?kind=identification")
    assert "member_not_found" in only.text and "a_refusal_" not in only.text
    # Bad filters are refused at their fields, and nothing is listed or changed.
    before = snapshot(database)
    for query, where in (("since=yesterday", "since"), ("kind=guessing", "kind"),
                         (f"terminal={world.b.pos_id}", "terminal")):
        refused = manager.get(f"/console/security?{query}")
        assert refused.status_code == 422, query
        assert f'id="e-{where}"' in refused.text and 'aria-invalid="true"' in refused.text
        assert "a_refusal_" not in refused.text
    assert changed_tables(before, snapshot(database)) == []
    # Another merchant's manager sees only its own merchant's events.
    other, _ = _person(app, database, StaffRole.manager, world.b.merchant_id)
    theirs = other.get("/console/security")
    assert "b_only_refusal" in theirs.text and "a_refusal_" not in theirs.text
    assert other.get(f"/console/security?terminal={world.a.pos_id}").status_code == 422


def test_the_settlement_shows_the_merchants_own_line(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    clock.freeze(datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    rates = client.put("/v1/coalition/rates", headers=auth(world.operator_key), json={
        "rates": [{"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000}]})
    assert rates.status_code == 200, rates.text
    member = join(app, database, world.a.number)
    _buy(client, world, "S-1", 10_000, member.member_number)
    manager, _ = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/settlements")
    assert page.status_code == 200
    shown = text_of(page)
    assert "Month 2026-12" in shown
    assert "Issued by your purchases (you owe) 100 ¥100" in shown
    assert "Net -100 -¥100" in shown and "You pay the coalition." in shown
    assert "/console/settlements?period=2026-11" in page.text
    assert "Issued by your purchases (you owe) 0" in text_of(
        manager.get("/console/settlements?period=2026-11"))
    before = snapshot(database)
    refused = manager.get("/console/settlements?period=2026-13")
    assert refused.status_code == 422 and 'id="e-period"' in refused.text
    assert "Issued by your purchases" not in refused.text
    assert changed_tables(before, snapshot(database)) == []
    # Another merchant's manager sees its own line, never this merchant's.
    other, _ = _person(app, database, StaffRole.manager, world.b.merchant_id)
    theirs = text_of(other.get("/console/settlements?period=2026-12"))
    assert "Issued by your purchases (you owe) 0" in theirs
    assert f"Merchant {world.a.number}" not in theirs and "¥100" not in theirs


def _message_form(page: Any, **fields: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf(page), "channel": "email", "subject": "Winter sale",
        "text": "20% off this week.\nSee you soon.", "offer_id": "", "combine": "all",
        "cond_field": ["member.region", ""], "cond_key": ["", ""],
        "cond_op": ["eq", ""], "cond_value": ["Kanto", ""]}
    form.update(fields)
    return form


def test_a_targeted_message_is_composed_counted_sent_and_measured(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    key = world.a.merchant_key
    enrol(client, key, email="kanto@example.jp", region="Kanto", consents={"email": True})
    enrol(client, key, email="quiet@example.jp", region="Kanto")
    enrol(client, key, email="kansai@example.jp", region="Kansai", consents={"email": True})
    manager, _ = _person(app, database, StaffRole.manager, world.a.merchant_id)
    compose = manager.get("/console/messages/new")
    assert compose.status_code == 200 and 'for="f-cond_field_0"' in compose.text
    before = snapshot(database)
    # A value that does not fit its field is refused at that row's value, before and at
    # sending; nothing is sent or recorded.
    wrong = _message_form(compose, cond_field=["member.purchases", ""], cond_op=["ge", ""],
                          cond_value=["many", ""])
    for path in ("/console/messages/preview", "/console/messages"):
        refused = manager.post(path, data=wrong)
        assert refused.status_code == 422, path
        assert re.findall(r'id="e-([\w]+)"', refused.text) == ["cond_value_0"]
        assert 'value="many"' in refused.text
    empty = manager.post("/console/messages", data=_message_form(compose, text=""))
    assert empty.status_code == 422 and 'id="e-text"' in empty.text
    assert changed_tables(before, snapshot(database)) == []
    counted = manager.post("/console/messages/preview", data=_message_form(compose))
    assert counted.status_code == 200
    assert re.search(r'id="selected">2<', counted.text)
    assert re.search(r'id="reachable">1<', counted.text)
    assert changed_tables(before, snapshot(database)) == []
    # The confirmation form carries what was counted.
    confirm = counted.text[counted.text.index('action="/console/messages"'):]
    assert 'name="cond_value" value="Kanto"' in confirm
    sent = manager.post("/console/messages", data=_message_form(counted))
    assert sent.status_code == 200 and sent.url.path.startswith("/console/messages/")
    message_id = sent.url.path.rsplit("/", 1)[1]
    figures = text_of(sent)
    assert "The message is on its way" in figures
    assert "Members the audience selected 2" in figures
    assert "Messages made (reachable members) 1" in figures
    assert "Waiting to go 0" in figures and "Opened 0" in figures
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent).where(
            OutboxEvent.type == "message.targeted")) == 1
    listed = manager.get("/console/messages")
    assert message_id in listed.text and "Winter sale" in listed.text
    owner, _ = _person(app, database, StaffRole.owner, world.a.merchant_id)
    assert owner.get(f"/console/messages/{message_id}").status_code == 200
    # Another merchant's manager: not in their list, and the message is not found.
    other, _ = _person(app, database, StaffRole.manager, world.b.merchant_id)
    assert message_id not in other.get("/console/messages").text
    hidden = other.get(f"/console/messages/{message_id}")
    assert hidden.status_code == 404 and "Winter sale" not in hidden.text
    # Nor can they send to this merchant's members: their audience is their own members.
    theirs = other.post("/console/messages/preview",
                        data=_message_form(other.get("/console/messages/new")))
    assert re.search(r'id="selected">0<', theirs.text)
    cashier, _ = _person(app, database, StaffRole.cashier, world.a.merchant_id)
    assert cashier.get(f"/console/messages/{message_id}").status_code == 403
    assert _count(database, TargetedMessage) == 1


def test_webhooks_are_added_with_the_secret_shown_once_disabled_and_their_deliveries_listed(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    manager, _ = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/webhooks")
    assert page.status_code == 200
    before = snapshot(database)
    for fields, where in (({"url": "not an address", "events": ["*"]}, "url"),
                          ({"url": "https://hooks.example.com/x", "events": []}, "events"),
                          ({"url": "https://hooks.example.com/x",
                            "events": ["nothing.happened"]}, "events")):
        refused = manager.post("/console/webhooks", data={"csrf_token": csrf(page), **fields})
        assert refused.status_code == 422, fields
        assert f'id="e-{where}"' in refused.text and 'aria-invalid="true"' in refused.text
    assert changed_tables(before, snapshot(database)) == []
    created = manager.post("/console/webhooks", data={
        "csrf_token": csrf(page), "url": "https://hooks.example.com/patron",
        "events": ["transaction.committed"], "description": "Our warehouse"})
    secret = re.search(r'id="new-secret">(whsec_[A-Za-z0-9+/=]+)<', created.text)
    assert created.status_code == 200 and secret
    assert "shown this once" in text_of(created)
    with database.session_scope() as session:
        endpoint = session.scalars(select(WebhookEndpoint)).one()
        endpoint_id = endpoint.id
        assert str(endpoint.merchant_id) == world.a.merchant_id
    again = manager.get("/console/webhooks")
    assert "https://hooks.example.com/patron" in again.text
    assert secret.group(1) not in again.text
    # A purchase's event becomes a delivery to the endpoint (made, not yet sent).
    _buy(client, world, "W-1", 1200)
    assert dispatch(database) >= 1
    detail = manager.get(f"/console/webhooks/{endpoint_id}")
    assert detail.status_code == 200
    shown = text_of(detail)
    assert "transaction.committed" in shown and "pending" in shown
    assert "No deliveries yet." in text_of(
        manager.get(f"/console/webhooks/{endpoint_id}?status=failed"))
    bad = manager.get(f"/console/webhooks/{endpoint_id}?status=lost")
    assert bad.status_code == 422 and 'id="e-status"' in bad.text
    # Another merchant's manager: not listed, not found, and cannot switch it off.
    other, other_home = _person(app, database, StaffRole.manager, world.b.merchant_id)
    assert "hooks.example.com" not in other.get("/console/webhooks").text
    assert other.get(f"/console/webhooks/{endpoint_id}").status_code == 404
    refused = other.post(f"/console/webhooks/{endpoint_id}/disable",
                         data={"csrf_token": csrf(other_home)})
    assert refused.status_code == 404
    with database.session_scope() as session:
        assert session.get(WebhookEndpoint, endpoint_id).disabled_at is None  # type: ignore[union-attr]
    disabled = manager.post(f"/console/webhooks/{endpoint_id}/disable",
                            data={"csrf_token": csrf(detail)})
    assert disabled.status_code == 200 and "Enable the endpoint" in disabled.text
    with database.session_scope() as session:
        row = session.get(WebhookEndpoint, endpoint_id)
        assert row is not None and row.disabled_reason == "by_request"
    enabled = manager.post(f"/console/webhooks/{endpoint_id}/enable",
                           data={"csrf_token": csrf(disabled)})
    assert "Disable the endpoint" in enabled.text
    with database.session_scope() as session:
        assert session.get(WebhookEndpoint, endpoint_id).disabled_at is None  # type: ignore[union-attr]
    cashier, cashier_home = _person(app, database, StaffRole.cashier, world.a.merchant_id)
    assert cashier.get(f"/console/webhooks/{endpoint_id}").status_code == 403
    assert cashier.post(f"/console/webhooks/{endpoint_id}/disable",
                        data={"csrf_token": csrf(cashier_home)}).status_code == 403
    with database.session_scope() as session:
        assert session.get(WebhookEndpoint, endpoint_id).disabled_at is None  # type: ignore[union-attr]
