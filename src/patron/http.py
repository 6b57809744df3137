"""Shared HTTP plumbing for every area's endpoints: the session, the caller, error docs.

Only endpoint modules and ``app.py`` import this; the domain never does.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from patron.config import get_settings
from patron.db import Database
from patron.errors import BodyNotAllowed, UnsupportedMediaType
from patron.kit.net import client_address
from patron.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, Paging
from patron.tenancy.service import Principal, authenticate

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, with Patron's stable machine-readable ``code``."""

    type: str = Field(examples=["https://patron.dev/problems/not_found"])
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable error code to branch on")
    errors: list[FieldError] | None = Field(default=None,
                                            description="Per-field validation errors")
    field: str | None = Field(default=None, description="The request field at fault")

    model_config = {"extra": "allow"}


_DESCRIPTIONS = {
    400: "Malformed request (e.g. the body is not valid JSON)",
    401: "Missing, invalid or revoked API key (or bad webhook signature)",
    403: "The key's role may not do this, or a verification step failed",
    404: "Not found, or not visible to this key's tenant",
    409: "Conflicts with the current state",
    410: "Gone: expired code, withdrawn or erased member",
    413: "Request body over the size limit",
    415: "Unsupported request content type",
    422: "Validation failed; `errors` or `field` says what to fix",
    423: "Locked (too many wrong PINs)",
    429: "Too many failed attempts; `Retry-After` (seconds) says when to try again",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given error statuses (plus those any request can get)."""
    every = {400, 413, 415, 422, *statuses}
    return {
        status: {"description": _DESCRIPTIONS[status],
                 "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref":
                                                             "#/components/schemas/Problem"}}},
                 **({"headers": _RETRY_AFTER} if status == 429 else {})}
        for status in sorted(every)
    }


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 1}}}


AUTHED = (401, 403, 404)


def media_response(media_type: str, description: str,
                   binary: bool = False) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entry for a 200 that is not JSON (images, XML)."""
    schema: dict[str, str] = {"type": "string", **({"format": "binary"} if binary else {})}
    return {200: {"content": {media_type: {"schema": schema}}, "description": description}}


# Dependencies that do no I/O are ``async``: FastAPI runs them on the event loop instead of
# handing each to a worker thread and back.
async def get_database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


# Endpoints open their unit of work themselves (`with db.session_scope() as session:`), so a
# database connection is only ever held inside one worker thread. A yield-dependency would
# hold it while the request waits for the next thread, and under load every thread could
# end up waiting for a connection that a thread-less request holds (a pool deadlock).
Db = Annotated[Database, Depends(get_database)]

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer <key>`")


# The key as sent, unchecked: for an endpoint that reads the caller's key together with its
# own first read, in its own worker thread (``principal`` when it needs the caller alone).
ApiKey = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def principal(database: Database, credentials: HTTPAuthorizationCredentials | None
              ) -> Principal:
    """The caller behind the key, or 401."""
    with database.read_scope() as session:
        return authenticate(session, key=credentials.credentials if credentials else None)


def get_principal(database: Db, credentials: ApiKey) -> Principal:
    return principal(database, credentials)


Caller = Annotated[Principal, Depends(get_principal)]


async def get_client_address(request: Request) -> str:
    """The caller's network address (``patron.kit.net.client_address``): the peer's, or
    what ``X-Forwarded-For`` says when the peer is a trusted proxy."""
    return client_address(request.client.host if request.client else None,
                          request.headers.getlist("x-forwarded-for"),
                          get_settings().proxy_networks)


ClientAddress = Annotated[str, Depends(get_client_address)]


def _takes_key(dependant: Any) -> bool:
    return any(sub.call is get_principal or _takes_key(sub)
               for sub in getattr(dependant, "dependencies", []))


async def authenticate_first(request: Request) -> None:
    """Before a request's body is refused: 401 if the endpoint takes a key and the request
    has no valid one. Authentication comes before body validation, so a caller without a
    key learns nothing about the endpoint's input; the check runs only on the refusal path
    (an accepted request authenticates once, through ``Caller``)."""
    route = request.scope.get("route")
    if not _takes_key(getattr(route, "dependant", None)):
        return
    credentials = await _bearer(request)
    await run_in_threadpool(principal, request.app.state.database, credentials)


async def _refuse_body(request: Request) -> None:
    body = await request.body()
    if body.strip() and not _empty_object(body):
        await authenticate_first(request)
        raise BodyNotAllowed("this endpoint takes no request body; send none (or {})")


def _empty_object(body: bytes) -> bool:
    try:
        return bool(json.loads(body) == {})
    except ValueError:
        return False


def _charset(content_type: str) -> str | None:
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/")
                                                 and media_type.endswith("+json"))


def refused_charset(content_type: str | None) -> str | None:
    """The charset a JSON request declares if it is not UTF-8 (JSON is UTF-8, RFC 8259)."""
    if not is_json(content_type):
        return None
    charset = _charset(content_type or "")
    return charset if charset not in (None, "utf-8", "utf8") else None


async def utf8_bodies_only(request: Request) -> None:
    """Every endpoint's first dependency: a body declared in another charset is a 415."""
    charset = refused_charset(request.headers.get("content-type"))
    if charset is not None:
        await authenticate_first(request)
        raise UnsupportedMediaType(f"the body is declared as charset={charset}; send JSON "
                                   "encoded as UTF-8 (charset=utf-8, or no charset)")


# For POST endpoints that take no body (actions: revoke, pause, erase…): no body and the
# empty JSON object `{}` are alike; any other body is refused, not ignored.
NoBody = Depends(_refuse_body)


async def get_paging(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT,
                                description=f"Items per page, 1 … {MAX_LIMIT}")
                     ] = DEFAULT_LIMIT,
    cursor: Annotated[str | None, Query(max_length=200,
                                        description="`next_cursor` of the previous page")
                      ] = None,
) -> Paging:
    return Paging(limit=limit, cursor=cursor)


# Every list endpoint: `limit` and `cursor` in, `kit.pagination.Page` (`items`,
# `next_cursor`) out.
PageQuery = Annotated[Paging, Depends(get_paging)]


class RouteTable:
    """Which operation of the API a request is, read from the OpenAPI document's paths: the
    one answer the 405's ``Allow`` header and the Idempotency-Key layer both need (a path
    template and the methods it takes). A template with fewer parameters wins, as the
    routes are declared: ``/v1/identify/caller-id`` before ``/v1/identify/{…}``."""

    def __init__(self, paths: dict[str, dict[str, Any]]) -> None:
        self._templates = sorted(
            ((re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"),
              template, frozenset(method.upper() for method in methods))
             for template, methods in paths.items()),
            key=lambda entry: entry[1].count("{"))

    def template(self, method: str, path: str) -> str | None:
        """The template of the operation that takes ``method`` on ``path``, if any."""
        return next((template for pattern, template, methods in self._templates
                     if method in methods and pattern.match(path)), None)

    def methods(self, path: str) -> list[str]:
        """The methods of the resource ``path`` is, with HEAD wherever GET is: its most
        literal template's (``/v1/vouchers/validate`` is not ``/v1/vouchers/{code}``)."""
        matching = [(template.count("{"), methods) for pattern, template, methods
                    in self._templates if pattern.match(path)]
        fewest = min((count for count, _ in matching), default=0)
        allowed = {method for count, methods in matching if count == fewest
                   for method in methods}
        if "GET" in allowed:
            allowed.add("HEAD")
        return sorted(allowed)
