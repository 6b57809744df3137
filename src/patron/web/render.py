"""Pages rendered from Jinja2 templates in the request's language, with the headers every
page carries (``web.security.PAGE_HEADERS``)."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from patron import __version__
from patron.kit.i18n import LANGUAGES, NATIVE_NAMES
from patron.web import i18n
from patron.web.security import (
    CSRF_FIELD,
    PAGE_HEADERS,
    csrf_token,
    ensure_csrf_cookie,
)

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
STATIC_URL = "/static"


@lru_cache(maxsize=256)
def static_url(path: str) -> str:
    """The address of one of the app's files, with its content's digest, so that it can be
    cached for a year and still change with a release (``web.static``)."""
    digest = hashlib.sha256((STATIC / path).read_bytes()).hexdigest()[:12]
    return f"{STATIC_URL}/{path}?v={digest}"


def _language(context: Context) -> str:
    return str(context.get("language", "en"))


@pass_context
def _gettext(context: Context, message: str, **variables: Any) -> str:
    text = i18n.translations(_language(context)).ugettext(message)
    return text % variables if variables else text


@pass_context
def _ngettext(context: Context, singular: str, plural: str, count: int) -> str:
    # Jinja's newstyle call fills the placeholders (`num` and the others) itself.
    return str(i18n.translations(_language(context)).ungettext(singular, plural, count))


def _environment() -> Environment:
    environment = Environment(loader=FileSystemLoader(TEMPLATES), undefined=StrictUndefined,
                              autoescape=select_autoescape(["html", "svg"]),
                              extensions=["jinja2.ext.i18n"], trim_blocks=True,
                              lstrip_blocks=True)
    environment.install_gettext_callables(  # type: ignore[attr-defined]
        _gettext, _ngettext, newstyle=True)
    environment.filters["fromiso"] = datetime.fromisoformat
    environment.globals.update(static_url=static_url, LANGUAGES=LANGUAGES,
                               NATIVE_NAMES=NATIVE_NAMES, version=__version__,
                               CSRF_FIELD=CSRF_FIELD)
    return environment


ENVIRONMENT = _environment()


class Page:
    """What every template sees of its request: the language, the CSRF token, and
    formatting in the language."""

    def __init__(self, request: Request, language: str) -> None:
        self.request = request
        self.language = language

    def values(self) -> dict[str, Any]:
        language = self.language
        return {
            "language": language,
            "request_path": self.request.url.path,
            "csrf_token": csrf_token(self.request),
            "money": lambda minor, currency: i18n.money(minor, currency, language),
            "number": lambda value: i18n.number(value, language),
            "day": lambda value, zone=None: i18n.day(value, language, zone),
            "moment": lambda value, zone=None: i18n.moment(value, language, zone),
        }


def render(request: Request, template: str, language: str, *, status: int = 200,
           headers: dict[str, str] | None = None, **values: Any) -> Response:
    page = Page(request, language)
    html = ENVIRONMENT.get_template(template).render(**page.values(), **values)
    response = HTMLResponse(html, status_code=status,
                            headers={**PAGE_HEADERS, "Content-Language": language,
                                     **(headers or {})})
    ensure_csrf_cookie(request, response)
    return response


def translate(language: str, message: str, **variables: Any) -> str:
    """A message of the pages' catalog, for text made in Python (flash lines, errors)."""
    text = i18n.translations(language).ugettext(message)
    return text % variables if variables else text


def data_uri(svg: bytes | str) -> str:
    """An SVG image inline, as a ``data:`` address for an ``img`` (the policy allows
    ``data:`` images; an inline ``svg`` element's styles it would not)."""
    raw = svg.encode() if isinstance(svg, str) else svg
    return "data:image/svg+xml;base64," + base64.b64encode(raw).decode()
