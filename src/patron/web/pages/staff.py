"""Staff sign-in (docs/web.md, "People"): the e-mail and password, the authenticator
app's code when the account has one, invitations, signing out; and the one check every
staff page makes (``staff_in``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.errors import PatronError
from patron.identity import images
from patron.kit import totp
from patron.tenancy import staff
from patron.tenancy.models import StaffRole, StaffUser
from patron.tenancy.rules import Area, may_open
from patron.tenancy.service import Principal
from patron.tenancy.staff import StaffContext
from patron.web.pages.common import (
    PageRefused,
    database_of,
    field_errors,
    form_of,
    language,
    redirect,
    remember_language,
    signing_out,
    text,
)
from patron.web.render import data_uri, render, translate
from patron.web.routing import page_router
from patron.web.security import (
    STAFF_COOKIE,
    read_cookie,
    renew_csrf,
    safe_next,
    set_cookie,
    sign_in_address,
)

router = page_router()

LOGIN = "/login"
# Where each role lands after signing in. A sales representative's own pages (the map,
# the visit plan) are not built yet: until then, their account.
HOME = {StaffRole.operator: "/operator", StaffRole.owner: "/console",
        StaffRole.manager: "/console", StaffRole.cashier: "/register",
        StaffRole.sales_rep: "/account"}



def staff_in(session: Session, request: Request, area: Area) -> tuple[StaffContext, Principal]:
    """The signed-in staff user and who they act as in ``area``: to the sign-in page when
    nobody is signed in, 403 when their role may not open it (``tenancy.rules``)."""
    found = staff.staff_of_session(session, read_cookie(request, STAFF_COOKIE))
    if found is None:
        raise PageRefused(303, location=sign_in_address(LOGIN, request))
    if not may_open(found.role, area):
        raise PageRefused(403)
    if area == Area.register and found.terminal_id is None:
        raise PageRefused(303, location="/register/choose")
    return found, staff.principal_for(found, area)


@router.get(LOGIN)
def login_page(request: Request) -> Response:
    code = language(request)
    return remember_language(request, render(
        request, "login.html", code, errors={}, values={},
        next=safe_next(request.query_params.get("next"), "")))


@router.post(LOGIN)
async def login(request: Request) -> Response:
    form = await form_of(request)
    code = language(request)
    email = text(form, "email")
    target = safe_next(text(form, "next"), "")
    try:
        with database_of(request).session_scope() as session:
            signed_in = staff.sign_in(session, email=email,
                                      password=str(form.get("password") or ""))
            role = StaffRole(signed_in.user.role)
    except PatronError as refusal:
        return render(request, "login.html", code, status=refusal.status,
                      errors=field_errors(refusal, code, "password"),
                      values={"email": email}, next=target)
    renew_csrf(request)
    if signed_in.needs_second_factor:
        response = redirect(request, f"{LOGIN}/second-factor?next={quote(target)}")
    else:
        response = redirect(request, target or HOME[role])
    set_cookie(response, STAFF_COOKIE, signed_in.token,
               max_age=get_settings().staff_session_hours * 3600)
    return response


@router.get(LOGIN + "/second-factor")
def second_factor_page(request: Request) -> Response:
    return render(request, "second_factor.html", language(request), errors={},
                  next=safe_next(request.query_params.get("next"), ""))


@router.post(LOGIN + "/second-factor")
async def second_factor(request: Request) -> Response:
    form = await form_of(request)
    code = language(request)
    target = safe_next(text(form, "next"), "")
    token = read_cookie(request, STAFF_COOKIE)
    if not token:
        return redirect(request, LOGIN)
    try:
        with database_of(request).session_scope() as session:
            user = staff.pass_second_factor(session, token=token, code=text(form, "code"))
            role = StaffRole(user.role)
    except PatronError as refusal:
        if refusal.status == 404:
            return redirect(request, LOGIN)
        return render(request, "second_factor.html", code, status=refusal.status,
                      errors=field_errors(refusal, code, "code"), next=target)
    renew_csrf(request)
    return redirect(request, target or HOME[role])


@router.post("/logout")
async def logout(request: Request) -> Response:
    await form_of(request)
    return signing_out(request, cookie=STAFF_COOKIE, to=LOGIN,
                       end=lambda session, token: staff.sign_out(session, token=token))


@router.get("/invitation/{token}")
def invitation_page(request: Request, token: str) -> Response:
    code = language(request)
    with database_of(request).session_scope() as session:
        try:
            user = staff.invitation_user(session, token)
        except PatronError:
            return render(request, "error.html", code, status=410,
                          heading=translate(code, "This invitation cannot be used"),
                          detail=translate(code, "It has expired or was used. Ask whoever "
                                               "invited you for a new one."))
        return render(request, "invitation.html", code, name=user.name,
                      email=staff.email_of(user), token=token, errors={})


@router.post("/invitation/{token}")
async def accept_invitation(request: Request, token: str) -> Response:
    form = await form_of(request)
    code = language(request)
    password = str(form.get("password") or "")
    if password != str(form.get("password_again") or ""):
        with database_of(request).session_scope() as session:
            user = staff.invitation_user(session, token)
            return render(request, "invitation.html", code, name=user.name,
                          email=staff.email_of(user), token=token, status=422,
                          errors={"password_again": translate(code, "The two passwords differ.")})
    try:
        with database_of(request).session_scope() as session:
            staff.accept_invitation(session, token=token, password=password)
    except PatronError as refusal:
        if refusal.status == 410:
            raise PageRefused(404) from refusal
        with database_of(request).session_scope() as session:
            user = staff.invitation_user(session, token)
            return render(request, "invitation.html", code, name=user.name,
                          email=staff.email_of(user), token=token, status=refusal.status,
                          errors=field_errors(refusal, code, "password"))
    return redirect(request, f"{LOGIN}?welcome=1")


# --- the staff user's own account --------------------------------------------------------------

def _account(session: Session, request: Request) -> tuple[StaffContext, str]:
    found = staff.staff_of_session(session, read_cookie(request, STAFF_COOKIE))
    if found is None:
        raise PageRefused(303, location=sign_in_address(LOGIN, request))
    return found, language(request, found.language)


def _account_page(request: Request, session: Session, found: StaffContext, code: str,
                  **values: Any) -> Response:
    user = session.get(StaffUser, found.user_id)
    assert user is not None
    return remember_language(request, render(
        request, "account.html", code, staff=found, email=staff.email_of(user),
        has_totp=user.totp_secret_enc is not None, home=HOME[found.role],
        **{"errors": {}, "enrol": None, "done": request.query_params.get("done"),
           **values}))


@router.get("/account")
def account_page(request: Request) -> Response:
    """A signed-in staff user's own account: who they are, their second factor."""
    with database_of(request).session_scope() as session:
        found, code = _account(session, request)
        return _account_page(request, session, found, code)


