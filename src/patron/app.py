"""create_app(): routers, middleware and the one error handler."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp

from patron import __version__, rawdb
from patron.config import Settings, get_settings
from patron.db import Database, unavailable
from patron.errors import (
    N_,
    BodyNotUtf8,
    BodyTooDeep,
    PatronError,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from patron.http import (
    PROBLEM_MEDIA_TYPE,
    FieldError,
    Problem,
    RouteTable,
    authenticate_first,
    is_json,
    problems,
    refused_charset,
    utf8_bodies_only,
)
from patron.idempotency import middleware as idempotency
from patron.idempotency.middleware import Idempotency
from patron.imports import IMPORT_PATHS
from patron.kit import heap
from patron.vouchers.fastlane import FastLane
from patron.web.problems import ProblemLanguage

log = logging.getLogger("patron")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class RedactQueryStrings(logging.Filter):
    """Access-log lines keep the path but not the query (it may carry a webhook token)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def _install_log_redaction() -> None:
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactQueryStrings) for f in access.filters):
        access.addFilter(RedactQueryStrings())


class Health(BaseModel):
    status: str
    version: str


def problem_response(status: int, code: str, title: str, detail: str,
                     **extra: Any) -> JSONResponse:
    body = {"type": f"https://patron.dev/problems/{code}", "title": title, "status": status,
            "detail": detail, "code": code, **extra}
    headers = {"Retry-After": str(extra["retry_after"])} if "retry_after" in extra else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE,
                        headers=headers)


class SecurityHeaders:
    """Headers on every answer: no content sniffing, no referrer; and no caching of any
    answer under /v1 (they are a tenant's data, often personal) unless the endpoint set
    its own Cache-Control."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = scope.get("path", "").startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if private and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Refuse request bodies over the limit, by Content-Length or while streaming; the
    paths in ``larger`` (files streamed to disk) have their own limit."""

    def __init__(self, app: Any, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope["path"], self.max_bytes)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = False
                if too_big:
                    await self._refuse(scope, receive, send, limit)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(f"the body is over {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(413, PayloadTooLarge.code, PayloadTooLarge.title,
                                    f"the body is over {limit} bytes")
        await response(scope, receive, send)


def _render_problem(exc: PatronError) -> JSONResponse:
    return problem_response(exc.status, exc.code, exc.title, exc.detail, **exc.extra)


def _validation_problem(exc: RequestValidationError) -> JSONResponse:
    errors = []
    for error in exc.errors():
        loc = [part for part in error.get("loc", ()) if isinstance(part, str | int)]
        errors.append(FieldError(loc=loc, msg=str(error.get("msg", "")),
                                 type=str(error.get("type", ""))).model_dump())
    if any(error["type"] == "json_invalid" for error in errors):
        return problem_response(400, "malformed_json", N_("Malformed JSON"),
                                N_("the request body is not valid JSON"), errors=errors)
    if errors and all(e["type"] == "missing" and e["loc"] == ["body"] for e in errors):
        return problem_response(422, "body_required", N_("Request body required"),
                                N_("send a JSON object as the request body"), errors=errors)
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    return problem_response(422, "validation_failed", N_("Invalid input"), summary or "invalid",
                            errors=errors)


def _body_unreadable(request: Request, cause: BaseException | None) -> PatronError | None:
    """Why FastAPI could not parse a body ("There was an error parsing the body"), said so
    that the client knows what to fix."""
    charset = refused_charset(request.headers.get("content-type"))
    if charset is not None:
        return UnsupportedMediaType(f"the body is declared as charset={charset}; send JSON "
                                    "encoded as UTF-8 (charset=utf-8, or no charset)")
    if isinstance(cause, UnicodeError):
        return BodyNotUtf8("the body is not valid UTF-8; send JSON encoded as UTF-8")
    if isinstance(cause, RecursionError):
        return BodyTooDeep("the JSON body is nested too deeply; send at most a few levels "
                           "of arrays and objects")
    return None


