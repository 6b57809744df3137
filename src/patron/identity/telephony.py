"""Caller-ID webhook: the telephony provider posts each inbound call (form-encoded).

Authentication, either way (providers differ in what they can send):
- header ``X-Patron-Signature``: hex HMAC-SHA256 of the raw body with the webhook secret;
- query ``token``: the webhook secret itself (for providers that only let you set a URL).
The answer is a small XML document in the TwiML dialect most providers accept.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from fastapi import APIRouter, Header, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from patron.config import get_settings
from patron.http import Db, media_response, problems
from patron.identity import service
from patron.identity.errors import BadSignature
from patron.identity.models import WaitStatus
from patron.kit.crypto import webhook_authentic

router = APIRouter(prefix="/v1/telephony", tags=["identification"])

_FORM = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {
    "schema": {"type": "object", "required": ["From", "To"], "properties": {
        "From": {"type": "string", "description": "Caller's number (caller ID)"},
        "To": {"type": "string", "description": "The register's call-in number"},
        "CallSid": {"type": "string"}}}}}}}
_XML = media_response("application/xml", "Spoken answer for the caller")


def _verify(body: bytes, signature: str | None, token: str | None) -> None:
    if not webhook_authentic(get_settings().telephony_secret, body, signature=signature,
                             token=token):
        raise BadSignature("sign the body with X-Patron-Signature or pass ?token=")


def _say(text: str) -> Response:
    xml = f'<?xml version="1.0" encoding="UTF-8"?><Response><Say>{escape(text)}</Say>' \
          f"<Hangup/></Response>"
    return Response(xml, media_type="application/xml")


@router.post("/inbound", response_class=Response, openapi_extra=_FORM,
             responses={**_XML, **problems(401)})
async def inbound_call(
    request: Request,
    db: Db,
    x_patron_signature: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """A customer called a register's number: identify them by caller ID and attach them to
    the register waiting for that number."""
    body = await request.body()
    _verify(body, x_patron_signature, token)
    form = parse_qs(body.decode("utf-8", errors="replace"))
    caller = (form.get("From") or [""])[0]
    called = (form.get("To") or [""])[0]
    if not caller or not called:
        return _say("No register is waiting for your call. Please ask the cashier.")

    def attach() -> WaitStatus | None:
        with db.session_scope() as session:
            wait = service.inbound_call(session, caller=caller, called=called)
            return WaitStatus(wait.status) if wait is not None else None

    status = await run_in_threadpool(attach)
    if status is None:
        return _say("No register is waiting for your call. Please ask the cashier.")
    if status == WaitStatus.matched:
        return _say("Thank you. You are identified at the register.")
    return _say("We could not find your membership. Please ask the cashier.")