@router.post("/account/totp")
async def start_second_factor(request: Request) -> Response:
    """A new authenticator secret to scan (not saved until a code made from it passes)."""
    await form_of(request)
    with database_of(request).session_scope() as session:
        found, code = _account(session, request)
        user = session.get(StaffUser, found.user_id)
        assert user is not None
        secret, address = staff.start_totp(user)
        return _account_page(request, session, found, code, enrol={
            "secret": secret, "qr": data_uri(images.qr_svg(address))})


@router.post("/account/totp/confirm")
async def confirm_second_factor(request: Request) -> Response:
    form = await form_of(request)
    secret = text(form, "secret")
    try:
        with database_of(request).session_scope() as session:
            found, code = _account(session, request)
            user = session.get(StaffUser, found.user_id)
            assert user is not None
            staff.enable_totp(session, user=user, secret=secret, code=text(form, "code"))
    except PatronError as refusal:
        if refusal.status in (403, 404):
            raise
        with database_of(request).session_scope() as session:
            found, code = _account(session, request)
            user = session.get(StaffUser, found.user_id)
            assert user is not None
            enrol = ({"secret": secret, "qr": data_uri(images.qr_svg(totp.provisioning_uri(
                secret, account=staff.email_of(user), issuer="Patron")))}
                if totp.valid_secret(secret) else None)
            return _account_page(request, session, found, code, enrol=enrol,
                                 errors=field_errors(refusal, code, "code"),
                                 status=refusal.status)
    return redirect(request, "/account?done=totp")