# Starlette's own answers' titles (a path or method no route has), for the problems'
# catalog: they are translated like every other title.
STARLETTE_TITLES = (N_("Not Found"), N_("Method Not Allowed"), N_("Unsupported Media Type"))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PatronError)
    async def _patron_error(request: Request, exc: PatronError) -> JSONResponse:
        # Code and route only: details may one day quote input, and input may be personal.
        log.info("refused %s %s: %d %s", request.method, request.url.path, exc.status,
                 exc.code)
        return _render_problem(exc)

    async def _key_refused(request: Request) -> JSONResponse | None:
        try:
            await authenticate_first(request)
        except PatronError as refusal:
            return _render_problem(refusal)
        return None

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            # FastAPI parses the body before it authenticates: the key first.
            refused = await _key_refused(request)
            if refused is not None:
                return refused
        # FastAPI hands a body it does not parse as JSON to the model as bytes; say what
        # is wrong (the media type), not "body: Input should be a valid dictionary".
        body_refused = any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing"
                           for e in exc.errors())
        if body_refused and not is_json(request.headers.get("content-type")):
            return _render_problem(UnsupportedMediaType("send the body as application/json"))
        return _validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException
                          ) -> JSONResponse | HTMLResponse:
        if isinstance(exc.__cause__, PatronError):
            # FastAPI wraps errors raised while it reads the body (the body limit on a
            # stream without Content-Length) in a 400 "error parsing the body".
            return _render_problem(exc.__cause__)
        if exc.status_code == 400:
            unreadable = _body_unreadable(request, exc.__cause__)
            if unreadable is not None:
                return await _key_refused(request) or _render_problem(unreadable)
        page = getattr(request.app.state, "page_not_found", None)
        if exc.status_code == 404 and page is not None and _wants_page(request):
            return page(request)  # type: ignore[no-any-return]
        codes = {404: "not_found", 405: "method_not_allowed", 415: "unsupported_media_type"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        response = problem_response(exc.status_code, code, str(exc.detail), str(exc.detail))
        # e.g. the `Allow` header that RFC 9110 requires on a 405
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(_routes(app).methods(request.url.path))
        return response

    async def _database_error(request: Request, exc: Exception) -> JSONResponse:
        if not unavailable(exc):
            raise exc  # a crash: the catch-all below answers it and re-raises it
        log.warning("database unavailable for %s %s: %s", request.method, request.url.path,
                    type(exc).__name__)
        return unavailable_answer()

    # A database that cannot take the request now is answered here, not by the catch-all
    # below, which re-raises to the server: it is not a crash.
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, _database_error)



def _wants_page(request: Request) -> bool:
    """A browser asking for a page (not the API, whose answers are problem+json)."""
    path = request.url.path
    return (not path.startswith(("/v1/", "/track/", "/static/"))
            and "text/html" in request.headers.get("accept", ""))


def _routes(app: FastAPI) -> RouteTable:
    """The app's operations, from its OpenAPI document, built at the first request that
    needs them (not at start-up)."""
    table: RouteTable | None = getattr(app.state, "route_table", None)
    if table is None:
        table = app.state.route_table = RouteTable(app.openapi().get("paths", {}))
    return table


