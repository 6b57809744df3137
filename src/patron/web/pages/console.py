"""The merchant console (docs/web.md, "The merchant console"): today's figures, members,
offers and codes, campaigns. An owner or a manager acts as their merchant
(``tenancy.rules.acting_role``), through the services the API's merchant key uses, so
the console sees what that key sees and nothing more."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from itertools import chain
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from patron import units
from patron.analytics.figures import day_figures
from patron.campaigns import results as campaign_results
from patron.campaigns import service as campaigns
from patron.campaigns import simulation
from patron.campaigns.conditions import FIELDS, OPERATORS
from patron.campaigns.models import CampaignStatus, Trigger
from patron.campaigns.schemas import CampaignWrite, ResultsUplift
from patron.errors import NotFound, PatronError
from patron.kit.clock import utcnow
from patron.ledger import views as ledger_views
from patron.ledger.corrections import adjust_member_points
from patron.members import service as members
from patron.tenancy.models import Merchant
from patron.tenancy.rules import Area
from patron.tenancy.service import Principal
from patron.tenancy.staff import StaffContext
from patron.vouchers import batches, offers
from patron.vouchers.schemas import CodesRead, CodesWrite, OfferWrite
from patron.web.pages.common import (
    PageRefused,
    database_of,
    field_errors,
    form_of,
    language,
    problem_text,
    redirect,
    remember_language,
    text,
)
from patron.web.pages.register import identification_of, request_address
from patron.web.pages.staff import staff_in
from patron.web.render import render, translate
from patron.web.routing import page_router

router = page_router()



def console_of(session: Session, request: Request
             ) -> tuple[StaffContext, Principal, Merchant, str]:
    found, principal = staff_in(session, request, Area.console)
    merchant = session.get(Merchant, principal.merchant_id)
    if merchant is None:
        raise PageRefused(404)
    return found, principal, merchant, language(request, found.language)


def console_page(request: Request, template: str, code: str, found: StaffContext,
          merchant: Merchant, section: str, **values: Any) -> Response:
    return remember_language(request, render(request, template, code, staff=found,
                                             merchant=merchant, section=section,
                                             offer_kinds=offer_kind_names(code), **values))


def offer_kind_names(code: str) -> dict[str, str]:
    return {"amount_off": translate(code, "Amount off"),
            "percent_off": translate(code, "Percent off"),
            "bonus_points": translate(code, "Bonus points"),
            "points_multiplier": translate(code, "Points multiplier"),
            "free_item": translate(code, "Free item"), "ticket": translate(code, "Ticket")}


@router.get("/console")
def home(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, _principal, merchant, code = console_of(session, request)
        figures = day_figures(session, merchant_id=merchant.id, timezone=merchant.timezone,
                              now=utcnow())
        return console_page(request, "console_home.html", code, found, merchant, "home",
                     figures=figures)


# --- members ------------------------------------------------------------------------------

@router.get("/console/members")
def members_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, _principal, merchant, code = console_of(session, request)
        return console_page(request, "console_members.html", code, found, merchant, "members",
                     errors={}, values={})


@router.post("/console/members")
async def find_member(request: Request) -> Response:
    """Search by member number, phone, card or the previous system's number: the same
    identification as the API's (throttled alike); a member the merchant may not read is
    not found."""
    form = await form_of(request)
    query = text(form, "query")
    how = text(form, "how") or "auto"
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        if how == "external_ref" and query:
            matches = members.find_by_external_ref(session, actor=principal,
                                                   merchant_id=merchant.id,
                                                   external_ref=query[:64])
            if matches:
                return redirect(request, f"/console/members/{matches[0].id}")
    refusal_text = translate(code, "No member of yours matches.")
    if how != "external_ref" and query:
        try:
            identified = units.identify(database_of(request), caller=principal,
                                        address=request_address(request),
                                        data=identification_of(query, how))
            with database_of(request).session_scope() as session:
                members.get_member(session, actor=principal,
                                   member_id=identified.member_id)
            return redirect(request, f"/console/members/{identified.member_id}")
        except ValidationError:
            pass
        except PatronError as refusal:
            if refusal.status not in (404, 410):
                refusal_text = problem_text(refusal, code)
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_members.html", code, found, merchant, "members",
                     errors={"query": refusal_text}, values={"query": query, "how": how},
                     status=404)


def _member_view(session: Session, principal: Principal, member_id: uuid.UUID
                 ) -> dict[str, Any]:
    read = members.read_member(session, actor=principal, member_id=member_id)
    return {
        "read": read,
        "balances": ledger_views.member_balances(session, actor=principal,
                                                 member_id=member_id),
        "history": ledger_views.member_history(session, actor=principal, member_id=member_id,
                                               query=ledger_views.HistoryQuery(limit=50)).items,
    }


@router.get("/console/members/{member_id}")
def member_page(request: Request, member_id: uuid.UUID) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_member.html", code, found, merchant, "members",
                     errors={}, values={}, adjusted=request.query_params.get("adjusted"),
                     key=uuid.uuid4().hex, **_member_view(session, principal, member_id))


@router.post("/console/members/{member_id}/adjustments")
async def adjust(request: Request, member_id: uuid.UUID) -> Response:
    form = await form_of(request)
    points_text = text(form, "points")
    reason = text(form, "reason")
    try:
        with database_of(request).session_scope() as session:
            found, principal, merchant, code = console_of(session, request)
            try:
                points = int(points_text)
            except ValueError:
                raise _NotWhole() from None
            adjust_member_points(session, actor=principal, member_id=member_id,
                                 points=points, reason=reason[:200],
                                 idempotency_key=f"console:{text(form, 'key')[:64]}")
    except _NotWhole:
        errors = {"points": translate(code, "Give a whole number of points, such as 100 or "
                                            "-50.")}
    except NotFound:
        raise
    except PatronError as refusal:
        errors = field_errors(refusal, code, "points")
    else:
        return redirect(request, f"/console/members/{member_id}?adjusted={points}")
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_member.html", code, found, merchant, "members",
                     errors=errors, values={"points": points_text, "reason": reason},
                     adjusted=None, key=text(form, "key") or uuid.uuid4().hex, status=422,
                     **_member_view(session, principal, member_id))


class _NotWhole(Exception):
    pass


# --- offers and codes -----------------------------------------------------------------------

OFFER_KINDS = ("amount_off", "percent_off", "bonus_points", "points_multiplier", "free_item")


@router.get("/console/offers")
def offers_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_offers.html", code, found, merchant, "offers",
                     offers=offers.list_offers(session, actor=principal), errors={},
                     values={}, kinds=OFFER_KINDS)


@router.post("/console/offers")
async def create_offer(request: Request) -> Response:
    form = await form_of(request)
    values = {name: text(form, name) for name in ("name", "description", "kind", "value",
                                                  "min_spend", "valid_days", "item_sku")}
    code = language(request)
    errors: dict[str, str] = {}
    try:
        data = OfferWrite(
            name=values["name"], description=values["description"] or None,
            kind=values["kind"], value=int(values["value"] or 0),
            min_spend=int(values["min_spend"] or 0),
            valid_days=int(values["valid_days"]) if values["valid_days"] else None,
            item_sku=values["item_sku"] or None)
    except ValueError as invalid:
        errors = form_errors(invalid, code)
    if not errors:
        try:
            with database_of(request).session_scope() as session:
                _found, principal, _merchant, code = console_of(session, request)
                offer = offers.create_offer(session, actor=principal, data=data)
                return redirect(request, f"/console/offers/{offer.id}")
        except PatronError as refusal:
            if refusal.status in (403, 404):
                raise
            errors = field_errors(refusal, code, "value")
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_offers.html", code, found, merchant, "offers",
                     offers=offers.list_offers(session, actor=principal), errors=errors,
                     values=values, kinds=OFFER_KINDS, status=422)


def form_errors(invalid: ValueError, code: str) -> dict[str, str]:
    """A form's values refused by the API's own schema, each at its field."""
    if not isinstance(invalid, ValidationError):
        return {"value": translate(code, "Give whole numbers.")}
    errors: dict[str, str] = {}
    for error in invalid.errors():
        where = [part for part in error.get("loc", ()) if isinstance(part, str)]
        errors.setdefault(where[0] if where else "name", translate(
            code, "Check this value: %(problem)s", problem=str(error.get("msg", ""))))
    return errors


@router.get("/console/offers/{offer_id}")
def offer_page(request: Request, offer_id: uuid.UUID) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        offer = offers.get_offer(session, actor=principal, offer_id=offer_id)
        return console_page(request, "console_offer.html", code, found, merchant, "offers",
                     offer=offer, errors={}, values={}, issued=[], batch=None)


@router.post("/console/offers/{offer_id}/codes")
async def generate_codes(request: Request, offer_id: uuid.UUID) -> Response:
    """Codes for the offer: up to 1,000 shown at once, more made by a batch job whose
    progress the page follows and whose codes download as CSV (``units.issue_codes``)."""
    form = await form_of(request)
    values = {"count": text(form, "count"), "max_redemptions": text(form, "max_redemptions")}
    database = database_of(request)
    with database.session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
    errors: dict[str, str] = {}
    issued = CodesRead(offer_id=offer_id, codes=[])
    try:
        issued = units.issue_codes(database, caller=principal, offer_id=offer_id,
                                   data=CodesWrite(
                                       count=int(values["count"] or 0),
                                       max_redemptions=int(values["max_redemptions"])
                                       if values["max_redemptions"] else None),
                                   in_background=request.app.state.settings
                                   .code_batches_in_background)
    except ValueError as invalid:
        errors = form_errors(invalid, code)
    except PatronError as refusal:
        if refusal.status in (403, 404):
            raise
        errors = field_errors(refusal, code, "count")
    if issued.batch_id is not None:
        return redirect(request, f"/console/batches/{issued.batch_id}")
    with database.session_scope() as session:
        offer = offers.get_offer(session, actor=principal, offer_id=offer_id)
        return console_page(request, "console_offer.html", code, found, merchant, "offers",
                     offer=offer, errors=errors, values=values, issued=issued.codes,
                     batch=None, status=422 if errors else 200)


@router.post("/console/offers/{offer_id}/revoke")
async def revoke_offer(request: Request, offer_id: uuid.UUID) -> Response:
    await form_of(request)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, _code = console_of(session, request)
        offers.revoke_offer(session, actor=principal, offer_id=offer_id)
    return redirect(request, f"/console/offers/{offer_id}")


@router.get("/console/batches/{batch_id}")
def batch_page(request: Request, batch_id: uuid.UUID) -> Response:
    """A batch's progress: the whole page, or (htmx, every second) its progress alone."""
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        batch = batches.get_batch(session, actor=principal, batch_id=batch_id)
        if request.headers.get("hx-request"):
            return render(request, "_batch_progress.html", code, batch=batch)
        offer = offers.get_offer(session, actor=principal, offer_id=batch.offer_id)
        return console_page(request, "console_offer.html", code, found, merchant, "offers",
                     offer=offer, errors={}, values={}, issued=[], batch=batch)


