"""The merchant console's settings (docs/web.md, "The merchant console"): the points program
and its tiers, benefit rules, the referral program, stores with their terminals and the
merchant's API keys, and (the owner only) staff and their roles.

Like the rest of the console, an owner or a manager acts as the merchant
(``tenancy.rules.acting_role``) through the services the API's merchant key uses: every
rule is the service's, and a refusal is shown at the field it names. The API keys and the
staff are the console's administration (``Area.console_admin``): the owner's alone."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from patron.errors import PatronError
from patron.kit.clock import utcnow
from patron.members.schemas import Email
from patron.programs import service as programs
from patron.programs.rules import Rounding
from patron.programs.schemas import MAX_TIERS, ProgramRead, ProgramWrite
from patron.referrals import service as referrals
from patron.referrals.schemas import ReferralProgramWrite
from patron.tenancy import service as tenancy
from patron.tenancy import staff as accounts
from patron.tenancy.models import (
    Merchant,
    Role,
    StaffRole,
    StaffUser,
    StoreKind,
    TerminalKind,
)
from patron.tenancy.rules import Area, may_open
from patron.tenancy.schemas import ApiKeyCreate, StoreCreate, TerminalCreate, TerminalUpdate
from patron.tenancy.service import Principal
from patron.tenancy.staff import StaffContext
from patron.vouchers import offers
from patron.vouchers.benefits import service as benefits
from patron.vouchers.benefits.rules import Measure, Mode
from patron.vouchers.benefits.schemas import BenefitRuleWrite
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
from patron.web.pages.console import console_of, console_page, form_errors
from patron.web.pages.staff import staff_in
from patron.web.render import translate
from patron.web.routing import page_router

router = page_router()


def _admin(session: Session, request: Request
           ) -> tuple[StaffContext, Principal, Merchant, str]:
    """``console_of`` for the console's administration: the owner's (a manager gets 403)."""
    found, principal = staff_in(session, request, Area.console_admin)
    merchant = session.get(Merchant, principal.merchant_id)
    if merchant is None:
        raise PageRefused(404)
    return found, principal, merchant, language(request, found.language)


def _whole(value: str) -> Any:
    """A whole number as typed, else the text itself: the API's schema refuses it at its
    field (its integers are strict)."""
    try:
        return int(value)
    except ValueError:
        return value


def _refused(refusal: PatronError) -> None:
    """403 and 404 are pages of their own (the page route renders them)."""
    if refusal.status in (403, 404):
        raise refusal


def _prefixed(form: str, values: dict[str, str]) -> dict[str, str]:
    """One form's fields among the page's (``store_code``, ``key_label``…)."""
    return {f"{form}_{name}": value for name, value in values.items()}


# --- program and tiers ----------------------------------------------------------------------

PROGRAM_FIELDS = ("earn_points", "earn_per_amount", "rounding", "point_value_minor",
                  "min_burn", "expiry_months", "excluded_categories")
TIER_PARTS = {"name": "name", "threshold_points": "threshold",
              "earn_multiplier_bp": "multiplier"}
SPARE_ROWS = 2


@dataclass
class ProgramForm:
    """The program form: its fields, the category multiplier rows (name, basis points) and
    the tier rows (name, threshold, multiplier), as typed."""

    values: dict[str, str]
    categories: list[dict[str, str]]
    tiers: list[dict[str, str]]

    @classmethod
    def of_program(cls, read: ProgramRead) -> ProgramForm:
        values = {"earn_points": str(read.earn_points),
                  "earn_per_amount": str(read.earn_per_amount),
                  "rounding": read.rounding.value,
                  "point_value_minor": str(read.point_value_minor),
                  "min_burn": str(read.min_burn),
                  "expiry_months": "" if read.expiry_months is None
                  else str(read.expiry_months),
                  "excluded_categories": ", ".join(read.excluded_categories)}
        return cls(values=values,
                   categories=[{"name": name, "bp": str(bp)} for name, bp in
                               read.category_multipliers_bp.items()],
                   tiers=[{"name": tier.name, "threshold": str(tier.threshold_points),
                           "multiplier": str(tier.earn_multiplier_bp)}
                          for tier in read.tiers]).padded()

    @classmethod
    def of(cls, form: FormData) -> ProgramForm:
        values = {name: text(form, name) for name in PROGRAM_FIELDS}
        categories = [{"name": str(name).strip(), "bp": str(bp).strip()}
                      for name, bp in zip(form.getlist("cat_name"), form.getlist("cat_bp"),
                                          strict=False)][:250]
        tiers = [{"name": str(name).strip(), "threshold": str(threshold).strip(),
                  "multiplier": str(multiplier).strip()}
                 for name, threshold, multiplier in zip(
                     form.getlist("tier_name"), form.getlist("tier_threshold"),
                     form.getlist("tier_multiplier"), strict=False)][:MAX_TIERS + 5]
        return cls(values=values, categories=categories, tiers=tiers)

    def padded(self) -> ProgramForm:
        """The rows, ending with a few empty ones to add more."""
        return ProgramForm(values=self.values,
                           categories=_padded(self.categories, ("name", "bp")),
                           tiers=_padded(self.tiers, ("name", "threshold", "multiplier"),
                                         limit=MAX_TIERS))

    def body(self) -> tuple[dict[str, Any], dict[str, int], list[int], dict[str, str]]:
        """The PUT's body; which row each category and tier came from; and what the form
        itself cannot say (a category in two rows, which a body's object cannot hold)."""
        categories: dict[str, Any] = {}
        category_rows: dict[str, int] = {}
        twice: dict[str, str] = {}
        for index, row in enumerate(self.categories):
            if not (row["name"] or row["bp"]):
                continue
            if row["name"] in category_rows:
                twice[f"cat_name_{index}"] = row["name"]
                continue
            categories[row["name"]] = _whole(row["bp"])
            category_rows[row["name"]] = index
        tiers, tier_rows = [], []
        for index, row in enumerate(self.tiers):
            if not (row["name"] or row["threshold"] or row["multiplier"]):
                continue
            tier: dict[str, Any] = {"name": row["name"],
                                    "threshold_points": _whole(row["threshold"])}
            if row["multiplier"]:
                tier["earn_multiplier_bp"] = _whole(row["multiplier"])
            tiers.append(tier)
            tier_rows.append(index)
        values = self.values
        body: dict[str, Any] = {
            "earn_points": _whole(values["earn_points"]),
            "earn_per_amount": _whole(values["earn_per_amount"]),
            "rounding": values["rounding"] or Rounding.floor.value,
            "point_value_minor": _whole(values["point_value_minor"]),
            "expiry_months": _whole(values["expiry_months"]) if values["expiry_months"]
            else None,
            "category_multipliers_bp": categories,
            "excluded_categories": [part.strip() for part in
                                    re.split(r"[,\n]", values["excluded_categories"])
                                    if part.strip()],
            "tiers": tiers,
        }
        if values["min_burn"]:
            body["min_burn"] = _whole(values["min_burn"])
        return body, category_rows, tier_rows, twice


def _padded(rows: list[dict[str, str]], parts: tuple[str, ...],
            limit: int | None = None) -> list[dict[str, str]]:
    """``rows`` ending with ``SPARE_ROWS`` empty ones (fewer where ``limit`` rows of
    content leave no room)."""
    filled = len(rows)
    while filled and not any(rows[filled - 1].values()):
        filled -= 1
    wanted = filled + SPARE_ROWS if limit is None else max(min(filled + SPARE_ROWS, limit),
                                                           filled)
    return rows[:filled] + [dict.fromkeys(parts, "") for _ in range(wanted - filled)]


def _loc_of(field: str) -> tuple[str | int, ...]:
    """A refusal's ``field`` (``tiers[2].threshold_points``, ``excluded_categories[0]``,
    ``category_multipliers_bp.coffee``) as a schema error's ``loc``."""
    found = re.fullmatch(r"(\w+)(?:\[(\d+)\])?(?:\.(.+))?", field)
    if found is None:
        return (field,)
    name, index, rest = found.groups()
    loc: tuple[str | int, ...] = (name,)
    if index is not None:
        loc += (int(index),)
    if rest is not None:
        loc += (rest,)
    return loc


def _program_field(loc: tuple[Any, ...], category_rows: dict[str, int],
                   tier_rows: list[int], *, category_name: bool) -> str:
    """The form field of a problem at ``loc`` of the PUT's body."""
    head = loc[0] if loc else ""
    if head == "tiers":
        index = loc[1] if len(loc) > 1 and isinstance(loc[1], int) else None
        part = TIER_PARTS.get(str(loc[2])) if len(loc) > 2 else None
        if index is not None and index < len(tier_rows) and part:
            return f"tier_{part}_{tier_rows[index]}"
        return "tiers"
    if head == "category_multipliers_bp":
        row = category_rows.get(str(loc[1])) if len(loc) > 1 else None
        if row is None:
            return "categories"
        at_name = category_name or (len(loc) > 2 and loc[2] == "[key]")
        return f"cat_{'name' if at_name else 'bp'}_{row}"
    if head in PROGRAM_FIELDS:
        return str(head)
    return "earn_points"


def _program_page(request: Request, session: Session, principal: Principal,
                  found: StaffContext, merchant: Merchant, code: str, *,
                  form: ProgramForm | None = None, errors: dict[str, str] | None = None,
                  status: int = 200) -> Response:
    read = programs.to_read(programs.read_program(session, actor=principal,
                                                  merchant_id=merchant.id))
    return console_page(request, "console_program.html", code, found, merchant, "program",
                 program=read, form=form or ProgramForm.of_program(read),
                 errors=errors or {}, roundings=[rounding.value for rounding in Rounding],
                 saved=request.query_params.get("saved") == "1", status=status)


@router.get("/console/program")
def program_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _program_page(request, session, principal, found, merchant, code)


@router.post("/console/program")
async def put_program(request: Request) -> Response:
    """Replace the whole program, tiers and categories included, as ``PUT
    /v1/merchants/{id}/program`` does."""
    posted = ProgramForm.of(await form_of(request))
    code = language(request)
    body, category_rows, tier_rows, twice = posted.body()
    errors: dict[str, str] = {}
    status = 422
    for field in twice:
        errors[field] = translate(code, "This category is in another row already.")
    if not errors:
        try:
            data = ProgramWrite.model_validate(body)
            with database_of(request).session_scope() as session:
                _found, principal, merchant, code = console_of(session, request)
                programs.put_program(session, actor=principal, merchant_id=merchant.id,
                                     data=data)
            return redirect(request, "/console/program?saved=1")
        except ValidationError as invalid:
            for error in invalid.errors():
                errors.setdefault(
                    _program_field(tuple(error.get("loc", ())), category_rows, tier_rows,
                                   category_name=False),
                    translate(code, "Check this value: %(problem)s",
                              problem=str(error.get("msg", ""))))
        except PatronError as refusal:
            _refused(refusal)
            status = refusal.status
            where = _loc_of(str(refusal.extra.get("field") or "earn_points"))
            errors[_program_field(where, category_rows, tier_rows,
                                  category_name=True)] = problem_text(refusal, code)
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _program_page(request, session, principal, found, merchant, code,
                             form=posted.padded(), errors=errors, status=status)


# --- benefit rules --------------------------------------------------------------------------

BENEFIT_FIELDS = ("name", "measure", "mode", "threshold", "offer_id", "sku", "category")
BENEFIT_MEASURES = (Measure.purchases.value, Measure.items.value, Measure.points.value)


def _benefits_page(request: Request, session: Session, principal: Principal,
                   found: StaffContext, merchant: Merchant, code: str, *,
                   errors: dict[str, str] | None = None,
                   values: dict[str, str] | None = None, status: int = 200) -> Response:
    listed = offers.list_offers(session, actor=principal)
    return console_page(request, "console_benefits.html", code, found, merchant, "benefits",
                 rules=benefits.list_rules(session, actor=principal),
                 offer_names={offer.id: offer.name for offer in listed},
                 live_offers=[offer for offer in listed if offer.revoked_at is None],
                 measures=BENEFIT_MEASURES, modes=[mode.value for mode in Mode],
                 errors=errors or {}, values=values or {"measure": "purchases",
                                                        "mode": "every"},
                 status=status)


@router.get("/console/benefits")
def benefits_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _benefits_page(request, session, principal, found, merchant, code)


@router.post("/console/benefits")
async def create_benefit_rule(request: Request) -> Response:
    form = await form_of(request)
    values = {name: text(form, name) for name in BENEFIT_FIELDS}
    code = language(request)
    try:
        data = BenefitRuleWrite.model_validate({
            "name": values["name"], "measure": values["measure"], "mode": values["mode"],
            "threshold": _whole(values["threshold"]), "offer_id": values["offer_id"],
            "sku": values["sku"] or None, "category": values["category"] or None})
        with database_of(request).session_scope() as session:
            _found, principal, _merchant, code = console_of(session, request)
            benefits.create_rule(session, actor=principal, data=data)
        return redirect(request, "/console/benefits")
    except ValidationError as invalid:
        errors, status = form_errors(invalid, code), 422
    except PatronError as refusal:
        _refused(refusal)
        errors, status = field_errors(refusal, code, "threshold"), refusal.status
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _benefits_page(request, session, principal, found, merchant, code,
                              errors=errors, values=values, status=status)


@router.post("/console/benefits/{rule_id}/deactivate")
async def deactivate_benefit_rule(request: Request, rule_id: uuid.UUID) -> Response:
    await form_of(request)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, _code = console_of(session, request)
        benefits.deactivate_rule(session, actor=principal, rule_id=rule_id)
    return redirect(request, "/console/benefits")


# --- referral program -----------------------------------------------------------------------

REFERRAL_FIELDS = ("referrer_points", "referrer_offer_id", "referee_points",
                   "referee_offer_id", "min_purchase_minor", "monthly_cap")


def _referrals_page(request: Request, session: Session, principal: Principal,
                    found: StaffContext, merchant: Merchant, code: str, *,
                    errors: dict[str, str] | None = None,
                    values: dict[str, str] | None = None, status: int = 200) -> Response:
    program = referrals.read_program(session, actor=principal, merchant_id=merchant.id)
    listed = offers.list_offers(session, actor=principal)
    if values is None:
        values = {"active": "1" if program.active or not program.configured else "",
                  "referrer_points": str(program.referrer_points),
                  "referrer_offer_id": str(program.referrer_offer_id or ""),
                  "referee_points": str(program.referee_points),
                  "referee_offer_id": str(program.referee_offer_id or ""),
                  "min_purchase_minor": str(program.min_purchase_minor),
                  "monthly_cap": "" if program.monthly_cap is None
                  else str(program.monthly_cap)}
    return console_page(request, "console_referrals.html", code, found, merchant, "referrals",
                 program=program, offer_names={str(o.id): o.name for o in listed},
                 live_offers=[offer for offer in listed if offer.revoked_at is None],
                 errors=errors or {}, values=values,
                 saved=request.query_params.get("saved") == "1", status=status)


@router.get("/console/referrals")
def referrals_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _referrals_page(request, session, principal, found, merchant, code)


@router.post("/console/referrals")
async def put_referral_program(request: Request) -> Response:
    """Replace the referral program, as ``PUT /v1/merchants/{id}/referral-program``."""
    form = await form_of(request)
    values = {name: text(form, name) for name in REFERRAL_FIELDS}
    values["active"] = "1" if text(form, "active") else ""
    code = language(request)
    try:
        data = ReferralProgramWrite.model_validate({
            "active": bool(values["active"]),
            "referrer_points": _whole(values["referrer_points"] or "0"),
            "referrer_offer_id": values["referrer_offer_id"] or None,
            "referee_points": _whole(values["referee_points"] or "0"),
            "referee_offer_id": values["referee_offer_id"] or None,
            "min_purchase_minor": _whole(values["min_purchase_minor"] or "0"),
            "monthly_cap": _whole(values["monthly_cap"]) if values["monthly_cap"] else None})
        with database_of(request).session_scope() as session:
            _found, principal, merchant, code = console_of(session, request)
            referrals.put_program(session, actor=principal, merchant_id=merchant.id,
                                  data=data)
        return redirect(request, "/console/referrals?saved=1")
    except ValidationError as invalid:
        errors, status = form_errors(invalid, code), 422
    except PatronError as refusal:
        _refused(refusal)
        errors, status = field_errors(refusal, code, "active"), refusal.status
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _referrals_page(request, session, principal, found, merchant, code,
                               errors=errors, values=values, status=status)


# --- stores, terminals and keys ------------------------------------------------------------

STORE_FIELDS = ("code", "name", "address", "latitude", "longitude", "timezone", "kind")


def _stores_page(request: Request, session: Session, principal: Principal,
                 found: StaffContext, merchant: Merchant, code: str, *,
                 errors: dict[str, str] | None = None, values: dict[str, str] | None = None,
                 new_key: dict[str, str] | None = None, status: int = 200) -> Response:
    stores: list[dict[str, Any]] = []
    terminal_codes: dict[uuid.UUID, str] = {}
    for store in tenancy.list_stores(session, actor=principal, merchant_id=merchant.id):
        terminals = tenancy.list_terminals(session, actor=principal, store_id=store.id)
        stores.append({"store": store, "terminals": terminals})
        terminal_codes.update({terminal.id: f"{store.code}/{terminal.code}"
                               for terminal in terminals})
    administers = may_open(found.role, Area.console_admin)
    return console_page(request, "console_stores.html", code, found, merchant, "stores",
                 stores=stores, store_kinds=[kind.value for kind in StoreKind],
                 terminal_kinds=[kind.value for kind in TerminalKind],
                 keys=tenancy.list_keys(session, actor=principal) if administers else [],
                 administers=administers, terminal_codes=terminal_codes, now=utcnow(),
                 errors=errors or {}, values=values or {}, new_key=new_key, status=status)


@router.get("/console/stores")
def stores_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _stores_page(request, session, principal, found, merchant, code)


@router.post("/console/stores")
async def add_store(request: Request) -> Response:
    form = await form_of(request)
    values = {name: text(form, name) for name in STORE_FIELDS}
    code = language(request)
    try:
        data = StoreCreate.model_validate({name: value or None
                                           for name, value in values.items()})
        with database_of(request).session_scope() as session:
            _found, principal, merchant, code = console_of(session, request)
            tenancy.create_store(session, actor=principal, merchant_id=merchant.id,
                                 data=data)
        return redirect(request, "/console/stores")
    except ValidationError as invalid:
        errors, status = _prefixed("store", form_errors(invalid, code)), 422
    except PatronError as refusal:
        _refused(refusal)
        errors = _prefixed("store", field_errors(refusal, code, "code"))
        status = refusal.status
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _stores_page(request, session, principal, found, merchant, code,
                            errors=errors, values=_prefixed("store", values), status=status)


@router.post("/console/stores/{store_id}/terminals")
async def add_terminal(request: Request, store_id: uuid.UUID) -> Response:
    """A terminal, and its API key — shown on this answer once, never again."""
    form = await form_of(request)
    values = {"code": text(form, "code"), "kind": text(form, "kind") or "pos",
              "points_per_tap": text(form, "points_per_tap")}
    code = language(request)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, code = console_of(session, request)
        tenancy.get_store(session, actor=principal, store_id=store_id)
    suffix = f"-{store_id}"
    try:
        body: dict[str, Any] = {"code": values["code"], "kind": values["kind"]}
        if values["points_per_tap"]:
            body["points_per_tap"] = _whole(values["points_per_tap"])
        data = TerminalCreate.model_validate(body)
        with database_of(request).session_scope() as session:
            found, principal, merchant, code = console_of(session, request)
            terminal, secret = tenancy.create_terminal(session, actor=principal,
                                                       store_id=store_id, data=data)
            new_key = {"terminal": terminal.code, "key": secret}
        with database_of(request).session_scope() as session:
            found, principal, merchant, code = console_of(session, request)
            return _stores_page(request, session, principal, found, merchant, code,
                                new_key=new_key)
    except ValidationError as invalid:
        errors, status = form_errors(invalid, code), 422
    except PatronError as refusal:
        _refused(refusal)
        errors, status = field_errors(refusal, code, "code"), refusal.status
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = console_of(session, request)
        return _stores_page(
            request, session, principal, found, merchant, code,
            errors={f"terminal_{name}{suffix}": message for name, message in errors.items()},
            values={f"terminal_{name}{suffix}": value for name, value in values.items()},
            status=status)


@router.post("/console/terminals/{terminal_id}/{action}")
async def set_terminal_active(request: Request, terminal_id: uuid.UUID,
                              action: str) -> Response:
    """Deactivate a terminal (its key is refused with ``terminal_inactive`` from the next
    request) or reactivate it, as ``PATCH /v1/terminals/{id}`` with ``active``."""
    await form_of(request)
    active = {"deactivate": False, "reactivate": True}.get(action)
    if active is None:
        raise PageRefused(404)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, _code = console_of(session, request)
        tenancy.update_terminal(session, actor=principal, terminal_id=terminal_id,
                                data=TerminalUpdate(active=active))
    return redirect(request, "/console/stores#terminals")


@router.post("/console/keys")
async def create_key(request: Request) -> Response:
    """A merchant key, shown on this answer once (the owner's: ``Area.console_admin``)."""
    form = await form_of(request)
    values = {"label": text(form, "label"), "expires_days": text(form, "expires_days")}
    code = language(request)
    with database_of(request).session_scope() as session:
        _found, _principal, _merchant, code = _admin(session, request)
    errors: dict[str, str] = {}
    status = 422
    expires_at = None
    if values["expires_days"]:
        try:
            expires_at = utcnow() + timedelta(days=int(values["expires_days"]))
        except (ValueError, OverflowError):
            errors["key_expires_days"] = translate(
                code, "Give a whole number of days, such as 90, or leave it empty.")
    if not errors:
        try:
            data = ApiKeyCreate.model_validate({"role": Role.merchant.value,
                                                "label": values["label"] or None,
                                                "expires_at": expires_at})
            with database_of(request).session_scope() as session:
                found, principal, merchant, code = _admin(session, request)
                api_key, secret = tenancy.create_key(session, actor=principal, data=data)
                new_key = {"terminal": "", "key": secret, "prefix": api_key.prefix}
            with database_of(request).session_scope() as session:
                found, principal, merchant, code = _admin(session, request)
                return _stores_page(request, session, principal, found, merchant, code,
                                    new_key=new_key)
        except ValidationError as invalid:
            errors = _key_errors(form_errors(invalid, code))
        except PatronError as refusal:
            _refused(refusal)
            status = refusal.status
            errors = _key_errors(field_errors(refusal, code, "label"))
    with database_of(request).session_scope() as session:
        found, principal, merchant, code = _admin(session, request)
        return _stores_page(request, session, principal, found, merchant, code,
                            errors=errors, values=_prefixed("key", values), status=status)


def _key_errors(errors: dict[str, str]) -> dict[str, str]:
    """The key form's refusals at its fields (the expiry is typed as days)."""
    return {("key_expires_days" if name == "expires_at" else f"key_{name}"): message
            for name, message in errors.items()}


@router.post("/console/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: uuid.UUID) -> Response:
    """Revoke one of the merchant's keys (its own or a terminal's): refused from the next
    request on."""
    await form_of(request)
    with database_of(request).session_scope() as session:
        _found, principal, _merchant, _code = _admin(session, request)
        tenancy.revoke_key(session, actor=principal, key_id=key_id)
    return redirect(request, "/console/stores#keys")


# --- staff and roles ------------------------------------------------------------------------

STAFF_ROLES = (StaffRole.owner.value, StaffRole.manager.value, StaffRole.cashier.value,
               StaffRole.sales_rep.value)
_EMAIL = TypeAdapter(Email)


def _staff_page(request: Request, session: Session, found: StaffContext,
                merchant: Merchant, code: str, *, errors: dict[str, str] | None = None,
                values: dict[str, str] | None = None, invitation: str | None = None,
                status: int = 200) -> Response:
    viewer = session.get(StaffUser, found.user_id)
    if viewer is None:
        raise PageRefused(404)
    people = [{"user": user, "email": accounts.email_of(user)}
              for user in accounts.list_staff(session, viewer=viewer)]
    return console_page(request, "console_staff.html", code, found, merchant, "staff",
                 people=people, roles=STAFF_ROLES, now=utcnow(), errors=errors or {},
                 values=values or {"role": StaffRole.cashier.value},
                 invitation=invitation, status=status)


@router.get("/console/staff")
def staff_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found, _principal, merchant, code = _admin(session, request)
        return _staff_page(request, session, found, merchant, code)


@router.post("/console/staff")
async def invite_staff(request: Request) -> Response:
    """A staff user of the merchant, and the invitation link to give them (shown once).
    The owner invites into their own merchant (``tenancy.rules.may_invite``)."""
    form = await form_of(request)
    values = {name: text(form, name) for name in ("name", "email", "role")}
    code = language(request)
    with database_of(request).session_scope() as session:
        found, _principal, merchant, code = _admin(session, request)
    errors: dict[str, str] = {}
    if not values["name"]:
        errors["name"] = translate(code, "Give the person's name.")
    elif len(values["name"]) > 200:
        errors["name"] = translate(code, "A name has at most 200 characters.")
    try:
        _EMAIL.validate_python(values["email"])
    except ValidationError:
        errors["email"] = translate(code, "Give an e-mail address, such as "
                                          "name@example.com.")
    if values["role"] not in STAFF_ROLES:
        errors["role"] = translate(code, "Choose a role from the list.")
    status = 422
    if not errors:
        try:
            with database_of(request).session_scope() as session:
                found, _principal, merchant, code = _admin(session, request)
                inviter = session.get(StaffUser, found.user_id)
                _user, token = accounts.create_staff(
                    session, inviter=inviter, email=values["email"], name=values["name"],
                    role=StaffRole(values["role"]), merchant_id=merchant.id)
            invitation = (f"{request.app.state.settings.public_base_url.rstrip('/')}"
                          f"/invitation/{token}")
            with database_of(request).session_scope() as session:
                found, _principal, merchant, code = _admin(session, request)
                return _staff_page(request, session, found, merchant, code,
                                   invitation=invitation)
        except PatronError as refusal:
            _refused(refusal)
            errors, status = field_errors(refusal, code, "email"), refusal.status
    with database_of(request).session_scope() as session:
        found, _principal, merchant, code = _admin(session, request)
        return _staff_page(request, session, found, merchant, code, errors=errors,
                           values=values, status=status)


@router.post("/console/staff/{staff_id}/disable")
async def disable_staff(request: Request, staff_id: uuid.UUID) -> Response:
    """Disable a staff user of the merchant: signed out everywhere, and they can no longer
    sign in (``tenancy.staff.disable_staff``)."""
    await form_of(request)
    code = language(request)
    try:
        with database_of(request).session_scope() as session:
            found, _principal, merchant, code = _admin(session, request)
            actor = session.get(StaffUser, found.user_id)
            if actor is None:
                raise PageRefused(404)
            accounts.disable_staff(session, actor_user=actor, staff_id=staff_id)
        return redirect(request, "/console/staff")
    except PatronError as refusal:
        _refused(refusal)
        errors = {f"disable-{staff_id}": problem_text(refusal, code)}
        status = refusal.status
    with database_of(request).session_scope() as session:
        found, _principal, merchant, code = _admin(session, request)
        return _staff_page(request, session, found, merchant, code, errors=errors,
                           status=status)
