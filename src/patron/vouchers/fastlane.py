"""The register's fast lane: the common stand-alone redemption answered on the event loop.

``POST /v1/vouchers/{code}/redeem`` is what a till or a gate waits on while the customer
stands there. In a ``patron serve`` worker on PostgreSQL (``patron.app.server_app``) this
ASGI layer, outside FastAPI, takes such a request when it is plainly the common case of
``direct`` — a JSON body (``application/json``) the endpoint's model accepts, a bearer key, no
``Idempotency-Key`` — and runs ``direct.redeem_raw`` with a connection of the worker's
``rawdb`` pool: the same read, the same decision, the same single write statement as the
endpoint's lean path, without a worker thread, FastAPI's routing and dependencies, or
SQLAlchemy's execution layer around them. Its answer is the endpoint's, byte for byte.

Everything else goes to the app as if this layer were not there, the body read so far
handed on unchanged: another route or method, a body too large or not the model's, no
bearer key, an idempotency key, and any request ``direct`` declines (``NotDirect``, raised
before anything is written): the endpoint then answers it in full, with every refusal's
reason, throttle and security event. ``tests/vouchers/test_direct.py`` runs its
differential scenarios through this lane as well.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from patron.config import get_settings
from patron.kit.net import client_address
from patron.vouchers import direct
from patron.vouchers.schemas import RedeemWrite

log = logging.getLogger(__name__)

PATH = re.compile(r"/v1/vouchers/([^/]+)/redeem")
_JSON = [(b"content-type", b"application/json")]

Pool = AsyncConnectionPool[AsyncConnection[Any]]


class FastLane:
    """ASGI: the common redemption on the event loop; every other request to ``app``.
    ``pool`` gives the worker's raw pool (None until it is open: everything goes to the
    app); ``max_body`` is the app's body limit; ``failed`` renders an unexpected error
    as the app would."""

    def __init__(self, app: ASGIApp, *, pool: Callable[[], Pool | None], max_body: int,
                 failed: Callable[[Exception], Any]) -> None:
        self.app = app
        self.pool = pool
        self.max_body = max_body
        self.failed = failed
        self.proxies = get_settings().proxy_networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        code = self._route(scope)
        pool = self.pool() if code is not None else None
        if code is None or pool is None:
            await self.app(scope, receive, send)
            return
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name, value)  # the first of a repeated header, as Starlette
        key = _bearer(headers.get(b"authorization"))
        messages, body = await _read_body(receive, self.max_body)
        data = (_model(body) if body is not None and key is not None
                and _json(headers.get(b"content-type"))
                and b"idempotency-key" not in headers else None)
        if data is not None:
            client = scope.get("client")
            address = client_address(
                client[0] if client else None,
                [value.decode("latin-1") for name, value in scope["headers"]
                 if name == b"x-forwarded-for"], self.proxies)
            try:
                async with pool.connection() as connection:
                    answer = await direct.redeem_raw(
                        connection, key=key, address=address,
                        code=code, data=data, idempotency_key=None)
            except direct.NotDirect:
                pass
            except Exception as exc:  # after a write it may have done: never the app
                # The type only: a database error's message quotes its bound parameters.
                log.error("internal error %s in POST /v1/vouchers/{code}/redeem",
                          type(exc).__name__)
                await self.failed(exc)(scope, receive, send)
                return
            else:
                await _answer(send, answer.encode())
                return
        await self.app(scope, _replay(messages, receive), send)

    @staticmethod
    def _route(scope: Scope) -> str | None:
        """The code of a ``POST /v1/vouchers/{code}/redeem``, else None."""
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("root_path"):
            return None
        matched = PATH.fullmatch(scope["path"])
        return matched.group(1) if matched else None


def _json(value: bytes | None) -> bool:
    """A JSON body by its media type (other types, and none, are the app's to judge)."""
    return value is not None and value.split(b";")[0].strip().lower() == b"application/json"


def _bearer(value: bytes | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, as FastAPI's HTTPBearer
    reads it; None for anything else."""
    if value is None:
        return None
    scheme, _, credentials = value.decode("latin-1").partition(" ")
    return credentials if scheme.lower() == "bearer" and credentials else None


async def _read_body(receive: Receive, limit: int) -> tuple[list[Message], bytes | None]:
    """The request's messages as read, and its body — None when it is over ``limit``
    (then only what was read so far), or when the client left."""
    messages: list[Message] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        size += len(message.get("body", b""))
        if size > limit:
            return messages, None
        if not message.get("more_body", False):
            return messages, b"".join(m.get("body", b"") for m in messages)


def _model(body: bytes) -> RedeemWrite | None:
    """The body as the endpoint's model, parsed as the endpoint parses it; None when the
    endpoint would refuse it (it then says why)."""
    try:
        return RedeemWrite.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError too
        return None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` with the messages already read handed out first."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _answer(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), *_JSON]})
    await send({"type": "http.response.body", "body": body})
