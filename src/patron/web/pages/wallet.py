"""The member's pages (docs/web.md, "The member's wallet"): join, the wallet, signing in
on another device with a one-time code. Each reads through the services the API uses,
as the member themselves (``tenancy.rules.Relation.self``)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.errors import PatronError
from patron.identity import images
from patron.identity.service import current_qr_token
from patron.kit.clock import utcnow
from patron.kit.crypto import random_token
from patron.ledger import views as ledger_views
from patron.members import service as members
from patron.members import wallet
from patron.members.models import Channel, Member, Purpose
from patron.members.schemas import (
    ConsentChange,
    Consents,
    MemberUpdate,
    VerificationChannel,
)
from patron.notify import push as web_push
from patron.notify.schemas import PushSubscriptionWrite
from patron.privacy import export as member_export
from patron.referrals import service as referrals
from patron.tenancy.models import Merchant
from patron.vouchers import service as vouchers
from patron.vouchers.benefits import service as benefits
from patron.web.pages.common import (
    PageRefused,
    database_of,
    field_errors,
    form_of,
    language,
    redirect,
    remember_language,
    signing_out,
    text,
)
from patron.web.render import STATIC, data_uri, render, static_url, translate
from patron.web.routing import page_router
from patron.web.security import (
    INSTALL_COOKIE,
    WALLET_COOKIE,
    clear_cookie,
    csrf_passes,
    read_cookie,
    renew_csrf,
    set_cookie,
)

router = page_router()

SIGN_IN = "/wallet/sign-in"



def _member_session(session: Session, request: Request) -> wallet.WalletSession:
    """The member whose wallet this browser holds, or to the sign-in page."""
    found = wallet.session_of_device(session, read_cookie(request, WALLET_COOKIE))
    if found is None:
        raise PageRefused(303, location=SIGN_IN)
    return found


def _label(request: Request) -> str:
    return device_label(request.headers.get("user-agent") or "")


# (what the User-Agent says, what the member reads), first match wins
_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("SamsungBrowser/", "Samsung Internet"),
             ("Firefox/", "Firefox"), ("CriOS/", "Chrome"), ("Chrome/", "Chrome"),
             ("Safari/", "Safari"))
_SYSTEMS = (("iPhone", "iPhone"), ("iPad", "iPad"), ("Android", "Android"),
            ("Windows", "Windows"), ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"),
            ("Linux", "Linux"))


def device_label(user_agent: str) -> str:
    """A device as its member recognises it in their list: "Chrome · Android"."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    return " · ".join(part for part in (browser, system) if part)[:100]


def _install_id(request: Request) -> str:
    return read_cookie(request, INSTALL_COOKIE) or random_token(20)


def _signed_in(request: Request, response: Response, token: str, install_id: str) -> Response:
    days = get_settings().wallet_device_days
    set_cookie(response, WALLET_COOKIE, token, max_age=days * 86400)
    set_cookie(response, INSTALL_COOKIE, install_id, max_age=2 * 365 * 86400)
    return response


# --- join -------------------------------------------------------------------------------

def _join_merchant(session: Session, request: Request, form: Any = None) -> Merchant | None:
    source = form if form is not None else request.query_params
    referral = (source.get("ref") or "").strip() or None
    number = (source.get("m") or "").strip()
    return wallet.merchant_for_join(session, referral_code=referral,
                                    number=int(number) if number.isdigit() else None)


@router.get("/join")
def join_page(request: Request) -> Response:
    code = language(request)
    with database_of(request).session_scope() as session:
        already = wallet.session_of_device(session, read_cookie(request, WALLET_COOKIE))
        merchant = _join_merchant(session, request)
        merchants = [] if merchant else members_choices(session)
        ref = request.query_params.get("ref")
        response = render(request, "join.html", code, merchant=merchant, merchants=merchants,
                          ref=ref if merchant else None, already=already is not None,
                          errors={}, values={})
    return remember_language(request, response)


def members_choices(session: Session) -> list[Merchant]:
    return list(session.scalars(select(Merchant).order_by(Merchant.name)))


@router.post("/join")
async def join(request: Request) -> Response:
    form = await form_of(request)
    code = language(request, text(form, "language"))
    install_id = _install_id(request)
    email = text(form, "email") or None
    ref = text(form, "ref") or None
    marketing = Consents(email=True if email and form.get("consent_email") else None,
                         push=True if form.get("consent_push") else None)
    database = database_of(request)
    try:
        with database.session_scope() as session:
            merchant = _join_merchant(session, request, form)
            if merchant is None:
                raise PageRefused(422)
            _member, token = wallet.join(
                session, merchant_id=merchant.id, install_id=install_id, language=code,
                email=email, referral_code=ref,
                marketing=marketing if (marketing.email or marketing.push) else None,
                label=_label(request))
    except (PatronError, PageRefused) as refusal:
        # Refused: the enrolment rolled back (a refusal that records itself, such as a
        # self-referral, kept its record).
        with database.session_scope() as session:
            merchant = _join_merchant(session, request, form)
            errors = ({"m": translate(code, "Choose where you join.")} if merchant is None
                      else field_errors(refusal, code, "email")
                      if isinstance(refusal, PatronError) else {})
            return render(request, "join.html", code, merchant=merchant,
                          merchants=[] if merchant else members_choices(session),
                          ref=ref if merchant else None, already=False, errors=errors,
                          values={"email": email or ""}, status=422)
    renew_csrf(request)
    return _signed_in(request, redirect(request, "/wallet?welcome=1"), token, install_id)


