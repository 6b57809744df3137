"""The operator console's sections (docs/web.md, "The operator console"): the coalition's
miles rates, the settlements across merchants, staff, API keys, the scheduled jobs and
the health of deliveries. The operator's staff act as the operator
(``pages.operator.operator_of``), through the services the operator key's endpoints call."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from patron.coalition import service as coalition
from patron.coalition.schemas import RatesWrite
from patron.errors import PatronError
from patron.jobs import status as job_status
from patron.kit.clock import utcnow
from patron.notify.health import delivery_health
from patron.tenancy import service as tenancy
from patron.tenancy import staff as accounts
from patron.tenancy.models import Merchant, Role, StaffRole, StaffUser, Store, Terminal
from patron.tenancy.schemas import ApiKeyCreate
from patron.web.pages.common import (
    PageRefused,
    database_of,
    field_errors,
    form_of,
    language,
    problem_text,
    redirect,
    text,
)
from patron.web.pages.console_activity import channel_names, settlement_of, this_month
from patron.web.pages.operator import operator_of, operator_page
from patron.web.render import translate
from patron.web.routing import page_router

if TYPE_CHECKING:
    from patron.jobs.scheduler import Job

router = page_router()

# Empty rows under the rates, for new currencies.
NEW_RATE_ROWS = 3
KEY_ROLES = (Role.operator, Role.merchant, Role.terminal, Role.sales_rep)



def _refused(refusal: PatronError) -> None:
    """403 and 404 are the route's to answer (the error page); the rest a form's."""
    if refusal.status in (403, 404):
        raise refusal


def _merchant_names(session: Session) -> dict[uuid.UUID, str]:
    return {merchant.id: f"{merchant.number:05d} {merchant.name}"
            for merchant in session.scalars(select(Merchant).order_by(Merchant.number))}


# --- coalition rates ---------------------------------------------------------------------

RATE_FIELDS = ("currency", "spend_per_mile", "mile_value_milli")


def _rate_rows(form: FormData) -> list[dict[str, str]]:
    columns = [form.getlist(name) for name in RATE_FIELDS]
    return [{name: str(value).strip()[:32] for name, value in zip(RATE_FIELDS, row,
                                                                   strict=True)}
            for row in zip(*columns, strict=False)][:200]


def _whole(value: str) -> Any:
    """A whole number as typed, else the text (for the schema to refuse at its field)."""
    return int(value) if re.fullmatch(r"-?\d{1,19}", value) else value


def _rates(request: Request, session: Session, **values: Any) -> Response:
    found, principal, code = operator_of(session, request)
    rates = coalition.get_rates(session, actor=principal)
    rows = values.pop("rows", None) or [
        {"currency": rate.currency, "spend_per_mile": str(rate.spend_per_mile),
         "mile_value_milli": str(rate.mile_value_milli)} for rate in rates.rates]
    rows = rows + [dict.fromkeys(RATE_FIELDS, "") for _ in range(NEW_RATE_ROWS)]
    shown = {"errors": {}, "saved": False, "status": 200, **values}
    return operator_page(request, "operator_rates.html", code, found, rates=rates.rates, rows=rows,
                 **shown)


@router.get("/operator/rates")
def rates_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        return _rates(request, session, saved=request.query_params.get("saved") == "1")


@router.post("/operator/rates")
async def put_rates(request: Request) -> Response:
    """Replace the whole table (``PUT /v1/coalition/rates``): a row left empty is left
    out, and a currency left out earns no miles from then on."""
    rows = _rate_rows(await form_of(request))
    origin = [index for index, row in enumerate(rows) if any(row.values())]
    body = {"rates": [{"currency": rows[index]["currency"],
                       "spend_per_mile": _whole(rows[index]["spend_per_mile"]),
                       "mile_value_milli": _whole(rows[index]["mile_value_milli"])}
                      for index in origin]}
    code = language(request)
    errors: dict[str, str] = {}
    try:
        with database_of(request).session_scope() as session:
            _found, principal, code = operator_of(session, request)
            coalition.put_rates(session, actor=principal, data=RatesWrite.model_validate(body))
        return redirect(request, "/operator/rates?saved=1")
    except ValidationError as invalid:
        for error in invalid.errors():
            loc = error.get("loc", ())
            errors.setdefault(_rate_field(loc, origin), translate(
                code, "Check this value: %(problem)s", problem=str(error.get("msg", ""))))
    except PatronError as refusal:
        _refused(refusal)
        at = re.fullmatch(r"rates\[(\d+)\]\.(\w+)", str(refusal.extra.get("field") or ""))
        errors = {_rate_field(("rates", int(at.group(1)), at.group(2)) if at else (), origin):
                  problem_text(refusal, code)}
    with database_of(request).session_scope() as session:
        return _rates(request, session, rows=rows, errors=errors, status=422)


def _rate_field(loc: Any, origin: list[int]) -> str:
    """The form field of a problem at ``rates[i].name``: the i-th row sent is the form's
    row ``origin[i]``."""
    parts = list(loc)
    if len(parts) >= 3 and isinstance(parts[1], int) and parts[1] < len(origin) \
            and parts[2] in RATE_FIELDS:
        return f"rate_{parts[2]}_{origin[parts[1]]}"
    return "rates"


# --- settlements ------------------------------------------------------------------------

@router.get("/operator/settlements")
def settlements_page(request: Request) -> Response:
    """Every merchant's line and the coalition's (``GET /v1/coalition/settlements``)."""
    period = (request.query_params.get("period") or this_month()).strip()[:16]
    with database_of(request).session_scope() as session:
        found, principal, code = operator_of(session, request)
        settlement, errors, months = settlement_of(session, principal, period, code)
        return operator_page(request, "operator_settlements.html", code, found,
                     settlement=settlement, months=months, errors=errors,
                     values={"period": period}, status=422 if errors else 200)


# --- staff ------------------------------------------------------------------------------

def _staff(request: Request, session: Session, **values: Any) -> Response:
    found, _principal, code = operator_of(session, request)
    viewer = session.get(StaffUser, found.user_id)
    assert viewer is not None
    merchants = _merchant_names(session)
    now = utcnow()
    people = [{"user": user, "email": accounts.email_of(user),
               "merchant": merchants.get(user.merchant_id) if user.merchant_id else None,
               "state": ("disabled" if user.disabled_at is not None else
                         "locked" if user.locked_until is not None and user.locked_until > now
                         else "invited" if user.password_hash is None else "active")}
              for user in accounts.list_staff(session, viewer=viewer)]
    shown = {"errors": {}, "values": {}, "invitation": None, "status": 200, **values}
    return operator_page(request, "operator_staff.html", code, found, people=people, **shown)


@router.get("/operator/staff")
def staff_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        return _staff(request, session)


@router.post("/operator/staff")
async def invite_operator(request: Request) -> Response:
    """An operator staff user, and the invitation link to give them (shown once). A
    merchant's staff are invited from the merchant's page."""
    form = await form_of(request)
    values = {name: text(form, name) for name in ("email", "name")}
    code = language(request)
    with database_of(request).session_scope() as session:
        found, _principal, code = operator_of(session, request)
    errors: dict[str, str] = {}
    status = 422
    if not values["name"]:
        errors["name"] = translate(code, "Give the person's name.")
    if "@" not in values["email"] or len(values["email"]) > 254:
        errors["email"] = translate(code, "Give an e-mail address, such as ana@example.com.")
    if not errors:
        try:
            with database_of(request).session_scope() as session:
                inviter = session.get(StaffUser, found.user_id)
                if inviter is None:  # signed out meanwhile: never invite as the system
                    raise PageRefused(403)
                _user, token = accounts.create_staff(
                    session, inviter=inviter, email=values["email"],
                    name=values["name"][:200], role=StaffRole.operator)
            base = request.app.state.settings.public_base_url.rstrip("/")
            with database_of(request).session_scope() as session:
                return _staff(request, session, invitation=f"{base}/invitation/{token}")
        except PatronError as refusal:
            _refused(refusal)
            errors, status = field_errors(refusal, code, "email"), refusal.status
    with database_of(request).session_scope() as session:
        return _staff(request, session, errors=errors, values=values, status=status)


# --- API keys -----------------------------------------------------------------------------

def _keys(request: Request, session: Session, **values: Any) -> Response:
    found, principal, code = operator_of(session, request)
    now = utcnow()
    terminals = {terminal.id: f"{merchant.number:05d} {store.code}/{terminal.code}"
                 for terminal, store, merchant in session.execute(
                     select(Terminal, Store, Merchant)
                     .join(Store, Store.id == Terminal.store_id)
                     .join(Merchant, Merchant.id == Terminal.merchant_id)
                     .order_by(Merchant.number, Store.code, Terminal.code))}
    keys = [{"key": key, "state": ("revoked" if key.revoked_at is not None else
                                   "expired" if tenancy.key_expired(key.expires_at, now)
                                   else "active")}
            for key in tenancy.list_keys(session, actor=principal)]
    shown = {"errors": {}, "values": {}, "new_key": None, "status": 200, **values}
    return operator_page(request, "operator_keys.html", code, found, keys=keys,
                 merchants=_merchant_names(session), terminals=terminals,
                 roles=[role.value for role in KEY_ROLES],
                 revoked=request.query_params.get("revoked") == "1", **shown)


@router.get("/operator/keys")
def keys_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        return _keys(request, session)


@router.post("/operator/keys")
async def create_key(request: Request) -> Response:
    """An API key (``POST /v1/keys``), shown on this answer once, never again."""
    form = await form_of(request)
    values = {name: text(form, name) for name in ("role", "merchant_id", "terminal_id",
                                                  "label", "expires_on")}
    code = language(request)
    errors: dict[str, str] = {}
    status = 422
    expires_at = None
    if values["expires_on"]:
        try:
            expires_at = datetime.combine(date.fromisoformat(values["expires_on"]), time(),
                                          UTC)
        except ValueError:
            errors["expires_on"] = translate(code, "Give a date, such as 2026-12-01.")
    if not errors:
        try:
            data = ApiKeyCreate.model_validate({
                "role": values["role"], "merchant_id": values["merchant_id"] or None,
                "terminal_id": values["terminal_id"] or None,
                "label": values["label"] or None, "expires_at": expires_at})
            with database_of(request).session_scope() as session:
                _found, principal, code = operator_of(session, request)
                api_key, secret = tenancy.create_key(session, actor=principal, data=data)
                new_key = {"prefix": api_key.prefix, "role": api_key.role, "key": secret}
            with database_of(request).session_scope() as session:
                return _keys(request, session, new_key=new_key)
        except ValidationError as invalid:
            for error in invalid.errors():
                where = [part for part in error.get("loc", ()) if isinstance(part, str)]
                field = where[0] if where else "role"
                errors.setdefault("expires_on" if field == "expires_at" else field, translate(
                    code, "Check this value: %(problem)s", problem=str(error.get("msg", ""))))
        except PatronError as refusal:
            _refused(refusal)
            field = str(refusal.extra.get("field") or "role")
            errors = {"expires_on" if field == "expires_at" else field:
                      problem_text(refusal, code)}
            status = refusal.status
    with database_of(request).session_scope() as session:
        return _keys(request, session, errors=errors, values=values, status=status)


@router.post("/operator/keys/{key_id:uuid}/revoke")
async def revoke_key(request: Request, key_id: uuid.UUID) -> Response:
    """Revoke a key (``POST /v1/keys/{id}/revoke``): it stops working at once."""
    await form_of(request)
    with database_of(request).session_scope() as session:
        _found, principal, _code = operator_of(session, request)
        tenancy.revoke_key(session, actor=principal, key_id=key_id)
    return redirect(request, "/operator/keys?revoked=1")


# --- jobs -------------------------------------------------------------------------------

@router.get("/operator/jobs")
def jobs_page(request: Request) -> Response:
    """The scheduled jobs, their schedules and the newest trace of each one's work
    (``jobs.status``: nothing records the runs themselves)."""
    settings = request.app.state.settings
    with database_of(request).session_scope() as session:
        found, _principal, code = operator_of(session, request)
        return operator_page(request, "operator_jobs.html", code, found,
                     jobs=job_status.job_statuses(session, jobs=_jobs()),
                     leader=job_status.lease_held(session),
                     interval=settings.jobs_interval_seconds)


def _jobs() -> tuple[Job, ...]:
    # The job list imports what the jobs run (NumPy and SciPy among it): read when the
    # page is asked for, not when a server worker starts (tests/test_startup.py).
    from patron.jobs.scheduler import JOBS

    return JOBS


# --- delivery health --------------------------------------------------------------------

@router.get("/operator/deliveries")
def deliveries_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, code = operator_of(session, request)
        return operator_page(request, "operator_deliveries.html", code, found,
                     health=delivery_health(session, actor=principal, now=utcnow()),
                     channel_names=channel_names(code),
                     worker_in_serve=request.app.state.settings.deliveries_in_serve)
