"""The console's settings (docs/web.md, "The merchant console"): the points program and
tiers, benefit rules, the referral program, stores with their terminals and API keys, and
staff — each changed from its page through the API's services, each refusal at its field
with nothing changed, and another merchant's objects not found."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import func, select

from patron.db import Database
from patron.errors import Forbidden, NotFound
from patron.kit.clock import utcnow
from patron.tenancy import staff as accounts
from patron.tenancy.models import ApiKey, StaffRole, StaffSession, StaffUser, Store, Terminal
from patron.vouchers.benefits.models import BenefitRule
from tests.conftest import World, auth
from tests.web.people import PASSWORD, add_staff, browser, csrf, join, sign_in, text_of

SECTIONS = ("/console/program", "/console/benefits", "/console/referrals", "/console/stores")


def _person(app: Any, database: Database, role: StaffRole, merchant_id: str,
            email: str | None = None) -> tuple[TestClient, Response]:
    client = browser(app)
    return client, sign_in(client, add_staff(database, role, merchant_id=merchant_id,
                                             email=email))


def _count(database: Database, model: Any, *where: Any) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _offer(client: TestClient, key: str, name: str = "Free coffee") -> str:
    made = client.post("/v1/offers", headers=auth(key),
                       json={"name": name, "kind": "amount_off", "value": 300})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def _errors(response: Response) -> list[str]:
    return re.findall(r'id="e-([^"]+)"', response.text)


# --- who may open what ----------------------------------------------------------------------

def test_a_manager_opens_the_settings_but_not_staff_and_a_cashier_none(
        app: Any, database: Database, world: World) -> None:
    manager, _page = _person(app, database, StaffRole.manager, world.a.merchant_id)
    owner, _page = _person(app, database, StaffRole.owner, world.a.merchant_id)
    cashier, _page = _person(app, database, StaffRole.cashier, world.a.merchant_id)
    for path in SECTIONS:
        assert manager.get(path).status_code == 200, path
        assert owner.get(path).status_code == 200, path
        refused = cashier.get(path, follow_redirects=False)
        assert refused.status_code == 403 and "You may not open this page" in refused.text
    assert owner.get("/console/staff").status_code == 200
    assert manager.get("/console/staff", follow_redirects=False).status_code == 403
    assert cashier.get("/console/staff", follow_redirects=False).status_code == 403
    # The side navigation offers the staff page to the owner only, and the keys likewise.
    assert 'href="/console/staff"' in owner.get("/console").text
    assert 'href="/console/staff"' not in manager.get("/console").text
    assert 'id="keys-heading"' in owner.get("/console/stores").text
    assert 'id="keys-heading"' not in manager.get("/console/stores").text
    anonymous = browser(app).get("/console/program", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


# --- program and tiers ----------------------------------------------------------------------

def _program_form(page: Response, **changes: Any) -> dict[str, Any]:
    form: dict[str, Any] = {
        "csrf_token": csrf(page), "earn_points": "2", "earn_per_amount": "100",
        "rounding": "floor", "point_value_minor": "1", "min_burn": "100",
        "expiry_months": "12", "excluded_categories": "tobacco, gift_card",
        "cat_name": ["coffee", ""], "cat_bp": ["20000", ""],
        "tier_name": ["Silver", "", "Gold"], "tier_threshold": ["0", "", "1000"],
        "tier_multiplier": ["", "", "15000"]}
    form.update(changes)
    return form


def test_the_program_and_its_tiers_are_changed_and_each_refusal_is_at_its_field(
        app: Any, client: Any, database: Database, world: World) -> None:
    manager, _home = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/program")
    assert page.status_code == 200 and "You run the default program" in text_of(page)
    saved = manager.post("/console/program", data=_program_form(page))
    assert saved.status_code == 200 and saved.url.path == "/console/program"
    assert "The program is saved" in text_of(saved)
    program = client.get(f"/v1/merchants/{world.a.merchant_id}/program",
                         headers=auth(world.a.merchant_key)).json()
    assert {key: program[key] for key in (
        "configured", "earn_points", "earn_per_amount", "rounding", "point_value_minor",
        "min_burn", "expiry_months", "category_multipliers_bp", "excluded_categories")} == {
        "configured": True, "earn_points": 2, "earn_per_amount": 100, "rounding": "floor",
        "point_value_minor": 1, "min_burn": 100, "expiry_months": 12,
        "category_multipliers_bp": {"coffee": 20000},
        "excluded_categories": ["gift_card", "tobacco"]}
    assert program["tiers"] == [
        {"name": "Silver", "threshold_points": 0, "earn_multiplier_bp": 10000},
        {"name": "Gold", "threshold_points": 1000, "earn_multiplier_bp": 15000}]
    shown = text_of(saved)
    assert "Gold 1,000 \u00d71.5" in shown and "coffee \u00d72" in shown

    def unchanged() -> None:
        again = client.get(f"/v1/merchants/{world.a.merchant_id}/program",
                           headers=auth(world.a.merchant_key)).json()
        assert again == program

    # The service's refusals, at the row they name (the third row: the second one is empty).
    not_increasing = manager.post("/console/program", data=_program_form(
        saved, tier_threshold=["0", "", "0"]))
    assert not_increasing.status_code == 422
    assert _errors(not_increasing) == ["tier_threshold_2"]
    assert 'value="Gold"' in not_increasing.text  # the form keeps what was typed
    # ...with two empty rows after the last one filled, however often it is refused.
    assert not_increasing.text.count('name="tier_name"') == 5
    twice = manager.post("/console/program", data=_program_form(
        saved, cat_name=["coffee", "Coffee"], cat_bp=["20000", "15000"]))
    assert twice.status_code == 422 and _errors(twice) == ["cat_name_1"]
    excluded = manager.post("/console/program", data=_program_form(
        saved, excluded_categories="tea, coffee"))
    assert excluded.status_code == 422 and _errors(excluded) == ["excluded_categories"]
    # The schema's refusals, at their fields.
    typed = manager.post("/console/program", data=_program_form(
        saved, earn_points="two", tier_multiplier=["", "", "0"]))
    assert typed.status_code == 422
    assert sorted(_errors(typed)) == ["earn_points", "tier_multiplier_2"]
    assert 'aria-invalid="true" aria-describedby="e-earn_points"' in typed.text
    unchanged()
    # Another merchant's manager changes only their own merchant's program.
    other, _home = _person(app, database, StaffRole.manager, world.b.merchant_id)
    other.post("/console/program", data=_program_form(other.get("/console/program"),
                                                      earn_points="9"))
    unchanged()
    assert client.get(f"/v1/merchants/{world.b.merchant_id}/program",
                      headers=auth(world.b.merchant_key)).json()["earn_points"] == 9


# --- benefit rules --------------------------------------------------------------------------

def test_a_benefit_rule_is_created_counts_purchases_and_is_stopped(
        app: Any, client: Any, database: Database, world: World) -> None:
    offer_id = _offer(client, world.a.merchant_key)
    manager, _home = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/benefits")
    assert page.status_code == 200 and "No benefit rules yet" in page.text
    form = {"csrf_token": csrf(page), "name": "Every 2nd visit", "measure": "purchases",
            "mode": "every", "threshold": "0", "offer_id": offer_id, "sku": "", "category": ""}
    zero = manager.post("/console/benefits", data=form)
    assert zero.status_code == 422 and _errors(zero) == ["threshold"]
    both = manager.post("/console/benefits", data={**form, "threshold": "2", "sku": "LATTE",
                                                   "category": "coffee"})
    assert both.status_code == 422 and _errors(both) == ["category"]
    no_offer = manager.post("/console/benefits", data={**form, "threshold": "2",
                                                       "offer_id": ""})
    assert no_offer.status_code == 422 and _errors(no_offer) == ["offer_id"]
    assert _count(database, BenefitRule) == 0
    # Another merchant's offer is not found, as in the API.
    foreign = manager.post("/console/benefits", data={
        **form, "threshold": "2", "offer_id": _offer(client, world.b.merchant_key)})
    assert foreign.status_code == 404 and _count(database, BenefitRule) == 0
    created = manager.post("/console/benefits", data={**form, "threshold": "2"})
    assert created.status_code == 200 and created.url.path == "/console/benefits"
    with database.session_scope() as session:
        rule = session.scalars(select(BenefitRule)).one()
        rule_id = str(rule.id)
        assert (rule.measure, rule.mode, rule.threshold) == ("purchases", "every", 2)
    # Two purchases of a member: one benefit issued, counted on the page.
    member = join(app, database, world.a.number)
    for receipt in ("R-1", "R-2"):
        sale = client.post("/v1/pos/transactions", headers=auth(world.a.pos_key), json={
            "receipt_no": receipt, "member": {"barcode": member.member_number},
            "occurred_at": utcnow().isoformat(), "currency": "JPY",
            "lines": [{"sku": "X", "name": "X", "quantity": 1, "unit_price": 500}]})
        assert sale.status_code == 201, sale.text
    listed = text_of(manager.get("/console/benefits"))
    assert "Every 2nd visit" in listed and "Free coffee 1 active" in listed
    # Another merchant's manager cannot stop it: not found, and it stays active.
    other, other_page = _person(app, database, StaffRole.manager, world.b.merchant_id)
    refused = other.post(f"/console/benefits/{rule_id}/deactivate",
                         data={"csrf_token": csrf(other_page)})
    assert refused.status_code == 404
    assert _count(database, BenefitRule, BenefitRule.deactivated_at.is_(None)) == 1
    stopped = manager.post(f"/console/benefits/{rule_id}/deactivate",
                           data={"csrf_token": csrf(created)})
    assert stopped.status_code == 200 and "stopped" in text_of(stopped)
    assert _count(database, BenefitRule, BenefitRule.deactivated_at.is_(None)) == 0


# --- referral program -----------------------------------------------------------------------

def test_the_referral_program_is_set_and_refused_at_its_field(
        app: Any, client: Any, database: Database, world: World) -> None:
    offer_id = _offer(client, world.a.merchant_key)
    revoked_id = _offer(client, world.a.merchant_key, "Old offer")
    assert client.post(f"/v1/offers/{revoked_id}/revoke",
                       headers=auth(world.a.merchant_key)).status_code == 200
    manager, _home = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/referrals")
    assert page.status_code == 200 and "no referral program yet" in text_of(page)
    form = {"csrf_token": csrf(page), "active": "1", "referrer_points": "0",
            "referrer_offer_id": "", "referee_points": "0", "referee_offer_id": "",
            "min_purchase_minor": "1000", "monthly_cap": "5"}

    def read() -> dict[str, Any]:
        answer = client.get(f"/v1/merchants/{world.a.merchant_id}/referral-program",
                            headers=auth(world.a.merchant_key))
        return dict(answer.json())

    nothing = manager.post("/console/referrals", data=form)
    assert nothing.status_code == 422 and _errors(nothing) == ["active"]
    revoked = manager.post("/console/referrals", data={**form, "referrer_points": "100",
                                                       "referee_offer_id": revoked_id})
    assert revoked.status_code == 422 and _errors(revoked) == ["referee_offer_id"]
    negative = manager.post("/console/referrals", data={**form, "referrer_points": "-5"})
    assert negative.status_code == 422 and _errors(negative) == ["referrer_points"]
    assert read()["configured"] is False
    saved = manager.post("/console/referrals", data={**form, "referrer_points": "100",
                                                     "referee_offer_id": offer_id})
    assert saved.status_code == 200 and "The referral program is saved" in text_of(saved)
    program = read()
    assert {key: program[key] for key in (
        "configured", "active", "referrer_points", "referrer_offer_id", "referee_points",
        "referee_offer_id", "min_purchase_minor", "monthly_cap")} == {
        "configured": True, "active": True, "referrer_points": 100, "referrer_offer_id": None,
        "referee_points": 0, "referee_offer_id": offer_id, "min_purchase_minor": 1000,
        "monthly_cap": 5}
    assert "Free coffee" in text_of(saved) and "¥1,000" in text_of(saved)
    # Unticking "active" pauses it; an empty cap is no cap.
    paused = manager.post("/console/referrals", data={
        **{k: v for k, v in form.items() if k != "active"}, "referrer_points": "100",
        "monthly_cap": ""})
    assert paused.status_code == 200
    assert (read()["active"], read()["monthly_cap"]) == (False, None)


# --- stores, terminals and keys -------------------------------------------------------------

def test_stores_and_terminals_are_added_and_a_terminals_key_works_once_shown(
        app: Any, client: Any, database: Database, world: World) -> None:
    manager, _home = _person(app, database, StaffRole.manager, world.a.merchant_id)
    page = manager.get("/console/stores")
    assert "Main store" in page.text and "pos-1" in page.text
    stores_before = _count(database, Store)
    taken = manager.post("/console/stores", data={"csrf_token": csrf(page), "code": "main",
                                                  "name": "Again", "kind": "shop"})
    assert taken.status_code == 409 and _errors(taken) == ["store_code"]
    zone = manager.post("/console/stores", data={"csrf_token": csrf(page), "code": "ginza",
                                                 "name": "Ginza", "kind": "shop",
                                                 "timezone": "Mars/Olympus"})
    assert zone.status_code == 422 and _errors(zone) == ["store_timezone"]
    assert 'value="Ginza"' in zone.text
    assert _count(database, Store) == stores_before
    added = manager.post("/console/stores", data={"csrf_token": csrf(page), "code": "ginza",
                                                  "name": "Ginza", "kind": "shop",
                                                  "address": "1 Ginza, Tokyo"})
    assert added.status_code == 200 and "Ginza" in added.text
    with database.session_scope() as session:
        store = session.scalars(select(Store).where(Store.code == "ginza")).one()
        store_id = str(store.id)
        assert (store.merchant_id, store.timezone) == (uuid.UUID(world.a.merchant_id),
                                                       "Asia/Tokyo")
    keys_before = _count(database, ApiKey)
    terminal = manager.post(f"/console/stores/{store_id}/terminals", data={
        "csrf_token": csrf(added), "code": "pos-9", "kind": "pos"})
    key = re.search(r'id="new-key">([^<]+)<', terminal.text)
    assert terminal.status_code == 200 and key and "shown this once" in text_of(terminal)
    # The key works, as the terminal's: an unknown member, not an unknown key.
    identified = client.post("/v1/identify", headers=auth(key.group(1)),
                             json={"barcode": f"{world.a.number:05d}000000000"})
    assert identified.status_code == 404 and identified.json()["code"] == "member_not_found"
    again = manager.get("/console/stores")
    assert key.group(1) not in again.text
    assert _count(database, ApiKey) == keys_before + 1
    duplicate = manager.post(f"/console/stores/{store_id}/terminals", data={
        "csrf_token": csrf(again), "code": "pos-9", "kind": "pos"})
    assert duplicate.status_code == 409 and _errors(duplicate) == [f"terminal_code-{store_id}"]
    bad_kind = manager.post(f"/console/stores/{store_id}/terminals", data={
        "csrf_token": csrf(again), "code": "pos-10", "kind": "toaster"})
    assert bad_kind.status_code == 422 and _errors(bad_kind) == [f"terminal_kind-{store_id}"]
    assert _count(database, Terminal, Terminal.store_id == uuid.UUID(store_id)) == 1
    with database.session_scope() as session:
        terminal_id = str(session.scalars(select(Terminal.id).where(
            Terminal.code == "pos-9")).one())
    # Deactivated: its key is refused; reactivated: it works again.
    off = manager.post(f"/console/terminals/{terminal_id}/deactivate",
                       data={"csrf_token": csrf(again)})
    assert off.status_code == 200 and "deactivated" in text_of(off)
    refused = client.post("/v1/identify", headers=auth(key.group(1)),
                          json={"barcode": f"{world.a.number:05d}000000000"})
    assert refused.status_code == 403 and refused.json()["code"] == "terminal_inactive"
    on = manager.post(f"/console/terminals/{terminal_id}/reactivate",
                      data={"csrf_token": csrf(off)})
    assert on.status_code == 200
    assert client.post("/v1/identify", headers=auth(key.group(1)), json={
        "barcode": f"{world.a.number:05d}000000000"}).status_code == 404


def test_another_merchants_staff_find_none_of_this_merchants_objects(
        app: Any, client: Any, database: Database, world: World) -> None:
    other, page = _person(app, database, StaffRole.manager, world.b.merchant_id)
    other_owner, owner_page = _person(app, database, StaffRole.owner, world.b.merchant_id)
    token = {"csrf_token": csrf(page)}
    terminals_before = _count(database, Terminal)
    assert other.post(f"/console/stores/{world.a.store_id}/terminals",
                      data={**token, "code": "sneaky", "kind": "pos"}).status_code == 404
    # Not found even with a form the page would refuse: nothing is told of the store.
    assert other.post(f"/console/stores/{world.a.store_id}/terminals",
                      data={**token, "code": "", "kind": "toaster"}).status_code == 404
    assert _count(database, Terminal) == terminals_before
    assert other.post(f"/console/terminals/{world.a.pos_id}/deactivate",
                      data=token).status_code == 404
    assert _count(database, Terminal, Terminal.active.is_(True),
                  Terminal.id == uuid.UUID(world.a.pos_id)) == 1
    _person(app, database, StaffRole.cashier, world.a.merchant_id)
    with database.session_scope() as session:
        key_id = session.scalars(select(ApiKey.id).where(
            ApiKey.terminal_id == uuid.UUID(world.a.pos_id))).one()
        staff_id = session.scalars(select(StaffUser.id).where(
            StaffUser.merchant_id == uuid.UUID(world.a.merchant_id))).one()
    # Keys and staff are the owner's pages: a manager is refused before any id is looked
    # at, another merchant's owner finds neither.
    assert other.post(f"/console/keys/{key_id}/revoke", data=token).status_code == 403
    assert other.post(f"/console/staff/{staff_id}/disable", data=token).status_code == 403
    owner_token = {"csrf_token": csrf(owner_page)}
    assert other_owner.post(f"/console/keys/{key_id}/revoke",
                            data=owner_token).status_code == 404
    assert other_owner.post(f"/console/staff/{staff_id}/disable",
                            data=owner_token).status_code == 404
    assert client.post("/v1/identify", headers=auth(world.a.pos_key), json={
        "barcode": f"{world.a.number:05d}000000000"}).status_code == 404  # still works
    assert _count(database, StaffUser, StaffUser.id == staff_id,
                  StaffUser.disabled_at.is_(None)) == 1
    # The other merchant's own pages list none of these.
    listed = other_owner.get("/console/stores").text
    assert world.a.store_id not in listed and str(key_id) not in listed
    assert str(staff_id) not in other_owner.get("/console/staff").text


def test_the_owner_creates_a_merchant_key_shown_once_and_revokes_it(
        app: Any, client: Any, database: Database, world: World) -> None:
    owner, _home = _person(app, database, StaffRole.owner, world.a.merchant_id)
    page = owner.get("/console/stores")
    keys_before = _count(database, ApiKey)
    bad = owner.post("/console/keys", data={"csrf_token": csrf(page), "label": "Shop",
                                            "expires_days": "soon"})
    assert bad.status_code == 422 and _errors(bad) == ["key_expires_days"]
    past = owner.post("/console/keys", data={"csrf_token": csrf(page), "label": "Shop",
                                             "expires_days": "-1"})
    assert past.status_code == 422 and _errors(past) == ["key_expires_days"]
    assert _count(database, ApiKey) == keys_before
    made = owner.post("/console/keys", data={"csrf_token": csrf(page), "label": "Web shop",
                                             "expires_days": "90"})
    key = re.search(r'id="new-key">([^<]+)<', made.text)
    assert made.status_code == 200 and key and "The new merchant key" in text_of(made)
    assert client.get("/v1/keys", headers=auth(key.group(1))).status_code == 200
    with database.session_scope() as session:
        created = session.scalars(select(ApiKey).where(ApiKey.label == "Web shop")).one()
        key_id = created.id
        assert created.role == "merchant" and created.expires_at is not None
        assert str(created.merchant_id) == world.a.merchant_id
    again = owner.get("/console/stores")
    assert key.group(1) not in again.text and "Web shop" in again.text
    # A manager may neither make nor revoke keys (the console's administration).
    manager, manager_page = _person(app, database, StaffRole.manager, world.a.merchant_id)
    assert manager.post("/console/keys", data={"csrf_token": csrf(manager_page),
                                               "label": "Mine"}).status_code == 403
    assert manager.post(f"/console/keys/{key_id}/revoke",
                        data={"csrf_token": csrf(manager_page)}).status_code == 403
    assert _count(database, ApiKey) == keys_before + 1
    revoked = owner.post(f"/console/keys/{key_id}/revoke", data={"csrf_token": csrf(again)})
    assert revoked.status_code == 200 and "revoked" in text_of(revoked)
    assert client.get("/v1/keys", headers=auth(key.group(1))).status_code == 401


# --- staff and roles ------------------------------------------------------------------------

def test_the_owner_invites_staff_and_disables_them(
        app: Any, database: Database, world: World) -> None:
    owner, _home = _person(app, database, StaffRole.owner, world.a.merchant_id,
                           email="owner-a@example.com")
    page = owner.get("/console/staff")
    assert page.status_code == 200 and "owner-a@example.com" in page.text
    form = {"csrf_token": csrf(page), "name": "Carol", "email": "carol@example.com",
            "role": "manager"}
    staff_before = _count(database, StaffUser)
    no_email = owner.post("/console/staff", data={**form, "email": "carol"})
    assert no_email.status_code == 422 and _errors(no_email) == ["email"]
    no_role = owner.post("/console/staff", data={**form, "role": "operator"})
    assert no_role.status_code == 422 and _errors(no_role) == ["role"]
    taken = owner.post("/console/staff", data={**form, "email": "owner-a@example.com"})
    assert taken.status_code == 409 and _errors(taken) == ["email"]
    assert _count(database, StaffUser) == staff_before
    invited = owner.post("/console/staff", data=form)
    link = re.search(r'id="invitation-link">[^<]*(/invitation/[A-Za-z0-9_-]+)<', invited.text)
    assert invited.status_code == 200 and link
    assert link.group(1) not in owner.get("/console/staff").text  # shown once
    carol = browser(app)
    accepted = carol.post(link.group(1), data={
        "csrf_token": csrf(carol.get(link.group(1))), "password": PASSWORD,
        "password_again": PASSWORD})
    assert accepted.url.path == "/login"
    landed = sign_in(carol, "carol@example.com")
    assert landed.url.path == "/console" and f"Merchant {world.a.number}" in landed.text
    with database.session_scope() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.name == "Carol")).one()
        carol_id = user.id
        assert (user.role, str(user.merchant_id)) == ("manager", world.a.merchant_id)
    # The owner cannot disable themselves (the page offers no button; a forged form is
    # refused and changes nothing).
    with database.session_scope() as session:
        owner_id = session.scalars(select(StaffUser.id).where(
            StaffUser.name == "Owner", StaffUser.merchant_id == uuid.UUID(
                world.a.merchant_id))).one()
    own = owner.post(f"/console/staff/{owner_id}/disable", data={"csrf_token": csrf(page)})
    assert own.status_code == 409 and _errors(own) == [f"disable-{owner_id}"]
    assert _count(database, StaffUser, StaffUser.disabled_at.is_not(None)) == 0
    disabled = owner.post(f"/console/staff/{carol_id}/disable",
                          data={"csrf_token": csrf(page)})
    assert disabled.status_code == 200 and "disabled" in text_of(disabled)
    # Signed out at once, and no longer let in.
    assert _count(database, StaffSession, StaffSession.staff_user_id == carol_id) == 0
    assert carol.get("/console", follow_redirects=False).status_code == 303
    again = sign_in(carol, "carol@example.com")
    assert again.status_code == 401 and again.url.path == "/login"
    assert owner.get("/console").status_code == 200  # the owner is still signed in


def test_only_the_merchants_owner_disables_and_never_themselves(
        database: Database, world: World) -> None:
    owner_email = add_staff(database, StaffRole.owner, merchant_id=world.a.merchant_id)
    add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    add_staff(database, StaffRole.owner, merchant_id=world.b.merchant_id)
    with database.session_scope() as session:
        people = {(user.role, str(user.merchant_id)): user
                  for user in session.scalars(select(StaffUser))}
        owner = people[("owner", world.a.merchant_id)]
        manager = people[("manager", world.a.merchant_id)]
        other_owner = people[("owner", world.b.merchant_id)]
        with pytest.raises(Forbidden):
            accounts.disable_staff(session, actor_user=manager, staff_id=owner.id)
        with pytest.raises(NotFound):
            accounts.disable_staff(session, actor_user=other_owner, staff_id=manager.id)
        with pytest.raises(NotFound):
            accounts.disable_staff(session, actor_user=owner, staff_id=uuid.uuid4())
        with pytest.raises(accounts.StaffSelfDisable):
            accounts.disable_staff(session, actor_user=owner, staff_id=owner.id)
        assert accounts.disable_staff(session, actor_user=owner,
                                      staff_id=manager.id).disabled_at is not None
    assert owner_email