@router.get("/console/batches/{batch_id}/codes.csv")
def batch_csv(request: Request, batch_id: uuid.UUID) -> Response:
    database = database_of(request)
    with database.session_scope() as session:
        _found, principal, _merchant, _code = console_of(session, request)
    lines = batches.csv_lines(database, actor=principal, batch_id=batch_id)
    first = next(lines)  # the batch is the caller's, or 404 before the answer starts
    return StreamingResponse(chain([first], lines), media_type="text/csv",
                             headers={"Content-Disposition":
                                      f'attachment; filename="codes-{batch_id}.csv"',
                                      "Cache-Control": "no-store"})


# --- campaigns --------------------------------------------------------------------------------

CONDITION_ROWS = 4
ACTION_TYPES = ("issue_voucher", "bonus_points", "points_multiplier", "message")


@dataclass
class CampaignForm:
    """The campaign form as posted: its fields, the condition rows (field, key, operator,
    value) joined by all or any, and the one action."""

    values: dict[str, str]
    rows: list[dict[str, str]]

    @classmethod
    def empty(cls) -> CampaignForm:
        return cls(values={"trigger": "checkout", "combine": "all",
                           "action": "issue_voucher", "control_share": "10"},
                   rows=[{"field": "", "key": "", "op": "", "value": ""}
                         for _ in range(CONDITION_ROWS)])

    @classmethod
    def of(cls, form: FormData) -> CampaignForm:
        values = {name: text(form, name) for name in (
            "name", "trigger", "combine", "action", "offer_id", "points", "multiplier",
            "message", "per_member_count", "per_member_days", "control_share", "add_row")}
        rows = [{"field": str(f).strip(), "key": str(k).strip(), "op": str(o).strip(),
                 "value": str(v).strip()}
                for f, k, o, v in zip(form.getlist("cond_field"), form.getlist("cond_key"),
                                      form.getlist("cond_op"), form.getlist("cond_value"),
                                      strict=False)][:20]
        if values["add_row"] or len(rows) < CONDITION_ROWS:
            rows += [{"field": "", "key": "", "op": "", "value": ""}
                     for _ in range(max(1, CONDITION_ROWS - len(rows)))]
        return cls(values=values, rows=rows)

    def conditions(self) -> tuple[dict[str, Any], list[int]]:
        """The condition tree, and which form row each of its items came from."""
        items, origin = [], []
        for index, row in enumerate(self.rows):
            if not (row["field"] or row["value"]):
                continue
            item: dict[str, Any] = {"field": row["field"], "op": row["op"],
                                    "value": _value_of(row["value"])}
            if row["key"]:
                item["key"] = row["key"]
            if row["op"] == "empty":
                item.pop("value")
            items.append(item)
            origin.append(index)
        return {self.values.get("combine") or "all": items}, origin

    def action(self) -> dict[str, Any]:
        kind = self.values.get("action") or "issue_voucher"
        if kind == "bonus_points":
            return {"type": kind, "points": _number(self.values["points"])}
        if kind == "points_multiplier":
            return {"type": kind, "multiplier_bp": _number(self.values["multiplier"])}
        if kind == "message":
            return {"type": kind, "text": self.values["message"]}
        return {"type": "issue_voucher", "offer_id": self.values["offer_id"]}