class CrashLog:
    """Innermost of the server's error handling: an exception no handler answered is
    logged once — its type, the route and a request id, never its message or traceback
    (a database error's message quotes the SQL and its bound parameters, which can be
    personal) — and answered 500 ``internal_error`` with the request id. Nothing is
    re-raised, so the server does not log it a second time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        except Exception as exc:
            request_id = uuid.uuid4().hex
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            log.error("internal error %s in %s %s (request %s)", type(exc).__name__,
                      scope.get("method", ""), route, request_id)
            if started:  # too late for an answer: the connection is closed
                return
            await failure_answer(exc, request_id=request_id)(scope, receive, send)


def internal_error(_exc: Exception, request_id: str | None = None) -> JSONResponse:
    """The answer to an error nobody expected (logged by the caller): a 500 that says
    nothing of it but the request id its log line carries."""
    extra = {"request_id": request_id} if request_id else {}
    return problem_response(500, "internal_error", N_("Internal error"),
                            N_("something went wrong on our side; it has been logged"),
                            **extra)


def failure_answer(exc: Exception, request_id: str | None = None) -> JSONResponse:
    """The answer to an unhandled error (logged by the caller): ``unavailable_answer`` when
    the database has no connection to give now (``db.unavailable``), else
    ``internal_error``."""
    return unavailable_answer() if unavailable(exc) else internal_error(exc, request_id)


def unavailable_answer() -> JSONResponse:
    """503 with Retry-After: the register retries or works offline."""
    response = problem_response(503, "database_unavailable",
                                N_("Service temporarily unavailable"),
                                N_("the database cannot take this request now; retry shortly"))
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


RETRY_AFTER_SECONDS = 1


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description=app.description)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components["Problem"] = Problem.model_json_schema(
            ref_template="#/components/schemas/{model}")
        components["Problem"].pop("$defs", None)
        components["FieldError"] = FieldError.model_json_schema()
        idempotency.document(schema, problems(409)[409])
        app.openapi_schema = schema
        return schema

    return build


@asynccontextmanager
async def _run_jobs(app: FastAPI) -> AsyncIterator[None]:
    """The job scheduler (points expiry, notices) and the delivery worker live as long as
    the server; with several workers every process starts them and a lease each lets one
    of them run.
    A server process (``server_app``) then opens its database connections
    (``Database.warm``) and settles its heap (``kit.heap``)."""
    from patron.jobs.deliveries import start_worker
    from patron.jobs.scheduler import start_scheduler

    scheduler = start_scheduler(app.state.database, app.state.settings)
    deliveries = start_worker(app.state.database, app.state.settings)
    opened = None  # the fast lane's pool, once per app (a test may start it twice)
    if app.state.fast_lane and app.state.raw_pool is None:
        opened = app.state.raw_pool = await rawdb.open_pool(app.state.database.url,
                                                            size=RAW_POOL_SIZE)
    if app.state.server_process:
        await run_in_threadpool(app.state.database.warm)
        heap.settle()
    try:
        yield
    finally:
        if opened is not None:
            app.state.raw_pool = None
            await opened.close()
        if scheduler is not None:
            await run_in_threadpool(scheduler.stop)
        if deliveries is not None:
            await run_in_threadpool(deliveries.stop)


VENDOR_URL = "/static/vendor"


# The pages below and /health are module-level functions that every app shares, and they
# take the app from the request: FastAPI remembers each endpoint function it has seen in
# process-wide caches (thousands of entries), so a function made per app, closing over it,
# kept every app the process had built alive (a test process builds one per test).
_docs_router = APIRouter(include_in_schema=False)


@_docs_router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{request.app.title} — API",
        swagger_js_url=f"{VENDOR_URL}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR_URL}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR_URL}/swagger-ui/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect")


@_docs_router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@_docs_router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json", title=f"{request.app.title} — API",
        redoc_js_url=f"{VENDOR_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{VENDOR_URL}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False)


def _install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the files vendored in the package
    (web/static/vendor, listed in its MANIFEST): no page refers to an outside address, so
    they work on a machine without internet."""
    app.include_router(_docs_router)


_health_router = APIRouter()


@_health_router.get("/health", response_model=Health, tags=["health"])
def health() -> Health:
    return Health(status="ok", version=__version__)


def server_app() -> ASGIApp:
    """The app of a ``patron serve`` worker process (uvicorn's factory): ``create_app``,
    plus what only a long-lived server process does at its start (``kit.heap``), behind
    the register's fast lane (``with_fast_lane``)."""
    app = create_app()
    app.state.server_process = True
    return with_fast_lane(app)


# Connections of a worker's fast lane (``vouchers.fastlane``), all opened at its start.
RAW_POOL_SIZE = 4


