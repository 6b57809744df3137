"""The merchant console's activity (docs/web.md, "The merchant console"): security events,
coalition settlements, targeted messages and webhooks. An owner or a manager acts as their
merchant (``pages.console.console_of``), through the services the API's merchant key calls
(``security.service``, ``coalition.service``, ``notify.targeted``, ``notify.webhooks``,
``notify.service``), so the console sees what that key sees: another merchant's message
or endpoint is a 404 page, another merchant's events and settlement lines never show."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from patron.campaigns.conditions import FIELDS, OPERATORS
from patron.coalition import service as coalition
from patron.coalition.schemas import SettlementRead
from patron.errors import PatronError
from patron.kit.clock import utcnow
from patron.notify import service as deliveries
from patron.notify import targeted, webhooks
from patron.notify.rules import DeliveryStatus
from patron.notify.schemas import (
    AudiencePreview,
    MessageAudience,
    MessageWrite,
    WebhookEndpointCreate,
    WebhookEndpointUpdate,
)
from patron.security import service as security
from patron.security.models import SecurityEventKind
from patron.tenancy import service as tenancy
from patron.tenancy.models import Merchant
from patron.tenancy.service import Principal
from patron.vouchers import offers
from patron.web.pages.common import (
    PageRefused,
    database_of,
    field_errors,
    form_of,
    language,
    redirect,
    text,
)
from patron.web.pages.console import CampaignForm, console_of, console_page
from patron.web.render import translate
from patron.web.routing import page_router

router = page_router()

# Rows on a page of security events, and deliveries shown of an endpoint.
EVENTS_PER_PAGE = 50
DELIVERIES_SHOWN = 50
CHANNELS = ("email", "sms", "push")
MEMBER_FIELDS = sorted(name for name in FIELDS if name.startswith("member."))
MEMBER_OPERATORS = sorted(set().union(*(OPERATORS[FIELDS[name]] for name in MEMBER_FIELDS)))



def _schema_errors(invalid: ValidationError, code: str, default: str) -> dict[str, str]:
    """A form's values refused by the API's own schema, each at its field."""
    errors: dict[str, str] = {}
    for error in invalid.errors():
        where = [part for part in error.get("loc", ()) if isinstance(part, str)]
        errors.setdefault(where[0] if where else default, translate(
            code, "Check this value: %(problem)s", problem=str(error.get("msg", ""))))
    return errors


def _refused(refusal: PatronError) -> None:
    """403 and 404 are the route's to answer (the error page); the rest a form's."""
    if refusal.status in (403, 404):
        raise refusal


# --- security events --------------------------------------------------------------------

def kind_names(code: str) -> dict[str, str]:
    return {"voucher_validation": translate(code, "Voucher check"),
            "voucher_reservation": translate(code, "Voucher hold"),
            "voucher_redemption": translate(code, "Voucher redemption"),
            "voucher_lookup": translate(code, "Voucher look-up"),
            "pos_quote": translate(code, "Quote at a register"),
            "pos_commit": translate(code, "Purchase at a register"),
            "offline_forgery": translate(code, "Forged offline allowance"),
            "identification": translate(code, "Identification"),
            "referral": translate(code, "Referral")}


def _terminals(session: Session, principal: Principal, merchant: Merchant
               ) -> dict[uuid.UUID, str]:
    """The merchant's terminals, each named ``store/terminal``."""
    return {terminal.id: f"{store.code}/{terminal.code}"
            for store in tenancy.list_stores(session, actor=principal, merchant_id=merchant.id)
            for terminal in tenancy.list_terminals(session, actor=principal,
                                                   store_id=store.id)}