def _value_of(text_value: str) -> Any:
    """A condition's value as typed: a number, true/false, a list ("a, b" or [1, 2]), or
    text."""
    try:
        return json.loads(text_value)
    except ValueError:
        pass
    if "," in text_value:
        return [_value_of(part.strip()) for part in text_value.split(",") if part.strip()]
    return text_value


def _number(value: str) -> Any:
    try:
        return int(value)
    except ValueError:
        return value


def _campaign_errors(errors: list[dict[str, Any]], origin: list[int], code: str
                     ) -> dict[str, str]:
    """The API's problems (each with its ``loc``) at the form's fields: a condition's
    problem at its row's field, key, operator or value."""
    shown: dict[str, str] = {}
    for error in errors:
        loc = [part for part in error.get("loc", ()) if part != "body"]
        detail = str(error.get("msg", ""))
        if loc[:1] == ["conditions"]:
            index = next((part for part in loc if isinstance(part, int)), None)
            part = next((p for p in reversed(loc) if p in ("field", "key", "op", "value")),
                        "")
            message = _problem_message(part, detail, code)
            if index is not None and index < len(origin):
                shown.setdefault(f"cond_{part or 'field'}_{origin[index]}", message)
            else:
                shown.setdefault("conditions", message)
            continue
        message = _problem_message("", detail, code)
        if loc[:1] == ["actions"]:
            field = {"offer_id": "offer_id", "points": "points",
                     "multiplier_bp": "multiplier", "text": "message"}.get(
                str(loc[-1]), "action")
            shown.setdefault(field, message)
        elif loc[:1] == ["per_member"]:
            shown.setdefault("per_member_count", message)
        elif loc[:1] == ["control_share_bp"]:
            shown.setdefault("control_share", message)
        else:
            shown.setdefault(str(loc[0]) if loc else "name", message)
    return shown


