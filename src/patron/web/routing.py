"""The pages' route class and static files.

``PageRoute`` answers a refusal the way a person expects a page to: a ``PageRefused``
becomes its redirect or error page, and a service's refusal (``PatronError``) an error
page in the request's language — never problem+json, which is the API's answer."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from patron.errors import PatronError
from patron.web.pages.common import PageRefused, refusal_page

YEAR = 365 * 86400


class PageRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except PageRefused as refusal:
                return refusal_page(request, refusal)
            except PatronError as error:
                status = error.status if error.status in (403, 404, 410) else 400
                return refusal_page(request, PageRefused(
                    404 if status == 410 else status))

        return page_handler


class Static(StaticFiles):
    """The app's files: a file asked for with its digest (``render.static_url``) is cached
    for a year; the vendored ones never change within a release."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            versioned = b"v=" in scope.get("query_string", b"") or path.startswith("vendor/")
            response.headers["Cache-Control"] = (f"public, max-age={YEAR}, immutable"
                                                 if versioned else "no-cache")
        return response


def page_router() -> APIRouter:
    return APIRouter(include_in_schema=False, route_class=PageRoute)
