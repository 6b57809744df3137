"""What every page module shares: the request's language, its form with the CSRF check,
redirects, and the answer to a refusal as a page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from patron.db import Database
from patron.errors import PatronError
from patron.kit.i18n import supported
from patron.web import i18n
from patron.web.i18n import PROBLEMS
from patron.web.render import render, translate
from patron.web.security import (
    PAGE_HEADERS,
    SAFE_METHODS,
    clear_cookie,
    csrf_passes,
    ensure_csrf_cookie,
    read_cookie,
    renew_csrf,
)

LANGUAGE_COOKIE = "patron_lang"


def database_of(request: Request) -> Database:
    """The app's database (every page opens its own units of work on it)."""
    database: Database = request.app.state.database
    return database


def signing_out(request: Request, *, cookie: str, end: Callable[[Session, str], None],
                to: str) -> Response:
    """Sign this browser out: the session the cookie holds ended on the server (``end``),
    the cookie cleared, a new CSRF cookie, and on to ``to``."""
    token = read_cookie(request, cookie)
    if token:
        with database_of(request).session_scope() as session:
            end(session, token)
    response = redirect(request, to)
    clear_cookie(response, cookie)
    renew_csrf(request)
    return response


class PageRefused(Exception):
    """A page request that ends in a page of its own: a redirect (to sign in) or an error
    page (403, 404) in the request's language."""

    def __init__(self, status: int, *, location: str | None = None,
                 detail: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.location = location
        self.detail = detail


def language(request: Request, person: str | None = None) -> str:
    """The page's language: ``?lang=`` (the language links), else the signed-in person's
    setting, else the last one chosen in this browser, else ``Accept-Language``."""
    return (supported(request.query_params.get("lang")) or supported(person)
            or i18n.language_of(request.cookies.get(LANGUAGE_COOKIE),
                                request.headers.get("accept-language")))


def remember_language(request: Request, response: Response) -> Response:
    chosen = supported(request.query_params.get("lang"))
    if chosen:
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=365 * 86400, path="/",
                            samesite="lax", httponly=True)
    return response


async def form_of(request: Request) -> FormData:
    """The posted form, once its CSRF token has been checked (403 otherwise)."""
    form = await request.form()
    if request.method not in SAFE_METHODS and not csrf_passes(request, dict(form)):
        raise PageRefused(403, detail="csrf")
    return form


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def redirect(request: Request, location: str) -> Response:
    response = RedirectResponse(location, status_code=303, headers=PAGE_HEADERS)
    ensure_csrf_cookie(request, response)
    return response


def field_errors(exc: PatronError, language_code: str,
                 default_field: str) -> dict[str, str]:
    """A refusal of a form, as the message to show at its field."""
    field = str(exc.extra.get("field") or default_field)
    return {field: problem_text(exc, language_code)}


def problem_text(exc: PatronError, language_code: str) -> str:
    """What a person reads of a refusal, in their language: its detail where the problems'
    catalog holds it (a fixed sentence), else its title (every title is there); English
    as it is."""
    catalog = i18n.translations(language_code, PROBLEMS)
    if language_code == "en":
        return exc.detail
    detail = catalog.ugettext(exc.detail)
    return detail if detail != exc.detail else catalog.ugettext(exc.title)


def refusal_page(request: Request, refusal: PageRefused) -> Response:
    if refusal.location is not None:
        return redirect(request, refusal.location)
    code = language(request)
    headings = {403: translate(code, "You may not open this page"),
                404: translate(code, "Page not found")}
    details = {
        "csrf": translate(code, "The form had expired. Go back, reload the page and try "
                              "again."),
        None: translate(code, "Sign in with an account that may use it, or go back to the "
                            "start page.") if refusal.status == 403 else
        translate(code, "The page does not exist, or it is not yours to see."),
    }
    detail = details.get(refusal.detail, refusal.detail or "")
    return render(request, "error.html", code, status=refusal.status,
                  heading=headings.get(refusal.status, str(refusal.status)), detail=detail)


def values(**kwargs: Any) -> dict[str, Any]:
    return kwargs