@router.get("/console/security")
def security_page(request: Request) -> Response:
    """The merchant's security events (``GET /v1/security-events``), newest first, a page
    at a time, filtered by kind, terminal and day."""
    query = request.query_params
    values = {name: (query.get(name) or "").strip()[:64] for name in ("kind", "terminal",
                                                                      "since")}
    cursor_text = query.get("cursor") or ""
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        terminals = _terminals(session, principal, merchant)
        errors: dict[str, str] = {}
        kind = values["kind"] or None
        if kind is not None and kind not in {str(known) for known in SecurityEventKind}:
            errors["kind"] = translate(code, "Choose a kind from the list.")
        terminal_id = None
        if values["terminal"]:
            try:
                terminal_id = uuid.UUID(values["terminal"])
            except ValueError:
                terminal_id = None
            if terminal_id not in terminals:
                errors["terminal"] = translate(code, "Choose a terminal from the list.")
        since = None
        if values["since"]:
            try:
                since = datetime.combine(date.fromisoformat(values["since"]), time(),
                                         ZoneInfo(merchant.timezone))
            except ValueError:
                errors["since"] = translate(code, "Give a date, such as 2026-12-01.")
        cursor = int(cursor_text) if cursor_text.isdigit() and len(cursor_text) < 19 else None
        events: list[Any] = []
        next_cursor = None
        if not errors:
            events, next_cursor = security.list_events(
                session, actor=principal, query=security.EventQuery(
                    kind=kind, terminal_id=terminal_id, since=since, cursor=cursor,
                    limit=EVENTS_PER_PAGE))
        filters = {name: value for name, value in values.items() if value}
        return console_page(request, "console_security.html", code, found, merchant, "security",
                     events=events, terminals=terminals, kinds=[str(k) for k in
                                                                SecurityEventKind],
                     kind_names=kind_names(code), errors=errors, values=values,
                     first_page=cursor is None,
                     newest_href="/console/security" + (f"?{urlencode(filters)}"
                                                        if filters else ""),
                     older_href=(f"/console/security?"
                                 f"{urlencode({**filters, 'cursor': next_cursor})}"
                                 if next_cursor is not None else None),
                     status=422 if errors else 200)


# --- settlements ------------------------------------------------------------------------

def settlement_of(session: Session, principal: Principal, period: str, code: str
                  ) -> tuple[SettlementRead | None, dict[str, str], dict[str, str]]:
    """One month's settlement as the principal sees it (``GET
    /v1/coalition/settlements``), or the refusal at the period's field; and the
    neighbouring months' periods."""
    try:
        read = coalition.settlement(session, actor=principal, period=period)
    except PatronError as refusal:
        _refused(refusal)
        return None, field_errors(refusal, code, "period"), {}
    return read, {}, {"previous": (read.starts_at - timedelta(days=1)).strftime("%Y-%m"),
                      "next": read.ends_at.strftime("%Y-%m")}


def this_month() -> str:
    return utcnow().strftime("%Y-%m")


@router.get("/console/settlements")
def settlements_page(request: Request) -> Response:
    period = (request.query_params.get("period") or this_month()).strip()[:16]
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        settlement, errors, months = settlement_of(session, principal, period, code)
        line = settlement.merchants[0] if settlement and settlement.merchants else None
        return console_page(request, "console_settlements.html", code, found, merchant,
                     "settlements", settlement=settlement, line=line, months=months,
                     errors=errors, values={"period": period},
                     status=422 if errors else 200)


# --- targeted messages -------------------------------------------------------------------

def channel_names(code: str) -> dict[str, str]:
    return {"email": translate(code, "E-mail"), "sms": translate(code, "SMS"),
            "push": translate(code, "Web push"), "webhook": translate(code, "Webhook")}


class MessageForm:
    """The message form as posted: its channel, subject, text and offer, and the audience
    as condition rows over member fields (the campaign form's rows, ``CampaignForm``)."""

    def __init__(self, values: dict[str, str], rows: CampaignForm) -> None:
        self.values = values
        self.rows = rows

    @classmethod
    def empty(cls) -> MessageForm:
        return cls({"channel": "email", "combine": "all"}, CampaignForm.empty())

    @classmethod
    def of(cls, form: FormData) -> MessageForm:
        rows = CampaignForm.of(form)
        values = {name: text(form, name) for name in ("channel", "subject", "offer_id",
                                                      "combine")}
        raw = form.get("text")
        values["text"] = raw.strip() if isinstance(raw, str) else ""
        return cls(values, rows)

    @property
    def adding_row(self) -> bool:
        return bool(self.rows.values.get("add_row"))

    def body(self) -> tuple[dict[str, Any], list[int]]:
        """The API's body (``MessageWrite``), and which form row each condition came
        from."""
        conditions, origin = self.rows.conditions()
        return {"audience": {"conditions": conditions},
                "channel": self.values["channel"] or "email",
                "subject": self.values["subject"] or None, "text": self.values["text"],
                "offer_id": self.values["offer_id"] or None}, origin


