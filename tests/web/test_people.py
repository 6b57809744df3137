"""Staff sign-in (docs/web.md, "People"): passwords, the lock-out, the second factor,
invitations, the session cookie (flags, fixation, signing out) and CSRF."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from patron.db import Database
from patron.kit import totp
from patron.tenancy import staff
from patron.tenancy.models import StaffRole, StaffSession, StaffUser
from tests.conftest import World
from tests.web.people import PASSWORD, add_staff, browser, csrf, sign_in, text_of


def _sessions(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(StaffSession)) or 0)


def test_a_manager_signs_in_and_lands_on_the_console_with_a_fresh_secure_session(
        app: Any, database: Database, world: World) -> None:
    email = add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    client = browser(app)
    # A session cookie the attacker chose before sign-in (fixation) opens nothing…
    client.cookies.set("__Host-patron_staff", "attacker-chosen-token", domain="testserver.local")
    assert client.get("/console", follow_redirects=False).status_code == 303
    response = sign_in(client, email, follow=False)
    assert response.status_code == 303 and response.headers["location"] == "/console"
    cookies = {c.split("=", 1)[0]: c for c in response.headers.get_list("set-cookie")}
    session_cookie = cookies["__Host-patron_staff"]
    for flag in ("HttpOnly", "Secure", "Path=/", "SameSite=lax"):
        assert flag in session_cookie
    assert "Domain" not in session_cookie
    # …and signing in issued a new one, never the value the browser came with.
    token = session_cookie.split("=", 1)[1].split(";", 1)[0]
    assert token != "attacker-chosen-token" and len(token) >= 50
    # The CSRF cookie is renewed at sign-in as well.
    assert "__Host-patron_csrf" in cookies and "SameSite=strict" in cookies["__Host-patron_csrf"]
    with database.session_scope() as session:
        stored = session.scalars(select(StaffSession.token_hash)).all()
    assert token not in stored  # only the token's hash is kept


def test_a_wrong_password_and_an_unknown_email_get_the_same_answer_and_five_lock(
        app: Any, database: Database, world: World) -> None:
    email = add_staff(database, StaffRole.owner, merchant_id=world.a.merchant_id)
    client = browser(app)
    unknown = sign_in(client, "nobody@example.com", "whatever-it-is")
    wrong = sign_in(client, email, "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert "The e-mail address or the password is wrong" in text_of(unknown)
    assert "The e-mail address or the password is wrong" in text_of(wrong)
    for _ in range(3):
        assert sign_in(client, email, "not the password").status_code == 401
    locked = sign_in(client, email, "not the password")
    assert locked.status_code == 423
    # Locked: even the right password is refused, and nothing was opened.
    assert sign_in(client, email).status_code == 423
    assert _sessions(database) == 0
    with database.session_scope() as session:
        user = session.scalars(select(StaffUser).where(
            StaffUser.email_hash == staff.email_lookup(email))).one()
        assert user.failed_logins == 5 and user.locked_until is not None


def test_the_second_factor_is_required_and_a_code_works_once(
        app: Any, database: Database, world: World) -> None:
    email = add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    secret = totp.new_secret()
    with database.session_scope() as session:
        user = session.scalars(select(StaffUser).where(
            StaffUser.email_hash == staff.email_lookup(email))).one()
        staff.enable_totp(session, user=user, secret=secret,
                          code=totp.totp(secret, time.time()))
    client = browser(app)
    first = sign_in(client, email)
    assert first.url.path == "/login/second-factor"
    # Waiting for the code: the session opens no page yet.
    assert client.get("/console", follow_redirects=False).status_code == 303
    wrong = client.post("/login/second-factor", data={"csrf_token": csrf(first),
                                                       "code": "000000"})
    assert wrong.status_code == 401
    code = totp.totp(secret, time.time())
    right = client.post("/login/second-factor", data={"csrf_token": csrf(wrong), "code": code})
    assert right.status_code == 200 and right.url.path == "/console"
    # The same code on another sign-in is a replay: refused.
    other = browser(app)
    again = sign_in(other, email)
    replay = other.post("/login/second-factor", data={"csrf_token": csrf(again),
                                                       "code": code})
    assert replay.status_code == 401


def test_an_invitation_sets_the_password_once(app: Any, database: Database,
                                              world: World) -> None:
    with database.session_scope() as session:
        _user, token = staff.create_staff(session, inviter=None, email="new@example.com",
                                          name="New Cashier", role=StaffRole.cashier,
                                          merchant_id=uuid.UUID(world.a.merchant_id))
    assert token is not None
    client = browser(app)
    page = client.get(f"/invitation/{token}")
    assert page.status_code == 200 and "new@example.com" in page.text
    short = client.post(f"/invitation/{token}", data={
        "csrf_token": csrf(page), "password": "short", "password_again": "short"})
    assert short.status_code == 422 and "at least 10 characters" in text_of(short)
    done = client.post(f"/invitation/{token}", data={
        "csrf_token": csrf(page), "password": PASSWORD, "password_again": PASSWORD})
    assert done.status_code == 200 and done.url.path == "/login"
    assert client.get(f"/invitation/{token}").status_code == 410
    assert sign_in(browser(app), "new@example.com").url.path in ("/register/choose",
                                                                  "/register")


def test_signing_out_ends_the_session_on_the_server(app: Any, database: Database,
                                                   world: World) -> None:
    email = add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    client = browser(app)
    console = sign_in(client, email)
    token = client.cookies.get("__Host-patron_staff")
    assert console.status_code == 200 and token
    out = client.post("/logout", data={"csrf_token": csrf(console)})
    assert out.url.path == "/login"
    assert _sessions(database) == 0
    # The old cookie, sent again, opens nothing.
    stale = browser(app)
    stale.cookies.set("__Host-patron_staff", token, domain="testserver.local")
    assert stale.get("/console", follow_redirects=False).status_code == 303


def test_forms_without_the_csrf_token_or_from_another_site_are_refused_and_change_nothing(
        app: Any, database: Database, world: World) -> None:
    email = add_staff(database, StaffRole.manager, merchant_id=world.a.merchant_id)
    client = browser(app)
    page = client.get("/login")
    token = csrf(page)
    form = {"email": email, "password": PASSWORD}
    assert client.post("/login", data=form).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": "0" * 64}).status_code == 403
    assert client.post("/login", data={**form, "csrf_token": token},
                       headers={"Origin": "https://evil.example"}).status_code == 403
    # Another browser's token does not fit this browser's cookie.
    other = browser(app)
    assert other.post("/login", data={**form, "csrf_token": token}).status_code == 403
    assert _sessions(database) == 0
    assert client.post("/login", data={**form, "csrf_token": token}).status_code == 200
    assert _sessions(database) == 1


def test_a_page_names_no_outside_address_and_carries_the_security_headers(
        app: Any) -> None:
    response = browser(app).get("/login")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "unsafe-eval" not in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


def test_a_staff_user_sets_up_an_authenticator_on_their_account_page(
        app: Any, database: Database, world: World) -> None:
    email = add_staff(database, StaffRole.cashier, merchant_id=world.a.merchant_id)
    client = browser(app)
    landed = sign_in(client, email)
    account = client.get("/account")
    assert account.status_code == 200 and email in account.text
    started = client.post("/account/totp", data={"csrf_token": csrf(landed)})
    secret = re.search(r'name="secret" value="([A-Z2-7]+)"', started.text)
    assert started.status_code == 200 and secret
    wrong = client.post("/account/totp/confirm", data={
        "csrf_token": csrf(started), "secret": secret.group(1), "code": "000000"})
    assert wrong.status_code == 401 and 'id="e-code"' in wrong.text
    tampered = client.post("/account/totp/confirm", data={
        "csrf_token": csrf(started), "secret": "not base32!", "code": "123456"})
    assert tampered.status_code == 401
    done = client.post("/account/totp/confirm", data={
        "csrf_token": csrf(started), "secret": secret.group(1),
        "code": totp.totp(secret.group(1), time.time())})
    assert done.url.path == "/account" and "set up" in text_of(done)
    # Signing in again now asks for the code.
    again = browser(app)
    assert sign_in(again, email).url.path == "/login/second-factor"
    # Nobody signed in: the account page sends to the sign-in page.
    assert browser(app).get("/account", follow_redirects=False).status_code == 303
