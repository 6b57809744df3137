"""The operator console (docs/web.md, "The operator console"): a merchant, a store and a
terminal added from the pages, the terminal's key shown once and working, staff invited."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import func, select

from patron.db import Database
from patron.tenancy.models import ApiKey, Merchant, StaffRole
from tests.conftest import World, auth
from tests.web.people import PASSWORD, add_staff, browser, csrf, sign_in, text_of


def test_the_operator_adds_a_merchant_a_store_and_a_terminal_and_sees_its_key_once(
        app: Any, client: Any, database: Database, world: World) -> None:
    operator = browser(app)
    home = sign_in(operator, add_staff(database, StaffRole.operator))
    assert home.url.path == "/operator"
    assert f"Merchant {world.a.number}" in home.text  # the coalition's merchants
    taken = operator.post("/operator/merchants", data={
        "csrf_token": csrf(home), "number": str(world.a.number), "name": "Again",
        "currency": "JPY", "timezone": "Asia/Tokyo", "country": "JP"})
    assert taken.status_code == 409 and 'id="e-number"' in taken.text
    bad = operator.post("/operator/merchants", data={
        "csrf_token": csrf(home), "number": "23456", "name": "Books", "currency": "XXY",
        "timezone": "Mars/Olympus", "country": "US"})
    assert bad.status_code == 422
    assert 'id="e-currency"' in bad.text and 'id="e-timezone"' in bad.text
    added = operator.post("/operator/merchants", data={
        "csrf_token": csrf(home), "number": "23456", "name": "Books", "currency": "USD",
        "timezone": "America/New_York", "country": "US"})
    assert added.url.path.startswith("/operator/merchants/")
    store = operator.post(f"{added.url.path}/stores", data={
        "csrf_token": csrf(added), "code": "nyc", "name": "New York"})
    assert store.status_code == 200 and "New York" in store.text
    store_id = re.search(r"/operator/stores/([0-9a-f-]+)/terminals", store.text)
    assert store_id
    with database.session_scope() as session:
        keys_before = session.scalar(select(func.count()).select_from(ApiKey))
    terminal = operator.post(f"/operator/stores/{store_id.group(1)}/terminals", data={
        "csrf_token": csrf(store), "code": "pos-1", "kind": "pos"})
    key = re.search(r'id="new-key">([^<]+)<', terminal.text)
    assert terminal.status_code == 200 and key
    assert "shown this once" in text_of(terminal)
    # The key works, as the terminal's: it may identify at its merchant.
    identified = client.post("/v1/identify", headers=auth(key.group(1)),
                             json={"barcode": "23456000000000"})
    assert identified.status_code == 404  # an unknown member, not an unknown key
    # Shown once: the merchant's page never shows it again.
    again = operator.get(added.url.path)
    assert key.group(1) not in again.text
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(ApiKey)) == keys_before + 1
    invited = operator.post(f"{added.url.path}/staff", data={
        "csrf_token": csrf(again), "name": "Bob", "email": "bob@example.com",
        "role": "owner"})
    link = re.search(r'id="invitation-link">[^<]*(/invitation/[a-z0-9]+)<', invited.text)
    assert link
    owner = browser(app)
    accepted = owner.post(link.group(1), data={"csrf_token": csrf(owner.get(link.group(1))),
                                               "password": PASSWORD,
                                               "password_again": PASSWORD})
    assert accepted.url.path == "/login"
    assert sign_in(owner, "bob@example.com").url.path == "/console"
    assert "Books" in owner.get("/console").text


def test_merchant_staff_cannot_open_the_operator_console_nor_add_a_merchant(
        app: Any, database: Database, world: World) -> None:
    owner = browser(app)
    page = sign_in(owner, add_staff(database, StaffRole.owner, merchant_id=world.a.merchant_id))
    assert owner.get("/operator", follow_redirects=False).status_code == 403
    refused = owner.post("/operator/merchants", data={
        "csrf_token": csrf(page), "number": "34567", "name": "Sneaky", "currency": "JPY",
        "timezone": "Asia/Tokyo", "country": "JP"})
    assert refused.status_code == 403
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Merchant).where(
            Merchant.number == 34567)) == 0