def _problem_message(part: str, detail: str, code: str) -> str:
    """A condition row's problem, said for the part of the row it is at."""
    messages = {
        "field": translate(code, "Choose a field from the list."),
        "op": translate(code, "This comparison does not fit the field."),
        "value": translate(code, "This value does not fit the field and comparison."),
        "key": translate(code, "This field needs a key (a category or item code)."),
    }
    return messages.get(part) or translate(code, "Check this value: %(problem)s",
                                           problem=detail)


def _campaign_write(form: CampaignForm, code: str
                    ) -> tuple[CampaignWrite | None, dict[str, str], list[int]]:
    conditions, origin = form.conditions()
    per_member = None
    if form.values["per_member_count"]:
        per_member = {"count": _number(form.values["per_member_count"]),
                      "period_days": _number(form.values["per_member_days"] or "30")}
    share = form.values["control_share"] or "0"
    body = {"name": form.values["name"], "trigger": form.values["trigger"] or "checkout",
            "conditions": conditions, "actions": [form.action()],
            "per_member": per_member, "status": "paused",
            "control_share_bp": int(float(share) * 100) if _is_number(share) else share}
    try:
        return CampaignWrite.model_validate(body), {}, origin
    except ValidationError as invalid:
        return None, _campaign_errors(
            [{"loc": ["body", *error["loc"]], "msg": error["msg"], "type": "invalid"}
             for error in invalid.errors()], origin, code), origin


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _campaign_choices(session: Session, principal: Principal, code: str) -> dict[str, Any]:
    return {"fields": sorted(FIELDS), "operators": sorted(set().union(*OPERATORS.values())),
            "offers": [offer for offer in offers.list_offers(session, actor=principal)
                       if offer.revoked_at is None],
            "triggers": [trigger.value for trigger in Trigger], "action_types": ACTION_TYPES,
            "trigger_names": trigger_names(code)}


