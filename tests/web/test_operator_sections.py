"""The operator console's sections (docs/web.md, "The operator console"): the miles rates
changed with errors at their fields, the settlement across merchants, staff and an
operator invited, API keys made (shown once) and revoked, the jobs and the deliveries'
health — each only for the operator, a merchant's owner or manager 403 with nothing
changed."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from patron.coalition.models import CoalitionRate
from patron.db import Database
from patron.jobs.models import JobRun
from patron.jobs.scheduler import JOBS, run_all
from patron.kit.clock import clock
from patron.notify.worker import dispatch
from patron.tenancy.models import ApiKey, StaffRole, StaffUser
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.web.people import PASSWORD, add_staff, browser, csrf, join, sign_in, text_of

PAGES = ("/operator/rates", "/operator/settlements", "/operator/staff", "/operator/keys",
         "/operator/jobs", "/operator/deliveries")


def _operator(app: Any, database: Database) -> tuple[TestClient, Any]:
    client = browser(app)
    return client, sign_in(client, add_staff(database, StaffRole.operator,
                                             email="ops@example.com"))


def _count(database: Database, model: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _rates_form(page: Any, rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {"csrf_token": csrf(page), "currency": [row[0] for row in rows],
            "spend_per_mile": [row[1] for row in rows],
            "mile_value_milli": [row[2] for row in rows]}


def test_only_the_operator_opens_the_sections_and_the_nav_marks_the_current_one(
        app: Any, database: Database, world: World) -> None:
    operator, home = _operator(app, database)
    assert 'href="/operator/rates"' in home.text
    assert re.search(r'<a href="/operator" aria-current="page">', home.text)
    merchant_page = operator.get(f"/operator/merchants/{world.a.merchant_id}")
    assert re.search(r'<a href="/operator" aria-current="page">', merchant_page.text)
    for page in PAGES:
        shown = operator.get(page)
        assert shown.status_code == 200, page
        assert re.search(rf'<a href="{page}" aria-current="page">', shown.text), page
    before = snapshot(database)
    for role in (StaffRole.owner, StaffRole.manager):
        client = browser(app)
        landed = sign_in(client, add_staff(database, role, merchant_id=world.a.merchant_id))
        token = csrf(landed)
        for page in PAGES:
            refused = client.get(page, follow_redirects=False)
            assert refused.status_code == 403, (role, page)
            assert refused.headers["content-type"].startswith("text/html")
        before = snapshot(database)
        for path, form in (
                ("/operator/rates", {"currency": "JPY", "spend_per_mile": "1",
                                     "mile_value_milli": "1"}),
                ("/operator/staff", {"name": "Eve", "email": "eve@example.com"}),
                ("/operator/keys", {"role": "operator"})):
            assert client.post(path, data={"csrf_token": token, **form}
                               ).status_code == 403, (role, path)
        with database.session_scope() as session:
            key_id = session.scalars(select(ApiKey.id)).first()
        assert client.post(f"/operator/keys/{key_id}/revoke",
                           data={"csrf_token": token}).status_code == 403
        assert changed_tables(before, snapshot(database)) == []
    anonymous = browser(app).get("/operator/keys", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def test_the_operator_changes_the_rates_with_errors_at_their_fields(
        app: Any, database: Database, world: World) -> None:
    operator, _home = _operator(app, database)
    page = operator.get("/operator/rates")
    assert "No rates" in text_of(page)
    before = snapshot(database)
    for rows, where in (
            ([("JPY", "100", "1000"), ("XXQ", "100", "670")], "rate_currency_1"),
            ([("JPY", "a hundred", "1000")], "rate_spend_per_mile_0"),
            ([("JPY", "100", "0")], "rate_mile_value_milli_0"),
            ([("JPY", "100", "1000"), ("", "", ""), ("jpy", "50", "500")], "rate_currency_2")):
        refused = operator.post("/operator/rates", data=_rates_form(page, rows))
        assert refused.status_code == 422, rows
        assert re.findall(r'id="e-(rate_\w+)"', refused.text) == [where], rows
        assert f'aria-describedby="e-{where}"' in refused.text
    assert changed_tables(before, snapshot(database)) == []
    saved = operator.post("/operator/rates", data=_rates_form(
        page, [("JPY", "100", "1000"), ("", "", ""), ("usd", "100", "670")]))
    assert saved.status_code == 200 and saved.url.path == "/operator/rates"
    assert "The rates are saved." in text_of(saved)
    with database.session_scope() as session:
        assert [(rate.currency, rate.spend_per_mile, rate.mile_value_milli)
                for rate in session.scalars(select(CoalitionRate)
                                            .order_by(CoalitionRate.currency))] == [
            ("JPY", 100, 1000), ("USD", 100, 670)]
    shown = text_of(operator.get("/operator/rates"))
    assert "JPY 100 1,000" in shown and "USD 100 670" in shown


def test_the_settlement_across_merchants_with_the_coalitions_line(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    clock.freeze(datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    assert client.put("/v1/coalition/rates", headers=auth(world.operator_key), json={
        "rates": [{"currency": "JPY", "spend_per_mile": 100, "mile_value_milli": 1000}]}
                      ).status_code == 200
    member = join(app, database, world.a.number)
    bought = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "S-1", "occurred_at": "2026-12-07T02:00:00+00:00", "currency": "JPY",
        "member": {"barcode": member.member_number},
        "lines": [{"sku": "X", "name": "X", "quantity": 1, "unit_price": 25_000}]})
    assert bought.status_code == 201, bought.text
    operator, _home = _operator(app, database)
    shown = text_of(operator.get("/operator/settlements"))
    assert f"Merchant {world.a.number} 250 0 -250 ¥250 ¥0 -¥250 the merchant pays" in shown
    assert f"Merchant {world.b.number} 0 0 0 no rate no rate no rate" in shown
    assert "The coalition (miles members now hold) 250 0 250" in shown
    before = snapshot(database)
    refused = operator.get("/operator/settlements?period=December")
    assert refused.status_code == 422 and 'id="e-period"' in refused.text
    assert changed_tables(before, snapshot(database)) == []


def test_the_operator_sees_every_staff_user_and_invites_an_operator(
        app: Any, database: Database, world: World) -> None:
    manager_email = add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    operator, _home = _operator(app, database)
    page = operator.get("/operator/staff")
    shown = text_of(page)
    assert f"{manager_email} Manager {world.a.number:05d} Merchant {world.a.number}" in shown
    assert "never" in shown  # the manager has not signed in
    assert re.search(r"ops@example\.com Operator — active \w", shown)
    before = snapshot(database)
    for fields, where, status in (({"name": "Dee", "email": "no-address"}, "email", 422),
                                  ({"name": "", "email": "dee@example.com"}, "name", 422),
                                  ({"name": "Dee", "email": manager_email}, "email", 409)):
        refused = operator.post("/operator/staff", data={"csrf_token": csrf(page), **fields})
        assert refused.status_code == status, fields
        assert f'id="e-{where}"' in refused.text, fields
    assert changed_tables(before, snapshot(database)) == []
    invited = operator.post("/operator/staff", data={"csrf_token": csrf(page), "name": "Dee",
                                                     "email": "dee@example.com"})
    link = re.search(r'id="invitation-link">[^<]*(/invitation/[a-z0-9]+)<', invited.text)
    assert invited.status_code == 200 and link
    assert "invited, no password yet" in text_of(invited)
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(StaffUser).where(
            StaffUser.role == "operator")) == 2
    dee = browser(app)
    dee.post(link.group(1), data={"csrf_token": csrf(dee.get(link.group(1))),
                                  "password": PASSWORD, "password_again": PASSWORD})
    assert sign_in(dee, "dee@example.com").url.path == "/operator"


def test_keys_are_listed_made_once_and_revoked(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    operator, _home = _operator(app, database)
    page = operator.get("/operator/keys")
    with database.session_scope() as session:
        prefixes = list(session.scalars(select(ApiKey.prefix)))
    assert all(prefix in page.text for prefix in prefixes)
    assert "main/pos-1" in page.text
    before = snapshot(database)
    for fields, where in (({"role": "merchant"}, "role"),
                          ({"role": "owner"}, "role"),
                          ({"role": "operator", "expires_on": "2020-01-01"}, "expires_on"),
                          ({"role": "operator", "expires_on": "soon"}, "expires_on")):
        refused = operator.post("/operator/keys", data={"csrf_token": csrf(page), **fields})
        assert refused.status_code == 422, fields
        assert f'id="e-{where}"' in refused.text and 'aria-invalid="true"' in refused.text
    assert changed_tables(before, snapshot(database)) == []
    made = operator.post("/operator/keys", data={
        "csrf_token": csrf(page), "role": "merchant", "merchant_id": world.b.merchant_id,
        "label": "warehouse"})
    key = re.search(r'id="new-key">(ptn_[a-z0-9]+)<', made.text)
    assert made.status_code == 200 and key
    assert "shown this once" in text_of(made)
    # The key works as the merchant's, and the list never shows it again.
    assert client.get("/v1/security-events", headers=auth(key.group(1))).status_code == 200
    listed = operator.get("/operator/keys")
    assert key.group(1) not in listed.text and "warehouse" in listed.text
    with database.session_scope() as session:
        key_id = session.scalar(select(ApiKey.id).where(ApiKey.label == "warehouse"))
    revoked = operator.post(f"/operator/keys/{key_id}/revoke",
                            data={"csrf_token": csrf(listed)})
    assert revoked.status_code == 200 and "The key is revoked" in text_of(revoked)
    assert client.get("/v1/security-events", headers=auth(key.group(1))).status_code == 401
    unknown = operator.post("/operator/keys/00000000-0000-4000-8000-000000000000/revoke",
                            data={"csrf_token": csrf(listed)})
    assert unknown.status_code == 404


def test_the_jobs_page_shows_each_jobs_last_run_as_recorded(
        app: Any, database: Database, world: World) -> None:
    operator, _home = _operator(app, database)
    before = text_of(operator.get("/operator/jobs"))
    assert "PATRON_JOBS_INTERVAL_SECONDS is 0" in before
    assert "Expiry notices expiry-notices at most hourly never ran" in before
    clock.freeze(datetime(2026, 12, 7, 3, 0, tzinfo=UTC))
    reports = run_all(database)  # what `patron jobs run` does
    assert not [report for report in reports if report.failed]
    after = text_of(operator.get("/operator/jobs"))
    assert "Expire points expire-points at every tick Dec 7, 2026, 3:00:00 AM done" in after
    with database.session_scope() as session:
        runs = {run.job: run.runs for run in session.scalars(select(JobRun))}
    assert set(runs) == {job.name for job in JOBS} and set(runs.values()) == {1}


def test_delivery_health_counts_the_outbox_and_the_deliveries_per_channel(
        app: Any, client: TestClient, database: Database, world: World) -> None:
    endpoint = client.post("/v1/webhook-endpoints", headers=auth(world.a.merchant_key),
                           json={"url": "https://hooks.example.com/a", "events": ["*"]})
    assert endpoint.status_code == 201, endpoint.text
    assert client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
        "receipt_no": "H-1", "occurred_at": datetime.now(UTC).isoformat(), "currency": "JPY",
        "lines": [{"sku": "X", "name": "X", "quantity": 1, "unit_price": 500}]}
                       ).status_code == 201
    operator, _home = _operator(app, database)
    waiting = operator.get("/operator/deliveries")
    written = int(re.search(r'id="events-written">(\d+)<', waiting.text).group(1))  # type: ignore[union-attr]
    assert written >= 1
    assert re.search(rf'id="events-undispatched">{written}<', waiting.text)
    assert dispatch(database) == written
    made = operator.get("/operator/deliveries")
    assert re.search(r'id="events-undispatched">0<', made.text)
    # Webhook: none sent, `written` waiting, none failed or suppressed; all waiting now,
    # all due, the oldest for under a minute.
    assert _row(made.text, "webhook") == f"Webhook 0 {written} 0 0 {written} {written} 0 min"
    assert _row(made.text, "email") == "E-mail 0 0 0 0 0 0 —"


def _row(html: str, channel: str) -> str:
    found = re.search(rf'<tr id="channel-{channel}">(.*?)</tr>', html, re.S)
    assert found, channel
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())