def _condition_message(part: str, error: dict[str, Any], code: str) -> str:
    if part == "field":
        return translate(code, "Choose a field from the list.")
    if part == "op":
        return translate(code, "This comparison does not fit the field.")
    if part == "value":
        return translate(code, "This value does not fit the field and comparison.")
    if part == "key" and error.get("type") == "missing":
        return translate(code, "This field needs a key (a category or item code).")
    return translate(code, "Check this value: %(problem)s", problem=str(error.get("msg", "")))


def _audience_errors(refusal: PatronError, origin: list[int], code: str) -> dict[str, str]:
    """The audience's problems (``loc`` under ``audience.conditions``) at the form row's
    field, key, comparison or value; anything else at its own field."""
    errors: dict[str, str] = {}
    listed: list[dict[str, Any]] = refusal.extra.get("errors") or []
    for error in listed:
        loc = [part for part in error.get("loc", ()) if part not in ("body", "audience",
                                                                     "conditions")]
        index = next((part for part in loc if isinstance(part, int)), None)
        part = next((p for p in reversed(loc) if p in ("field", "key", "op", "value")), None)
        if index is not None and part is not None and index < len(origin):
            errors.setdefault(f"cond_{part}_{origin[index]}",
                              _condition_message(str(part), error, code))
        else:
            errors.setdefault("audience", _condition_message("", error, code))
    return errors or field_errors(refusal, code, "audience")


def _compose(request: Request, session: Session, posted: MessageForm, *,
             errors: dict[str, str], preview: AudiencePreview | None = None,
             status: int = 200) -> Response:
    found, principal, merchant, code = console_of(session, request)
    return console_page(request, "console_message_form.html", code, found, merchant, "messages",
                 form=posted, errors=errors, preview=preview, fields=MEMBER_FIELDS,
                 operators=MEMBER_OPERATORS, channels=CHANNELS,
                 channel_names=channel_names(code),
                 offers=[offer for offer in offers.list_offers(session, actor=principal)
                         if offer.revoked_at is None], status=status)


@router.get("/console/messages")
def messages_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_messages.html", code, found, merchant, "messages",
                     messages=targeted.list_messages(session, actor=principal),
                     channel_names=channel_names(code))


@router.get("/console/messages/new")
def new_message_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        return _compose(request, session, MessageForm.empty(), errors={})


@router.post("/console/messages/preview")
async def preview_message(request: Request) -> Response:
    """How many members the audience selects and how many the channel reaches
    (``POST /v1/messages/preview``): nothing is sent."""
    posted = MessageForm.of(await form_of(request))
    body, origin = posted.body()
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, code = console_of(session, request)
        if posted.adding_row:
            return _compose(request, session, posted, errors={})
        try:
            data = MessageAudience.model_validate({"audience": body["audience"],
                                                   "channel": body["channel"]})
            preview = targeted.preview(session, actor=principal, data=data)
        except ValidationError as invalid:
            errors = _schema_errors(invalid, code, "audience")
        except PatronError as refusal:
            _refused(refusal)
            errors = _audience_errors(refusal, origin, code)
        else:
            return _compose(request, session, posted, errors={}, preview=preview)
    with database_of(request).session_scope() as session:
        return _compose(request, session, posted, errors=errors, status=422)


@router.post("/console/messages")
async def send_message(request: Request) -> Response:
    """Send it (``POST /v1/messages``): one message per reachable member, through the
    delivery worker (consent again when it goes, quiet hours, the weekly cap)."""
    posted = MessageForm.of(await form_of(request))
    body, origin = posted.body()
    code = language(request)
    try:
        with database_of(request).session_scope() as session:
            _found, principal, _merchant, code = console_of(session, request)
            sent = targeted.send(session, actor=principal,
                                 data=MessageWrite.model_validate(body))
        return redirect(request, f"/console/messages/{sent.id}?sent=1")
    except ValidationError as invalid:
        errors = _schema_errors(invalid, code, "audience")
    except PatronError as refusal:
        _refused(refusal)
        errors = _audience_errors(refusal, origin, code)
    with database_of(request).session_scope() as session:
        return _compose(request, session, posted, errors=errors, status=422)