def trigger_names(code: str) -> dict[str, str]:
    return {"checkout": translate(code, "At checkout"),
            "enrolment": translate(code, "When a member joins"),
            "visit": translate(code, "At a visit (a reader's tap)"),
            "birthday": translate(code, "In the birthday month"),
            "tier_change": translate(code, "When the tier changes"),
            "referral_qualified": translate(code, "When a referral qualifies"),
            "schedule": translate(code, "On a schedule")}


@router.get("/console/campaigns")
def campaigns_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        listed = [campaigns.to_read(c) for c in
                  campaigns.list_campaigns(session, actor=principal)]
        return console_page(request, "console_campaigns.html", code, found, merchant, "campaigns",
                     campaigns=listed, trigger_names=trigger_names(code))


@router.get("/console/campaigns/new")
def new_campaign_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_campaign_form.html", code, found, merchant,
                     "campaigns", form=CampaignForm.empty(), errors={},
                     **_campaign_choices(session, principal, code))


@router.post("/console/campaigns/new")
async def create_campaign(request: Request) -> Response:
    posted = CampaignForm.of(await form_of(request))
    code = language(request)
    errors: dict[str, str] = {}
    if not posted.values["add_row"]:
        data, errors, origin = _campaign_write(posted, code)
        if data is not None:
            try:
                with database_of(request).session_scope() as session:
                    _found, principal, _merchant, code = console_of(session, request)
                    created = campaigns.create_campaign(session, actor=principal, data=data)
                    return redirect(request, f"/console/campaigns/{created.id}")
            except PatronError as refusal:
                if refusal.status in (403, 404):
                    raise
                errors = _campaign_errors(refusal.extra.get("errors") or [
                    {"loc": ["body", str(refusal.extra.get("field") or "name")],
                     "msg": refusal.detail, "type": "invalid"}], origin, code)
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return console_page(request, "console_campaign_form.html", code, found, merchant,
                     "campaigns", form=posted, errors=errors,
                     status=422 if errors else 200,
                     **_campaign_choices(session, principal, code))


@router.get("/console/campaigns/{campaign_id}")
def campaign_page(request: Request, campaign_id: uuid.UUID) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        campaign = campaigns.visible_campaign(session, principal, campaign_id)
        outcome = campaign_results.results(session, campaign=campaign, now=utcnow(),
                                           until=None, days=None)
        return console_page(request, "console_campaign.html", code, found, merchant, "campaigns",
                     campaign=campaigns.to_read(campaign), results=outcome,
                     simulated=None, chart=uplift_chart(outcome.uplift),
                     trigger_names=trigger_names(code))


@router.post("/console/campaigns/{campaign_id}/simulate")
async def simulate_campaign(request: Request, campaign_id: uuid.UUID) -> Response:
    form = await form_of(request)
    days = text(form, "days")
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        campaign = campaigns.visible_campaign(session, principal, campaign_id)
        simulated = simulation.simulate(
            session, campaign=campaign,
            days=min(max(int(days), 1), 366) if days.isdigit() else 30, now=utcnow())
        outcome = campaign_results.results(session, campaign=campaign, now=utcnow(),
                                           until=None, days=None)
        return console_page(request, "console_campaign.html", code, found, merchant, "campaigns",
                     campaign=campaigns.to_read(campaign), results=outcome,
                     simulated=simulated, chart=uplift_chart(outcome.uplift),
                     trigger_names=trigger_names(code))


@router.post("/console/campaigns/{campaign_id}/{action}")
async def set_campaign_status(request: Request, campaign_id: uuid.UUID,
                              action: str) -> Response:
    await form_of(request)
    status = {"activate": CampaignStatus.active, "pause": CampaignStatus.paused}.get(action)
    if status is None:
        raise PageRefused(404)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, _code = console_of(session, request)
        campaigns.set_status(session, actor=principal, campaign_id=campaign_id, status=status)
    return redirect(request, f"/console/campaigns/{campaign_id}")


def uplift_chart(uplift: ResultsUplift) -> dict[str, Any] | None:
    """The uplift and its 95 % interval drawn as a horizontal bar with whiskers (the page
    draws it as SVG, with the figures in a table beside it); None without an interval."""
    low, high, middle = uplift.ci95_low_minor, uplift.ci95_high_minor, uplift.difference_minor
    if low is None or high is None or middle is None:
        return None
    span = max(abs(low), abs(high), abs(middle), 1.0) * 1.15
    width = 300.0

    def x(value: float) -> float:
        return round(width / 2 + value / span * (width / 2 - 10), 1)

    return {"zero": x(0), "low": x(low), "high": x(high), "middle": x(middle),
            "width": width, "positive": low > 0, "negative": high < 0}
