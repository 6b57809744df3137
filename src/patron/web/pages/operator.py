"""The operator console (docs/web.md, "The operator console"): the coalition's merchants
with today's figures, their stores and terminals (a terminal's key shown once), and
staff. The operator's staff act as the operator (``tenancy.rules.acting_role``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from patron.analytics.figures import day_figures
from patron.errors import PatronError
from patron.kit.clock import utcnow
from patron.tenancy import service as tenancy
from patron.tenancy import staff as accounts
from patron.tenancy.models import StaffRole, StaffUser, TerminalKind
from patron.tenancy.rules import Area
from patron.tenancy.schemas import MerchantCreate, StoreCreate, TerminalCreate
from patron.tenancy.service import Principal
from patron.tenancy.staff import StaffContext
from patron.web.pages.common import (
    PageRefused,
    database_of,
    field_errors,
    form_of,
    language,
    redirect,
    remember_language,
    text,
)
from patron.web.pages.staff import staff_in
from patron.web.render import render, translate
from patron.web.routing import page_router

router = page_router()



def operator_of(session: Session, request: Request) -> tuple[StaffContext, Principal, str]:
    found, principal = staff_in(session, request, Area.operator)
    return found, principal, language(request, found.language)


def operator_page(request: Request, template: str, code: str, found: StaffContext,
          **values: Any) -> Response:
    return remember_language(request, render(request, template, code, staff=found,
                                             **values))


def _schema_errors(invalid: ValidationError, code: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for error in invalid.errors():
        where = [part for part in error.get("loc", ()) if isinstance(part, str)]
        errors.setdefault(where[0] if where else "name", translate(
            code, "Check this value: %(problem)s", problem=str(error.get("msg", ""))))
    return errors


def _prefixed(form: str, values: dict[str, str]) -> dict[str, str]:
    """One form's fields among the page's (``store_code``, ``terminal_code``…)."""
    return {f"{form}_{name}": value for name, value in values.items()}


def _merchants(session: Session, principal: Principal) -> list[dict[str, Any]]:
    now = utcnow()
    return [{"merchant": merchant,
             "figures": day_figures(session, merchant_id=merchant.id,
                                    timezone=merchant.timezone, now=now)}
            for merchant in tenancy.list_merchants(session, actor=principal)]


@router.get("/operator")
def home(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, code = operator_of(session, request)
        return operator_page(request, "operator_home.html", code, found,
                     merchants=_merchants(session, principal), errors={}, values={})


@router.post("/operator/merchants")
async def add_merchant(request: Request) -> Response:
    form = await form_of(request)
    values = {name: text(form, name) for name in ("number", "name", "currency", "timezone",
                                                  "country")}
    code = language(request)
    try:
        data = MerchantCreate.model_validate(
            {**values, "number": int(values["number"]) if values["number"].isdigit()
             else values["number"]})
        with database_of(request).session_scope() as session:
            _found, principal, code = operator_of(session, request)
            merchant = tenancy.create_merchant(session, actor=principal, data=data)
            return redirect(request, f"/operator/merchants/{merchant.id}")
    except ValidationError as invalid:
        errors, status = _schema_errors(invalid, code), 422
    except PatronError as refusal:
        if refusal.status in (403, 404):
            raise
        errors, status = field_errors(refusal, code, "number"), refusal.status
    with database_of(request).session_scope() as session:
        found, principal, code = operator_of(session, request)
        return operator_page(request, "operator_home.html", code, found,
                     merchants=_merchants(session, principal), errors=errors, values=values,
                     status=status)


def _merchant_page(request: Request, session: Session, merchant_id: uuid.UUID,
                   **extra: Any) -> Response:
    found, principal, code = operator_of(session, request)
    merchant = tenancy.get_merchant(session, actor=principal, merchant_id=merchant_id)
    stores = [{"store": store,
               "terminals": tenancy.list_terminals(session, actor=principal,
                                                   store_id=store.id)}
              for store in tenancy.list_stores(session, actor=principal,
                                               merchant_id=merchant.id)]
    values = {"errors": {}, "values": {}, "new_key": None, "invitation": None, **extra}
    return operator_page(request, "operator_merchant.html", code, found, merchant=merchant,
                 stores=stores, kinds=[kind.value for kind in TerminalKind],
                 roles=[StaffRole.owner.value, StaffRole.manager.value,
                        StaffRole.cashier.value, StaffRole.sales_rep.value],
                 figures=day_figures(session, merchant_id=merchant.id,
                                     timezone=merchant.timezone, now=utcnow()),
                 **values)


@router.get("/operator/merchants/{merchant_id}")
def merchant_page(request: Request, merchant_id: uuid.UUID) -> Response:
    with database_of(request).session_scope() as session:
        return _merchant_page(request, session, merchant_id)


@router.post("/operator/merchants/{merchant_id}/stores")
async def add_store(request: Request, merchant_id: uuid.UUID) -> Response:
    form = await form_of(request)
    values = {name: text(form, name) for name in ("code", "name", "address", "timezone")}
    code = language(request)
    try:
        data = StoreCreate.model_validate({k: v or None for k, v in values.items()})
        with database_of(request).session_scope() as session:
            _found, principal, code = operator_of(session, request)
            tenancy.create_store(session, actor=principal, merchant_id=merchant_id, data=data)
        return redirect(request, f"/operator/merchants/{merchant_id}#stores")
    except ValidationError as invalid:
        errors, status = _prefixed("store", _schema_errors(invalid, code)), 422
    except PatronError as refusal:
        if refusal.status in (403, 404):
            raise
        errors = _prefixed("store", field_errors(refusal, code, "code"))
        status = refusal.status
    with database_of(request).session_scope() as session:
        return _merchant_page(request, session, merchant_id, errors=errors,
                              values=_prefixed("store", values), status=status)


@router.post("/operator/stores/{store_id}/terminals")
async def add_terminal(request: Request, store_id: uuid.UUID) -> Response:
    """A terminal, and its API key — shown on this answer once, never again."""
    form = await form_of(request)
    values = {"code": text(form, "code"), "kind": text(form, "kind") or "pos"}
    code = language(request)
    with database_of(request).session_scope() as session:
        _found, principal, code = operator_of(session, request)
        merchant_id = tenancy.get_store(session, actor=principal, store_id=store_id).merchant_id
    try:
        data = TerminalCreate.model_validate(values)
        with database_of(request).session_scope() as session:
            _found, principal, code = operator_of(session, request)
            terminal, secret = tenancy.create_terminal(session, actor=principal,
                                                       store_id=store_id, data=data)
            new_key = {"terminal": terminal.code, "key": secret}
        with database_of(request).session_scope() as session:
            return _merchant_page(request, session, merchant_id, new_key=new_key)
    except ValidationError as invalid:
        errors, status = _prefixed("terminal", _schema_errors(invalid, code)), 422
    except PatronError as refusal:
        if refusal.status in (403, 404):
            raise
        errors = _prefixed("terminal", field_errors(refusal, code, "code"))
        status = refusal.status
    with database_of(request).session_scope() as session:
        return _merchant_page(request, session, merchant_id, errors=errors,
                              values=_prefixed("terminal", values),
                              store_with_error=str(store_id), status=status)


@router.post("/operator/merchants/{merchant_id}/staff")
async def invite_staff(request: Request, merchant_id: uuid.UUID) -> Response:
    """A merchant's staff user, and the invitation link to give them (shown once)."""
    form = await form_of(request)
    values = {name: text(form, name) for name in ("email", "name", "role")}
    code = language(request)
    with database_of(request).session_scope() as session:
        found, principal, code = operator_of(session, request)
        tenancy.get_merchant(session, actor=principal, merchant_id=merchant_id)
    errors: dict[str, str] = {}
    invitation = None
    try:
        role = StaffRole(values["role"])
        if role == StaffRole.operator or "@" not in values["email"] or not values["name"]:
            raise ValueError(values["role"])
        with database_of(request).session_scope() as session:
            inviter = session.get(StaffUser, found.user_id)
            if inviter is None:  # signed out since: never invite as the system
                raise PageRefused(303, location="/login")
            _user, token = accounts.create_staff(
                session, inviter=inviter, email=values["email"], name=values["name"][:200],
                role=role, merchant_id=merchant_id)
            invitation = f"{request.app.state.settings.public_base_url.rstrip('/')}" \
                         f"/invitation/{token}"
    except ValueError:
        errors = {"staff_email": translate(code, "Give a name, an e-mail address and a "
                                                 "role.")}
    except PatronError as refusal:
        if refusal.status in (403, 404):
            raise
        errors = _prefixed("staff", field_errors(refusal, code, "email"))
    with database_of(request).session_scope() as session:
        return _merchant_page(request, session, merchant_id, errors=errors,
                              values=_prefixed("staff", values) if errors else {},
                              invitation=invitation, status=422 if errors else 200)