# --- the wallet ---------------------------------------------------------------------------

@router.get("/wallet")
def wallet_page(request: Request) -> Response:
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        code = language(request, me.language)
        actor = me.principal
        member = members.get_member(session, actor=actor, member_id=me.member_id)
        balances = ledger_views.member_balances(session, actor=actor, member_id=member.id)
        history = ledger_views.member_history(session, actor=actor, member_id=member.id,
                                              query=ledger_views.HistoryQuery(limit=20))
        codes = vouchers.wallet(session, member_id=member.id, merchant_id=None)
        referral = referrals.member_referral(session, member=member, now=utcnow())
        consents = members.consent_history(session, actor=actor, member_id=member.id)
        progress = benefits.member_progress(session, actor=actor, member_id=member.id)
        merchant_names = {b.merchant_id: b.merchant_name for b in balances.points}
        response = render(
            request, "wallet.html", code, member=member, balances=balances,
            history=history.items, vouchers=[v for v in codes if v.status == "active"],
            past_vouchers=[v for v in codes if v.status != "active"],
            referral=referral, progress=progress,
            consent_rows=_consent_rows(consents, merchant_names),
            consent_history=consents.history, merchant_names=merchant_names,
            card=_card(member), barcodes=_voucher_barcodes(codes),
            devices=wallet.devices(session, member_id=member.id), this_device=me.device_id,
            vapid_key=_vapid_public_key(),
            welcome=request.query_params.get("welcome") == "1",
            done=request.query_params.get("done"))
    return remember_language(request, response)


def _vapid_public_key() -> str | None:
    key = web_push.vapid_key()
    return key.public_text if key is not None else None


def _card(member: Member) -> dict[str, Any]:
    token = current_qr_token(member)
    return {"qr": data_uri(images.qr_svg(token.token)), "token": token.token,
            "refresh_seconds": token.refresh_seconds, "expires_at": token.expires_at,
            "barcode": data_uri(images.barcode_svg(member.member_number)),
            "number": member.member_number}


def _voucher_barcodes(codes: list[Any]) -> dict[str, str]:
    return {v.code: data_uri(images.barcode_svg(v.barcode)) for v in codes
            if v.status == "active"}


@router.get("/wallet/card")
def wallet_card(request: Request) -> Response:
    """The membership card alone, refreshed by the wallet before its QR expires."""
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        member = members.get_member(session, actor=me.principal, member_id=me.member_id)
        return render(request, "_wallet_card.html", language(request, me.language),
                      card=_card(member))


def _consent_rows(consents: Any, merchant_names: dict[uuid.UUID, str]
                  ) -> list[dict[str, Any]]:
    """Per merchant the member belongs to, marketing by e-mail, SMS and push: on or off."""
    granted = {(state.merchant_id, state.channel): state.granted for state in consents.states
               if state.purpose == Purpose.marketing.value}
    return [{"merchant_id": merchant_id, "merchant": name,
             "channels": {channel.value: granted.get((merchant_id, channel.value), False)
                          for channel in Channel}}
            for merchant_id, name in merchant_names.items()]


@router.post("/wallet/consents")
async def change_consent(request: Request) -> Response:
    form = await form_of(request)
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        try:
            scope = uuid.UUID(text(form, "merchant_id"))
            channel = Channel(text(form, "channel"))
        except ValueError as exc:
            raise PageRefused(404) from exc
        members.change_consents(session, actor=me.principal, member_id=me.member_id,
                                data=ConsentChange(channel=channel, purpose=Purpose.marketing,
                                                   granted=text(form, "granted") == "1",
                                                   scope=scope, source="wallet"))
    return redirect(request, "/wallet?done=consent#consents")


@router.post("/wallet/language")
async def change_language(request: Request) -> Response:
    form = await form_of(request)
    chosen = text(form, "language")
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        try:
            members.update_member(session, actor=me.principal, member_id=me.member_id,
                                  data=MemberUpdate(language=chosen))
        except ValueError as exc:
            raise PageRefused(404) from exc
    return redirect(request, "/wallet?done=language#settings")


@router.get("/wallet/export")
def download_my_data(request: Request) -> Response:
    database = database_of(request)
    with database.session_scope() as session:
        me = _member_session(session, request)
        prepared = member_export.prepare(session, actor=me.principal, member_id=me.member_id)
    return StreamingResponse(member_export.stream(database, prepared),
                             media_type="application/json",
                             headers={"Cache-Control": "no-store", "Content-Disposition":
                                      f'attachment; filename="{prepared.filename}"'})