def connections_per_process(settings: Settings) -> int:
    """The most connections one server process opens on PostgreSQL: its pool at full
    overflow, the fast lane's, and the job lease's own (``jobs.lease``)."""
    return settings.database_pool().most + RAW_POOL_SIZE + 1


def with_fast_lane(app: FastAPI) -> ASGIApp:
    """On PostgreSQL, ``app`` behind ``vouchers.fastlane.FastLane``, whose connection pool
    the app opens at its start and closes at its end; elsewhere ``app`` itself."""
    if app.state.database.engine.dialect.name != "postgresql":
        return app
    app.state.fast_lane = True
    # The fast lane answers some requests without the app: the headers (and the problems'
    # language) wrap it too.
    return ProblemLanguage(SecurityHeaders(FastLane(
        app, pool=lambda: app.state.raw_pool, max_body=app.state.settings.max_body_bytes,
        failed=failure_answer)))


def create_app(settings: Settings | None = None, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Patron",
        version=__version__,
        description="Open-source customer loyalty and customer-management platform. "
                    "Every error is `application/problem+json` with a stable `code`.",
        lifespan=_run_jobs,
        dependencies=[Depends(utf8_bodies_only)],
        docs_url=None,  # served from the package's own files below (_install_docs)
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.server_process = False
    app.state.fast_lane = False
    app.state.raw_pool = None
    app.state.database = database or Database(settings.database_url,
                                                 pool=settings.database_pool())
    _install_error_handlers(app)
    _install_log_redaction()

    _install_docs(app)

    app.include_router(_health_router)

    from patron.campaigns.endpoints import router as campaigns_router
    from patron.campaigns.endpoints import stores_router as store_environment_router
    from patron.coalition.endpoints import router as coalition_router
    from patron.identity.endpoints import router as identity_router
    from patron.identity.telephony import router as telephony_router
    from patron.imports.endpoints import router as imports_router
    from patron.ledger.endpoints import router as ledger_router
    from patron.members.endpoints import exports_router
    from patron.members.endpoints import router as members_router
    from patron.notify.endpoints import pages as notify_pages
    from patron.notify.endpoints import router as notify_router
    from patron.offline.endpoints import router as offline_router
    from patron.operations.endpoints import router as operations_router
    from patron.pos.endpoints import router as pos_router
    from patron.programs.endpoints import router as programs_router
    from patron.referrals.endpoints import router as referrals_router
    from patron.scores.endpoints import router as scores_router
    from patron.security.endpoints import router as security_router
    from patron.tenancy.endpoints import router as tenancy_router
    from patron.vouchers.benefits.endpoints import members_router as progress_router
    from patron.vouchers.benefits.endpoints import router as benefits_router
    from patron.vouchers.endpoints import router as vouchers_router

    for router in (tenancy_router, members_router, identity_router, telephony_router,
                   programs_router, operations_router, pos_router, coalition_router,
                   ledger_router, vouchers_router):
        app.include_router(router)
    app.include_router(offline_router)
    app.include_router(security_router)
    app.include_router(benefits_router)
    app.include_router(progress_router)
    app.include_router(scores_router)
    app.include_router(campaigns_router)
    app.include_router(store_environment_router)
    app.include_router(referrals_router)
    app.include_router(exports_router)
    app.include_router(imports_router)
    app.include_router(notify_router)
    app.include_router(notify_pages)
    from patron.web.install import install as install_web

    install_web(app)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(CrashLog)
    # Inside the body limit, which then bounds what it reads and keeps.
    app.add_middleware(Idempotency,
                       route_of=lambda method, path: _routes(app).template(method, path),
                       database=lambda: app.state.database,
                       encryption_key=settings.encryption_key,
                       retention=timedelta(hours=settings.idempotency_key_hours),
                       render=_render_problem)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes,
                       larger=dict.fromkeys(IMPORT_PATHS, settings.max_import_bytes))
    app.add_middleware(SecurityHeaders)
    app.add_middleware(ProblemLanguage)
    return app
