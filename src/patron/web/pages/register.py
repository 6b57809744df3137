"""The cashier's register page (docs/web.md, "The register"): identify the member by a
scan (a keyboard-wedge scanner types the QR's text or the barcode's digits), a camera
frame (decoded by the server, as ``POST /v1/identify`` ``image``), a phone number or a
card; ring up a basket; quote; commit; print the receipt; take a return.

The sale lives in the page's form (hidden fields), so every step is one stateless
request; each calls the same units of work as the API (``patron.units``: the
identification and voucher throttles included), acting as the register the cashier chose
for this browser."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from patron import units
from patron.config import get_settings
from patron.errors import PatronError
from patron.identity import images
from patron.identity.schemas import IdentifyRequest, MemberIdentification
from patron.kit.clock import utcnow
from patron.kit.net import client_address
from patron.pos import returns as pos_returns
from patron.pos import service as pos
from patron.pos.schemas import LineWrite, PurchaseWrite, ReturnWrite, VoucherUse
from patron.tenancy import staff as staff_accounts
from patron.tenancy.models import Merchant, Store, Terminal
from patron.tenancy.rules import Area, may_open
from patron.vouchers import service as vouchers
from patron.web.pages.common import (
    PageRefused,
    database_of,
    form_of,
    language,
    problem_text,
    redirect,
    remember_language,
    text,
)
from patron.web.pages.staff import staff_in
from patron.web.render import data_uri, render, translate
from patron.web.routing import page_router
from patron.web.security import STAFF_COOKIE, read_cookie

router = page_router()

MAX_PAGE_LINES = 50
SEEN_AT_LIMIT = timedelta(minutes=10)



def request_address(request: Request) -> str:
    """The browser's address, as the API's throttles see a caller's."""
    return client_address(request.client.host if request.client else None,
                          request.headers.getlist("x-forwarded-for"),
                          get_settings().proxy_networks)


# --- choosing the register -----------------------------------------------------------------

@router.get("/register/choose")
def choose_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        found = staff_accounts.staff_of_session(session, read_cookie(request, STAFF_COOKIE))
        if found is None:
            raise PageRefused(303, location="/login?next=/register")
        if not may_open(found.role, Area.register):
            raise PageRefused(403)
        registers = [(terminal, session.get(Store, terminal.store_id))
                     for terminal in staff_accounts.registers_for(session, found)]
        return remember_language(request, render(
            request, "register_choose.html", language(request, found.language),
            registers=registers, staff=found))


@router.post("/register/choose")
async def choose(request: Request) -> Response:
    form = await form_of(request)
    with database_of(request).session_scope() as session:
        found = staff_accounts.staff_of_session(session, read_cookie(request, STAFF_COOKIE))
        if found is None:
            raise PageRefused(303, location="/login?next=/register")
        try:
            terminal_id = uuid.UUID(text(form, "terminal_id"))
        except ValueError as exc:
            raise PageRefused(404) from exc
        staff_accounts.choose_register(session, staff=found, terminal_id=terminal_id)
    return redirect(request, "/register")


# --- the sale --------------------------------------------------------------------------------

class Sale:
    """The sale as the page's form carries it between steps."""

    def __init__(self, form: FormData | None = None) -> None:
        form = form or FormData()
        self.receipt_no = text(form, "receipt_no") or _new_receipt_no()
        # When the cashier last saw the sale (each page of it carries the time it was
        # made): the commit's `occurred_at`, so that the same form sent twice is the same
        # purchase, which the API answers as a replay.
        self.seen_at = _recent(text(form, "seen_at")) or utcnow()
        self.member_id = _uuid(text(form, "member_id"))
        self.member_number = text(form, "member_number")
        self.points_to_burn = _whole(text(form, "points_to_burn"))
        self.vouchers = [code for code in form.getlist("voucher") if isinstance(code, str)
                         and code.strip()][:10]
        self.lines: list[dict[str, Any]] = []
        skus, names, quantities, prices, categories = (
            form.getlist(name) for name in ("sku", "name", "quantity", "unit_price",
                                            "category"))
        for sku, name, quantity, price, category in zip(skus, names, quantities, prices,
                                                        categories, strict=False):
            self.lines.append({"sku": str(sku), "name": str(name), "quantity": str(quantity),
                               "unit_price": str(price), "category": str(category)})
        self.lines = self.lines[:MAX_PAGE_LINES]

    def purchase(self, currency: str) -> PurchaseWrite:
        """The purchase the API would receive (its checks are the API's: a bad line is the
        same ``validation_failed`` as there)."""
        lines = [LineWrite(sku=line["sku"], name=line["name"],
                           category=line["category"] or None,
                           quantity=int(line["quantity"]) if line["quantity"].isdigit() else 0,
                           unit_price=int(line["unit_price"])
                           if line["unit_price"].isdigit() else -1)
                 for line in self.lines]
        return PurchaseWrite(
            receipt_no=self.receipt_no, occurred_at=self.seen_at, currency=currency,
            member=MemberIdentification(member_id=self.member_id) if self.member_id else None,
            lines=lines, points_to_burn=self.points_to_burn,
            vouchers=[VoucherUse(code=code) for code in self.vouchers])