@router.get("/console/messages/{message_id:uuid}")
def message_page(request: Request, message_id: uuid.UUID) -> Response:
    """A message and its figures (``GET /v1/messages/{id}``)."""
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        message = targeted.get_message(session, actor=principal, message_id=message_id)
        offer = (offers.get_offer(session, actor=principal, offer_id=message.offer_id)
                 if message.offer_id else None)
        return console_page(request, "console_message.html", code, found, merchant, "messages",
                     message=message, offer=offer, channel_names=channel_names(code),
                     sent=request.query_params.get("sent") == "1")


# --- webhooks -----------------------------------------------------------------------------

def status_names(code: str) -> dict[str, str]:
    return {"pending": translate(code, "pending"), "delivered": translate(code, "delivered"),
            "failed": translate(code, "failed"), "suppressed": translate(code, "suppressed")}


def _webhooks(request: Request, session: Session, **values: Any) -> Response:
    found, principal, merchant, code = console_of(session, request)
    shown = {"errors": {}, "values": {"events": []}, "created": None, "status": 200,
             **values}
    return console_page(request, "console_webhooks.html", code, found, merchant, "webhooks",
                 endpoints=webhooks.list_endpoints(session, actor=principal),
                 event_types=webhooks.event_catalogue(), **shown)


@router.get("/console/webhooks")
def webhooks_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        return _webhooks(request, session)


@router.post("/console/webhooks")
async def create_webhook(request: Request) -> Response:
    """A webhook endpoint (``POST /v1/webhook-endpoints``), and its signing secret — shown
    on this answer once, never again."""
    form = await form_of(request)
    values: dict[str, Any] = {"url": text(form, "url"), "description": text(form, "description"),
                              "events": [str(event).strip() for event in form.getlist("events")
                                         ][:60]}
    code = language(request)
    try:
        with database_of(request).session_scope() as session:
            _found, principal, _merchant, code = console_of(session, request)
            data = WebhookEndpointCreate.model_validate(
                {"url": values["url"], "events": values["events"],
                 "description": values["description"] or None})
            created = webhooks.create_endpoint(session, actor=principal, data=data)
        with database_of(request).session_scope() as session:
            return _webhooks(request, session, created=created)
    except ValidationError as invalid:
        errors = _schema_errors(invalid, code, "url")
        status = 422
    except PatronError as refusal:
        _refused(refusal)
        errors, status = field_errors(refusal, code, "url"), refusal.status
    with database_of(request).session_scope() as session:
        return _webhooks(request, session, errors=errors, values=values, status=status)


@router.get("/console/webhooks/{endpoint_id:uuid}")
def webhook_page(request: Request, endpoint_id: uuid.UUID) -> Response:
    """An endpoint and its recent deliveries, each with its attempts
    (``GET /v1/webhook-endpoints/{id}/deliveries``), by status if asked."""
    chosen = (request.query_params.get("status") or "").strip()[:32]
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        endpoint = webhooks.get_endpoint(session, actor=principal, endpoint_id=endpoint_id)
        errors: dict[str, str] = {}
        status = None
        if chosen:
            try:
                status = DeliveryStatus(chosen)
            except ValueError:
                errors["status"] = translate(code, "Choose a status from the list.")
        listed = [] if errors else deliveries.list_deliveries(
            session, actor=principal, query=deliveries.DeliveryQuery(
                endpoint_id=endpoint.id, status=status, limit=DELIVERIES_SHOWN)).deliveries
        return console_page(request, "console_webhook.html", code, found, merchant, "webhooks",
                     endpoint=endpoint, deliveries=listed, statuses=[str(s) for s in
                                                                      DeliveryStatus],
                     status_names=status_names(code), errors=errors,
                     values={"status": chosen}, status=422 if errors else 200)


@router.post("/console/webhooks/{endpoint_id:uuid}/{action}")
async def switch_webhook(request: Request, endpoint_id: uuid.UUID, action: str) -> Response:
    """Disable an endpoint, or enable a disabled one (``PATCH`` with ``enabled``); the API
    deletes none."""
    await form_of(request)
    enabled = {"enable": True, "disable": False}.get(action)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, _code = console_of(session, request)
        if enabled is None:
            raise PageRefused(404)
        webhooks.update_endpoint(session, actor=principal, endpoint_id=endpoint_id,
                                 data=WebhookEndpointUpdate(enabled=enabled))
    return redirect(request, f"/console/webhooks/{endpoint_id}")
