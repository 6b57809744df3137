"""The web app's part of ``create_app``: its routes and its files."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from patron.web.pages import (
    console,
    console_activity,
    console_setup,
    operator,
    operator_sections,
    register,
    staff,
    wallet,
)
from patron.web.pages.common import PageRefused, language, refusal_page, remember_language
from patron.web.render import STATIC, STATIC_URL, render
from patron.web.routing import Static, page_router

home = page_router()


@home.get("/")
def start_page(request: Request) -> Response:
    return remember_language(request, render(request, "home.html", language(request)))


def not_found_page(request: Request) -> Response:
    """The answer to a browser asking for a page that does not exist: a page, in its
    language (the API's paths answer problem+json)."""
    return refusal_page(request, PageRefused(404))


def install(app: FastAPI) -> None:
    app.mount(STATIC_URL, Static(directory=STATIC), name="static")
    app.state.page_not_found = not_found_page
    for module_router in (home, wallet.router, staff.router, register.router,
                          console.router, console_setup.router, console_activity.router,
                          operator.router, operator_sections.router):
        app.include_router(module_router)