def _new_receipt_no() -> str:
    return f"W{datetime.now(UTC):%y%m%d%H%M%S}-{secrets.token_hex(2).upper()}"


def _recent(value: str) -> datetime | None:
    """A time the page carried, if it is one and at most a few minutes old."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None or not timedelta(0) <= utcnow() - moment <= SEEN_AT_LIMIT:
        return None
    return moment


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None


def _whole(value: str) -> int:
    return int(value) if value.isdigit() and len(value) < 10 else 0


def _till(session: Any, principal: Any) -> tuple[Terminal, Store, Merchant]:
    terminal = session.get(Terminal, principal.terminal_id)
    return terminal, session.get(Store, terminal.store_id), session.get(Merchant,
                                                                       terminal.merchant_id)


def _page(request: Request, sale: Sale, *, status: int = 200, quote: Any = None,
          errors: dict[str, str] | None = None, notice: str | None = None) -> Response:
    with database_of(request).session_scope() as session:
        found, principal = staff_in(session, request, Area.register)
        terminal, store, merchant = _till(session, principal)
        codes = (vouchers.usable_personal_codes(session, merchant_id=merchant.id,
                                                member_id=sale.member_id, now=utcnow())
                 if sale.member_id else [])
        return remember_language(request, render(
            request, "register.html", language(request, found.language), status=status,
            sale=sale, quote=quote, errors=errors or {}, notice=notice, staff=found,
            terminal=terminal, store=store, merchant=merchant, member_codes=codes,
            now_iso=utcnow().isoformat()))


@router.get("/register")
def register_page(request: Request) -> Response:
    return _page(request, Sale())


def identification_of(scan: str, how: str) -> IdentifyRequest:
    """What a scan or a typed identifier is: ``how`` is auto (a QR token has two dots, a
    member number is 14 digits, a card UID is hex with separators, anything else a phone
    number), or says it."""
    scan = scan.strip()
    if how == "phone":
        return IdentifyRequest(phone=scan)
    if how == "card":
        return IdentifyRequest(card_uid=scan)
    if scan.count(".") == 2:
        return IdentifyRequest(qr=scan)
    compact = re.sub(r"[\s-]", "", scan)
    if compact.isdigit() and len(compact) == 14:
        return IdentifyRequest(barcode=compact)
    if re.fullmatch(r"[0-9A-Fa-f]{2}([:\- ][0-9A-Fa-f]{2}){3,}", scan):
        return IdentifyRequest(card_uid=scan)
    return IdentifyRequest(phone=scan)


@router.post("/register/identify")
async def identify(request: Request) -> Response:
    form = await form_of(request)
    sale = Sale(form)
    code = language(request)
    image = text(form, "image")
    with database_of(request).session_scope() as session:
        _found, principal = staff_in(session, request, Area.register)
    try:
        data = (IdentifyRequest(image=image) if image else
                identification_of(text(form, "scan"), text(form, "how") or "auto"))
        found = units.identify(database_of(request), caller=principal,
                               address=request_address(request), data=data)
    except ValidationError:
        return _page(request, sale, status=422, errors={"scan": translate(
            code, "Scan the member's card or code, or type a phone number.")})
    except PatronError as refusal:
        return _page(request, sale, status=refusal.status,
                     errors={"scan": problem_text(refusal, code)})
    sale.member_id, sale.member_number = found.member_id, found.member_number
    return _page(request, sale, notice=translate(code, "Member %(number)s identified.",
                                                 number=found.member_number))


@router.post("/register/forget-member")
async def forget_member(request: Request) -> Response:
    sale = Sale(await form_of(request))
    sale.member_id, sale.member_number, sale.points_to_burn, sale.vouchers = None, "", 0, []
    return _page(request, sale)


@router.post("/register/line")
async def add_line(request: Request) -> Response:
    form = await form_of(request)
    sale = Sale(form)
    code = language(request)
    new = {name: text(form, f"new_{name}") for name in ("sku", "name", "quantity",
                                                        "unit_price", "category")}
    errors = {}
    if not new["sku"]:
        errors["new_sku"] = translate(code, "Scan or type the item's code.")
    if not new["quantity"].isdigit() or int(new["quantity"]) < 1:
        errors["new_quantity"] = translate(code, "A quantity is a whole number, 1 or more.")
    if not new["unit_price"].isdigit():
        errors["new_unit_price"] = translate(code, "A price is a whole number of the "
                                                   "currency's smallest unit.")
    if len(sale.lines) >= MAX_PAGE_LINES:
        errors["new_sku"] = translate(code, "This basket is full.")
    if errors:
        return _page(request, sale, status=422, errors=errors)
    new["name"] = new["name"] or new["sku"]
    sale.lines.append(new)
    return _page(request, sale)


@router.post("/register/remove-line")
async def remove_line(request: Request) -> Response:
    form = await form_of(request)
    sale = Sale(form)
    index = _whole(text(form, "line"))
    if 0 <= index < len(sale.lines):
        del sale.lines[index]
    return _page(request, sale)


def _quoted(request: Request, sale: Sale, code: str
            ) -> tuple[Any, dict[str, str], int]:
    if not sale.lines:
        return None, {"new_sku": translate(code, "Add at least one item.")}, 422
    with database_of(request).session_scope() as session:
        _found, principal = staff_in(session, request, Area.register)
        _terminal, _store, merchant = _till(session, principal)
        currency = merchant.currency
    try:
        purchase = sale.purchase(currency)
        return units.quote(database_of(request), caller=principal, address=request_address(request),
                           data=purchase), {}, 200
    except ValidationError as invalid:
        return None, {"basket": _validation_text(invalid, code)}, 422
    except PatronError as refusal:
        return None, {str(refusal.extra.get("field") or "basket"):
                      problem_text(refusal, code)}, refusal.status


def _validation_text(invalid: ValidationError, code: str) -> str:
    return translate(code, "Check the basket: a line has a missing name, quantity or price.")


@router.post("/register/quote")
async def quote(request: Request) -> Response:
    form = await form_of(request)
    sale = Sale(form)
    quoted, errors, status = _quoted(request, sale, language(request))
    return _page(request, sale, quote=quoted, errors=errors, status=status)


@router.post("/register/commit")
async def commit(request: Request) -> Response:
    form = await form_of(request)
    sale = Sale(form)
    code = language(request)
    if not sale.lines:
        return _page(request, sale, status=422,
                     errors={"new_sku": translate(code, "Add at least one item.")})
    with database_of(request).session_scope() as session:
        _found, principal = staff_in(session, request, Area.register)
        _terminal, _store, merchant = _till(session, principal)
        currency = merchant.currency
    try:
        body = units.commit(database_of(request), caller=principal,
                            address=request_address(request), data=sale.purchase(currency))
    except ValidationError as invalid:
        return _page(request, sale, status=422, errors={"basket": _validation_text(invalid,
                                                                                   code)})
    except PatronError as refusal:
        return _page(request, sale, status=refusal.status,
                     errors={str(refusal.extra.get("field") or "basket"):
                             problem_text(refusal, code)})
    return redirect(request, f"/register/receipts/{json.loads(body)['id']}")


# --- receipts and returns ----------------------------------------------------------------------

@router.get("/register/receipts/{transaction_id}")
def receipt(request: Request, transaction_id: uuid.UUID) -> Response:
    with database_of(request).session_scope() as session:
        found, principal = staff_in(session, request, Area.register)
        terminal, store, merchant = _till(session, principal)
        sale = json.loads(pos.get_transaction(session, actor=principal,
                                              transaction_id=transaction_id))
        barcodes = {offer["voucher"]["code"]: data_uri(images.barcode_svg(
            str(offer["voucher"]["barcode"]))) for offer in sale.get("offers", [])
            if offer.get("voucher")}
        barcodes.update({benefit["code"]: data_uri(images.barcode_svg(benefit["code"]))
                         for benefit in sale.get("benefits", [])})
        return render(request, "register_receipt.html", language(request, found.language),
                      sale=sale, terminal=terminal, store=store, merchant=merchant,
                      barcodes=barcodes, staff=found,
                      returned=request.query_params.get("returned"))


@router.post("/register/receipts/{transaction_id}/return")
async def take_return(request: Request, transaction_id: uuid.UUID) -> Response:
    """The whole purchase comes back (what is not returned yet)."""
    await form_of(request)
    try:
        with database_of(request).session_scope() as session:
            _found, principal = staff_in(session, request, Area.register)
            pos_returns.record_return(session, actor=principal,
                                      transaction_id=transaction_id,
                                      data=ReturnWrite(return_no=_new_receipt_no(),
                                                       occurred_at=utcnow()))
    except PatronError as refusal:
        if refusal.status != 409:
            raise
        return redirect(request, f"/register/receipts/{transaction_id}?returned=0")
    return redirect(request, f"/register/receipts/{transaction_id}?returned=1")