@router.post("/wallet/delete")
async def delete_my_account(request: Request) -> Response:
    form = await form_of(request)
    if text(form, "confirm") != "delete":
        return redirect(request, "/wallet#settings")
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        members.erase(session, actor=me.principal, member_id=me.member_id)
    response = redirect(request, "/?deleted=1")
    clear_cookie(response, WALLET_COOKIE)
    renew_csrf(request)
    return response


@router.post("/wallet/devices/{device_id}/sign-out")
async def sign_out_device(request: Request, device_id: uuid.UUID) -> Response:
    await form_of(request)
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        try:
            wallet.revoke_device(session, member_id=me.member_id, device_id=device_id)
        except PatronError as exc:
            raise PageRefused(404) from exc
    if device_id == me.device_id:
        response = redirect(request, SIGN_IN)
        clear_cookie(response, WALLET_COOKIE)
        renew_csrf(request)
        return response
    return redirect(request, "/wallet?done=device#devices")


@router.post("/wallet/sign-out")
async def sign_out(request: Request) -> Response:
    await form_of(request)
    return signing_out(request, cookie=WALLET_COOKIE, to=SIGN_IN,
                       end=lambda session, token: wallet.sign_out(session, token=token))


# --- signing in on another device ---------------------------------------------------------

@router.get(SIGN_IN)
def sign_in_page(request: Request) -> Response:
    code = language(request)
    return remember_language(request, render(request, "wallet_sign_in.html", code,
                                             step="address", errors={}, values={}))


@router.post(SIGN_IN)
async def send_code(request: Request) -> Response:
    form = await form_of(request)
    code = language(request)
    address = text(form, "address")
    channel: VerificationChannel = "email" if "@" in address else "sms"
    if not address:
        return render(request, "wallet_sign_in.html", code, step="address",
                      errors={"address": translate(code, "Enter your e-mail address or phone "
                                                       "number.")},
                      values={}, status=422)
    with database_of(request).session_scope() as session:
        try:
            verification_id = wallet.request_code(
                session, address=address, channel=channel,
                region=get_settings().default_region)
        except PatronError as refusal:
            return render(request, "wallet_sign_in.html", code, step="address",
                          errors=field_errors(refusal, code, "address"),
                          values={"address": address}, status=refusal.status)
    return render(request, "wallet_sign_in.html", code, step="code", errors={},
                  values={"verification_id": str(verification_id), "channel": channel})


@router.post(SIGN_IN + "/code")
async def check_code(request: Request) -> Response:
    form = await form_of(request)
    code = language(request)
    values = {"verification_id": text(form, "verification_id"),
              "channel": text(form, "channel")}
    try:
        verification_id = uuid.UUID(values["verification_id"])
    except ValueError:
        return redirect(request, SIGN_IN)
    install_id = _install_id(request)
    with database_of(request).session_scope() as session:
        try:
            _member, token = wallet.sign_in_with_code(
                session, verification_id=verification_id, code=text(form, "code"),
                label=_label(request))
        except PatronError as refusal:
            if not refusal.keep_side_effects:
                raise
            errors = {"code": translate(code, "The code is wrong, used or expired.")}
            response = render(request, "wallet_sign_in.html", code, step="code",
                              errors=errors, values=values, status=refusal.status)
            return response
    renew_csrf(request)
    return _signed_in(request, redirect(request, "/wallet"), token, install_id)


# --- installable app ------------------------------------------------------------------------

@router.get("/wallet/manifest.webmanifest")
def manifest(request: Request) -> Response:
    code = language(request)
    body = {"name": translate(code, "Patron wallet"), "short_name": "Patron",
            "lang": code, "start_url": "/wallet", "scope": "/wallet", "display": "standalone",
            "background_color": "#f3f5f7", "theme_color": "#0b5cad",
            "icons": [{"src": static_url(f"icons/icon-{size}.png"), "sizes": f"{size}x{size}",
                       "type": "image/png", "purpose": "any maskable"}
                      for size in (192, 512)]}
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/manifest+json",
                    headers={"Cache-Control": "no-cache"})


@router.get("/wallet/sw.js")
def service_worker() -> Response:
    """The wallet's service worker, served under /wallet so that it may control the
    wallet's pages (``Service-Worker-Allowed``); never cached long, so an update reaches
    the phone at its next visit."""
    return Response((STATIC / "sw.js").read_bytes(), media_type="text/javascript",
                    headers={"Cache-Control": "no-cache", "Service-Worker-Allowed": "/wallet"})


@router.post("/wallet/push")
async def subscribe_push(request: Request) -> Response:
    """The wallet's browser subscribes to web push: the subscription as
    ``PushSubscription.toJSON()`` gives it, checked like the API's (``notify.push``)."""
    if not csrf_passes(request, None):
        raise PageRefused(403, detail="csrf")
    try:
        data = PushSubscriptionWrite.model_validate_json(await request.body())
    except ValidationError:
        return Response(status_code=422)
    with database_of(request).session_scope() as session:
        me = _member_session(session, request)
        web_push.register(session, actor=me.principal, member_id=me.member_id, data=data)
    return Response(status_code=204)
