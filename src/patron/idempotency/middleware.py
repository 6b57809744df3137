"""The ASGI layer that gives every write of the API Stripe's Idempotency-Key rules.

A ``POST``, ``PUT``, ``PATCH`` or ``DELETE`` with an ``Idempotency-Key`` header, from a
valid API key, to a route not in ``EXEMPT``: the key is claimed (``service.claim``) before
the request reaches the app, the request's units of work mark the claim as they commit
(``db.BEFORE_COMMIT``), and the answer is stored before it is sent. A retry with the same
key and the same request gets the stored answer with ``Idempotent-Replayed: true``.
Requests without the header, or whose key does not authenticate (the app answers 401), go
through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from patron.db import BEFORE_COMMIT, Database
from patron.errors import PatronError
from patron.idempotency import service
from patron.idempotency.errors import InvalidIdempotencyKey
from patron.imports import MEMBERS_PATH, PURCHASES_PATH
from patron.kit.clock import utcnow
from patron.tenancy.service import Principal, authenticate

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Routes that keep a mechanism of their own, and why.
EXEMPT: dict[tuple[str, str], str] = {
    ("POST", "/v1/vouchers/{code}/redeem"):
        "the redemption keeps its key with the redemption row, written by the same single "
        "statement as the use itself (docs/vouchers.md)",
    ("POST", "/v1/telephony/inbound"):
        "a signed webhook of the telephony provider, not called with an API key",
    ("POST", "/v1/sms/inbound"):
        "a signed webhook of the SMS provider, not called with an API key; a STOP sent "
        "twice withdraws nothing more",
    ("POST", MEMBERS_PATH):
        "an import run again adds nothing: each member is found by its external_ref "
        "(docs/imports.md); its file is streamed, never held to be hashed",
    ("POST", PURCHASES_PATH):
        "an import run again adds nothing: each receipt is found by its number "
        "(docs/imports.md); its file is streamed, never held to be hashed",
}
_KEY_FORMAT = re.compile(r"[\x21-\x7e]{1,255}")
# Answers not stored: a throttled request was not carried out, and a 5xx never is.
_NOT_STORED = frozenset({429})
_NOT_REPLAYED_HEADERS = frozenset({"content-length", "date", "server"})


class Idempotency:
    def __init__(self, app: Any, *, route_of: Callable[[str, str], str | None],
                 database: Callable[[], Database],
                 encryption_key: bytes, retention: timedelta,
                 render: Callable[[PatronError], Response]) -> None:
        self.app = app
        self.route_of = route_of
        self.database = database
        self.encryption_key = encryption_key
        self.retention = retention
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in scope.get("headers", [])}
        key = headers.get(HEADER.lower())
        # Only a request some route takes is claimed: an unknown path or a method the path
        # does not take is the app's 404 or 405, whatever key it carries.
        route = self.route_of(scope["method"], scope["path"]) if key is not None else None
        if key is None or route is None or (scope["method"], route) in EXEMPT:
            await self.app(scope, receive, send)
            return
        try:
            if not _KEY_FORMAT.fullmatch(key):
                raise InvalidIdempotencyKey(
                    "an Idempotency-Key is 1 to 255 visible ASCII characters (a UUID, say)",
                    field=HEADER)
            body = await _read_body(receive)
        except PatronError as exc:
            await self.render(exc)(scope, receive, send)
            return
        replay = _replaying(body, receive)
        principal = await run_in_threadpool(self._principal, headers.get("authorization"))
        if principal is None or principal.key_id is None:
            await self.app(scope, replay, send)  # the app says what is wrong with the key
            return
        digest = service.request_hash(scope["method"], scope["path"],
                                      scope.get("query_string", b"").decode("latin-1"), body)
        database = self.database()
        try:
            claimed = await run_in_threadpool(
                service.claim, database, principal=principal, key=key, digest=digest,
                now=utcnow(), retention=self.retention, encryption_key=self.encryption_key)
        except PatronError as exc:
            await self.render(exc)(scope, receive, send)
            return
        if isinstance(claimed, service.Stored):
            await _send_stored(send, claimed, replayed=True)
            return
        await self._run(scope, replay, send, database, claimed)

    async def _run(self, scope: Scope, receive: Receive, send: Send, database: Database,
                   claim: service.Claim) -> None:
        start: Message | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self._marking(claim, scope, receive, capture)
        except BaseException:
            await run_in_threadpool(service.abandon, database, claim, now=utcnow())
            raise
        assert start is not None
        answer = service.Stored(
            status=start["status"],
            headers=[(name.decode("latin-1"), value.decode("latin-1"))
                     for name, value in start.get("headers", [])
                     if name.decode("latin-1").lower() not in _NOT_REPLAYED_HEADERS],
            body=b"".join(chunks))
        if answer.status >= 500 or answer.status in _NOT_STORED:
            await run_in_threadpool(service.abandon, database, claim, now=utcnow())
        else:
            await run_in_threadpool(service.finish, database, claim, answer, now=utcnow(),
                                    encryption_key=self.encryption_key)
        await _send_stored(send, answer, replayed=False)

    async def _marking(self, claim: service.Claim, scope: Scope, receive: Receive,
                       send: Send) -> None:
        """The app, each of whose units of work marks the claim as it commits."""
        token = BEFORE_COMMIT.set(lambda session: service.mark_committed(session, claim))
        try:
            await self.app(scope, receive, send)
        finally:
            BEFORE_COMMIT.reset(token)

    def _principal(self, authorization: str | None) -> Principal | None:
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        try:
            with self.database().read_scope() as session:
                return authenticate(session, key=credentials.strip())
        except PatronError:
            return None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()  # the body limit's PayloadTooLarge is answered above
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """The body read once, handed to the app as if it were arriving now."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _send_stored(send: Send, answer: service.Stored, *, replayed: bool) -> None:
    headers = [(name.encode("latin-1"), value.encode("latin-1"))
               for name, value in answer.headers]
    headers.append((b"content-length", str(len(answer.body)).encode()))
    if replayed:
        headers.append((REPLAYED.lower().encode(), b"true"))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body, "more_body": False})


def document(schema: dict[str, Any], conflict: dict[str, Any]) -> None:
    """Name the header and its 409 on every write of the OpenAPI document."""
    parameter = {
        "name": HEADER, "in": "header", "required": False,
        "description": "Makes the request safe to retry (docs/errors.md): the same key with "
                       "the same request gets the first answer again (with "
                       "`Idempotent-Replayed: true`); with another request, 409 "
                       "`idempotency_key_reused`; while the first still runs, 409 "
                       "`idempotency_key_in_progress`. Keys are kept per API key for at "
                       "least 24 hours.",
        "schema": {"type": "string", "minLength": 1, "maxLength": 255}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method.upper() not in METHODS or (method.upper(), path) in EXEMPT:
                continue
            parameters = operation.setdefault("parameters", [])
            if not any(p.get("name") == HEADER for p in parameters):
                parameters.append(parameter)
            operation.setdefault("responses", {}).setdefault("409", conflict)
