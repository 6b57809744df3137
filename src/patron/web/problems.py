"""The API's problems in the caller's language (docs/errors.md, "Languages"): an answer of
type ``application/problem+json`` to a request whose ``Accept-Language`` names Japanese,
Chinese or Korean has its ``title`` — and its ``detail`` when the detail is a message of
the problems' catalog — translated; ``code`` and everything else stay as they are. A
detail made with values (an f-string) stays English.

One middleware, outermost, so that every problem is translated the same way whoever made
it (an endpoint, a middleware, the error handlers, the server's crash answer)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import Headers, MutableHeaders

from patron.kit.i18n import DEFAULT_LANGUAGE, from_accept_language
from patron.web.i18n import PROBLEMS, translations

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]

PROBLEM = "application/problem+json"
# Set on the scope by the outermost instance, so that an inner one passes through.
_DONE = "patron.problem_language"


def translated(body: bytes, language: str) -> bytes:
    """A problem+json body with its title and detail in ``language`` where the catalog
    has them."""
    try:
        problem = json.loads(body)
    except ValueError:
        return body
    if not isinstance(problem, dict):
        return body
    catalog = translations(language, PROBLEMS)
    for field in ("title", "detail"):
        if isinstance(problem.get(field), str):
            problem[field] = catalog.ugettext(problem[field])
    return json.dumps(problem, ensure_ascii=False, separators=(",", ":")).encode()


class ProblemLanguage:
    def __init__(self, app: ASGI) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(_DONE):
            await self.app(scope, receive, send)
            return
        scope[_DONE] = True
        language = from_accept_language(Headers(scope=scope).get("accept-language"))
        if language is None or language == DEFAULT_LANGUAGE:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def send_translated(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = Headers(raw=message.get("headers", []))
                if headers.get("content-type", "").startswith(PROBLEM):
                    start = message  # held until the body is whole
                    return
            elif message["type"] == "http.response.body" and start is not None:
                parts.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = translated(b"".join(parts), language)
                headers = MutableHeaders(scope=start)
                headers["content-length"] = str(len(body))
                headers["content-language"] = language
                await send(start)
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, send_translated)
