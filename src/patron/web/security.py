"""What keeps the pages safe (docs/web.md, "Security"): the session cookies, CSRF tokens,
the Content-Security-Policy, and who a browser is.

- Sessions: the staff cookie and the wallet cookie hold random tokens that the server
  issued (their SHA-256 is stored, ``tenancy.staff`` and ``members.wallet``); a token the
  server did not issue opens nothing, and signing in always issues a new one, so a
  session cannot be fixed in advance. Cookies are ``HttpOnly``, ``SameSite=Lax``,
  ``Secure`` with the ``__Host-`` prefix (``PATRON_COOKIE_SECURE``).
- CSRF: a signed double-submit token. Every browser gets a random CSRF cookie; forms and
  htmx requests send ``HMAC(secret, cookie)`` back (a hidden field or the
  ``X-CSRF-Token`` header); every unsafe request to a page is refused without it, and
  when its ``Origin`` is another site's. The cookie is renewed at sign-in and sign-out.
- Content-Security-Policy: scripts only from the app's own files (no inline script, no
  eval: Alpine's CSP build), nothing from another origin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from patron.config import get_settings

STAFF_COOKIE = "patron_staff"
WALLET_COOKIE = "patron_wallet"
CSRF_COOKIE = "patron_csrf"
# The browser's installation id: the wallet device the referral program's checks know
# (``members.wallet.join``); it outlives signing out.
INSTALL_COOKIE = "patron_install"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "font-src 'self'", "connect-src 'self'", "manifest-src 'self'", "worker-src 'self'",
    "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'",
])
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(self), geolocation=(self), microphone=()",
}

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_name(base: str) -> str:
    """``__Host-`` names where cookies are Secure: the browser then refuses one set by a
    subdomain or over plain http, or with a Domain or a Path other than /."""
    return f"__Host-{base}" if get_settings().cookie_secure else base


def read_cookie(request: Request, base: str) -> str | None:
    return request.cookies.get(cookie_name(base))


def set_cookie(response: Response, base: str, value: str, *, max_age: int | None = None,
               same_site: str = "lax") -> None:
    response.set_cookie(cookie_name(base), value, max_age=max_age, path="/",
                        secure=get_settings().cookie_secure, httponly=True,
                        samesite=same_site)  # type: ignore[arg-type]


def clear_cookie(response: Response, base: str) -> None:
    response.delete_cookie(cookie_name(base), path="/", secure=get_settings().cookie_secure,
                           httponly=True, samesite="lax")


# --- CSRF -------------------------------------------------------------------------------

def _signed(cookie: str) -> str:
    key = get_settings().derived_key("csrf")
    return hmac.new(key, cookie.encode(), hashlib.sha256).hexdigest()


def csrf_cookie(request: Request) -> str:
    """This browser's CSRF cookie value, or a new one (``ensure_csrf_cookie`` sets it)."""
    current = read_cookie(request, CSRF_COOKIE)
    if current is None or len(current) != 43:
        current = request.state.new_csrf = secrets.token_urlsafe(32)
    return current


def csrf_token(request: Request) -> str:
    return _signed(csrf_cookie(request))


def renew_csrf(request: Request) -> None:
    """A new CSRF cookie (at sign-in and sign-out): a token seen before no longer works."""
    request.state.new_csrf = secrets.token_urlsafe(32)


def ensure_csrf_cookie(request: Request, response: Response) -> None:
    fresh = getattr(request.state, "new_csrf", None)
    if fresh is not None:
        set_cookie(response, CSRF_COOKIE, fresh, same_site="strict")


def csrf_passes(request: Request, form: dict[str, Any] | None) -> bool:
    """Whether an unsafe request carries this browser's token, and comes from this site."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and not _same_origin(origin, request):
        return False
    cookie = read_cookie(request, CSRF_COOKIE)
    sent = request.headers.get(CSRF_HEADER) or (form or {}).get(CSRF_FIELD)
    if not cookie or not isinstance(sent, str):
        return False
    return hmac.compare_digest(sent.encode(), _signed(cookie).encode())


def _same_origin(origin: str, request: Request) -> bool:
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.netloc == host or origin.rstrip("/") == \
        get_settings().public_base_url.rstrip("/")


def safe_next(target: str | None, default: str) -> str:
    """A page to go to after signing in: a path of this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return default
    return target


def sign_in_address(page: str, request: Request) -> str:
    return f"{page}?next={quote(request.url.path)}"
