"""HTTP routes of webhook endpoints, deliveries and the outbox (operator and merchant
keys; docs/notify.md)."""

from __future__ import annotations

import uuid
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from patron.config import get_settings
from patron.http import AUTHED, Caller, Db, NoBody, PageQuery, problems
from patron.identity.errors import BadSignature
from patron.kit.clock import utcnow
from patron.kit.crypto import webhook_authentic
from patron.kit.pagination import Page, by_creation
from patron.notify import preferences, push, service, targeted, tracking, webhooks
from patron.notify.rules import DeliveryChannel, DeliveryStatus
from patron.notify.schemas import (
    AudiencePreview,
    DeliveryPage,
    DeliveryRead,
    EventPage,
    EventTypeName,
    EventTypes,
    MemberQuietHoursRead,
    MemberQuietHoursWrite,
    MessageAudience,
    MessageRead,
    MessageSettingsRead,
    MessageSettingsWrite,
    MessageTemplateRead,
    MessageTemplates,
    MessageTemplateWrite,
    MessageWrite,
    PushSubscriptionRead,
    PushSubscriptionRevoke,
    PushSubscriptions,
    PushSubscriptionWrite,
    StopReply,
    VapidKeyRead,
    WebhookEndpointCreate,
    WebhookEndpointRead,
    WebhookEndpointSecret,
    WebhookEndpointUpdate,
)

router = APIRouter(prefix="/v1", tags=["webhooks and deliveries"])

Cursor = Annotated[str | None, Query(max_length=200,
                                     description="`next_cursor` of the previous page")]
Limit = Annotated[int, Query(ge=1, le=1000)]
MerchantFilter = Annotated[uuid.UUID | None, Query(
    description="Operator keys: only this merchant's (merchant keys see their own only)")]


@router.get("/event-types", response_model=EventTypes, responses=problems(401))
def event_types(caller: Caller) -> EventTypes:
    """The event types a webhook endpoint may subscribe to (any key)."""
    return EventTypes(types=webhooks.event_catalogue())


@router.post("/webhook-endpoints", status_code=201, response_model=WebhookEndpointSecret,
             responses=problems(*AUTHED, 422))
def create_endpoint(data: WebhookEndpointCreate, db: Db,
                    caller: Caller) -> WebhookEndpointSecret:
    """Register a receiver of Standard Webhooks (merchant or operator key). The answer
    holds the signing `secret` once. The address must be public
    (`webhook_target_not_allowed` for loopback, private, link-local or reserved ones)."""
    with db.session_scope() as session:
        return webhooks.create_endpoint(session, actor=caller, data=data)


@router.get("/webhook-endpoints", response_model=Page[WebhookEndpointRead],
            responses=problems(401, 403, 422))
def list_endpoints(db: Db, caller: Caller, paging: PageQuery) -> Page[WebhookEndpointRead]:
    """The merchant's endpoints (the operator: every endpoint), oldest first."""
    with db.session_scope() as session:
        return paging.page(webhooks.list_endpoints(session, actor=caller), key=by_creation)


@router.get("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointRead,
            responses=problems(*AUTHED))
def get_endpoint(endpoint_id: uuid.UUID, db: Db, caller: Caller) -> WebhookEndpointRead:
    with db.session_scope() as session:
        return webhooks.get_endpoint(session, actor=caller, endpoint_id=endpoint_id)


@router.patch("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointRead,
              responses=problems(*AUTHED, 422))
def update_endpoint(endpoint_id: uuid.UUID, data: WebhookEndpointUpdate, db: Db,
                    caller: Caller) -> WebhookEndpointRead:
    """Change the address, the event types or the description; `enabled` disables the
    endpoint or enables a disabled one."""
    with db.session_scope() as session:
        return webhooks.update_endpoint(session, actor=caller, endpoint_id=endpoint_id,
                                        data=data)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret",
             response_model=WebhookEndpointSecret, responses=problems(*AUTHED),
             dependencies=[NoBody])
def rotate_secret(endpoint_id: uuid.UUID, db: Db, caller: Caller) -> WebhookEndpointSecret:
    """A new signing secret, shown once; the previous one keeps signing beside it until
    `previous_secret_expires_at` (`PATRON_WEBHOOK_ROTATION_HOURS`, 24 by default)."""
    with db.session_scope() as session:
        return webhooks.rotate_secret(session, actor=caller, endpoint_id=endpoint_id)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", response_model=DeliveryPage,
            responses=problems(*AUTHED, 422))
def endpoint_deliveries(endpoint_id: uuid.UUID, db: Db, caller: Caller,
                        status: DeliveryStatus | None = None, cursor: Cursor = None,
                        limit: Limit = 100) -> DeliveryPage:
    """The endpoint's deliveries, newest first, each with every attempt (time, outcome,
    status code, duration)."""
    with db.session_scope() as session:
        return service.list_deliveries(session, actor=caller, query=service.DeliveryQuery(
            endpoint_id=endpoint_id, status=status, cursor=cursor, limit=limit))


@router.post("/webhook-deliveries/{delivery_id}/replay", response_model=DeliveryRead,
             responses=problems(*AUTHED, 409), dependencies=[NoBody])
def replay_webhook(delivery_id: uuid.UUID, db: Db, caller: Caller) -> DeliveryRead:
    """Send a failed (or delivered) webhook delivery again with the same `webhook-id`."""
    with db.session_scope() as session:
        return service.replay(session, actor=caller, delivery_id=delivery_id,
                              webhook_only=True)


@router.get("/deliveries", response_model=DeliveryPage, responses=problems(*AUTHED, 422))
def list_deliveries(db: Db, caller: Caller,
                    member_id: uuid.UUID | None = None, event_id: uuid.UUID | None = None,
                    status: DeliveryStatus | None = None,
                    channel: DeliveryChannel | None = None,
                    merchant_id: MerchantFilter = None, cursor: Cursor = None,
                    limit: Limit = 100) -> DeliveryPage:
    """Every delivery of the merchant's events — webhooks and member messages — newest
    first, with its attempts; `status=failed` lists the dead letters."""
    with db.session_scope() as session:
        return service.list_deliveries(session, actor=caller, query=service.DeliveryQuery(
            member_id=member_id, event_id=event_id, status=status, channel=channel,
            merchant_id=merchant_id, cursor=cursor, limit=limit))


@router.post("/deliveries/{delivery_id}/replay", response_model=DeliveryRead,
             responses=problems(*AUTHED, 409), dependencies=[NoBody])
def replay_delivery(delivery_id: uuid.UUID, db: Db, caller: Caller) -> DeliveryRead:
    """Send a failed (or delivered) delivery of any channel again, with the same id."""
    with db.session_scope() as session:
        return service.replay(session, actor=caller, delivery_id=delivery_id)


@router.get("/events", response_model=EventPage, responses=problems(*AUTHED, 422))
def list_events(db: Db, caller: Caller, member_id: uuid.UUID | None = None,
                type: EventTypeName | None = None, merchant_id: MerchantFilter = None,
                cursor: Cursor = None, limit: Limit = 100) -> EventPage:
    """The outbox: the merchant's events, newest first, with when their deliveries were
    made (`dispatched_at`)."""
    with db.session_scope() as session:
        return service.list_events(session, actor=caller, query=service.EventQuery(
            member_id=member_id, type=type, merchant_id=merchant_id, cursor=cursor,
            limit=limit))


# --- inbound SMS (the provider's webhook) ----------------------------------------------

_SMS_FORM = {"requestBody": {"required": True, "content": {
    "application/x-www-form-urlencoded": {"schema": {
        "type": "object", "required": ["From", "Body"], "properties": {
            "From": {"type": "string", "description": "The sender's number"},
            "Body": {"type": "string", "description": "The text of the reply"},
            "To": {"type": "string", "description": "The number it was sent to"}}}}}}}


@router.post("/sms/inbound", response_model=StopReply, openapi_extra=_SMS_FORM,
             tags=["webhooks and deliveries"], responses=problems(401))
async def inbound_sms(
    request: Request, db: Db,
    x_patron_signature: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Query(max_length=200)] = None,
) -> StopReply:
    """A member's reply to an SMS, posted by the SMS provider (form-encoded `From`,
    `Body`), authenticated like the telephony webhook: `X-Patron-Signature` (hex
    HMAC-SHA256 of the body with `PATRON_SMS_INBOUND_SECRET`) or `?token=` (the secret).
    STOP, UNSUBSCRIBE, 停止, 配信停止, 退订, 수신거부 … withdraw the sender's SMS marketing
    consent (source `stop_reply`); any other text changes nothing."""
    body = await request.body()
    settings = get_settings()
    if not webhook_authentic(settings.sms_inbound_token, body, signature=x_patron_signature,
                             token=token):
        raise BadSignature("sign the body with X-Patron-Signature or pass ?token=")
    form = parse_qs(body.decode("utf-8", errors="replace"))
    sender = (form.get("From") or [""])[0]
    text = (form.get("Body") or [""])[0]

    def stop() -> int:
        with db.session_scope() as session:
            return service.stop_reply(session, sender=sender, text=text,
                                      region=settings.default_region)

    revoked = await run_in_threadpool(stop) if sender and text else 0
    return StopReply(stop=service.is_stop(text), consents_withdrawn=revoked)


# --- the unsubscribe link's page (no key: the signed token is the authority) ----------

pages = APIRouter(include_in_schema=False)

# The page has no script and posts only to itself.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
}


def _unsubscribe_answer(request: Request, db: Db, token: str, *, confirm: bool
                        ) -> HTMLResponse:
    with db.session_scope() as session:
        page = service.unsubscribe(session, token=token, confirm=confirm)
    if page is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=PAGE_HEADERS)
    return HTMLResponse(service.unsubscribe_html(page, str(request.url.path)),
                        headers=PAGE_HEADERS)


@pages.get("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_page(token: str, request: Request, db: Db) -> HTMLResponse:
    """The link in a marketing e-mail: a page with a button (opening it changes
    nothing)."""
    return _unsubscribe_answer(request, db, token, confirm=False)


@pages.post("/unsubscribe/{token}", response_class=HTMLResponse)
def unsubscribe_now(token: str, request: Request, db: Db) -> HTMLResponse:
    """RFC 8058 one-click (`List-Unsubscribe=One-Click`) or the page's button."""
    return _unsubscribe_answer(request, db, token, confirm=True)


# --- opens and clicks of targeted e-mails (no key: the signed link is the authority) ---

NOT_FOUND_PAGE = ("<!DOCTYPE html><title>Not found</title><p>This link is not valid.</p>")


@pages.get("/track/click/{token}")
def tracked_click(token: str, db: Db) -> Response:
    """A link in a targeted e-mail: the recipient's click counted, then on to where it
    leads (only to addresses Patron signed: no open redirect)."""
    with db.session_scope() as session:
        link = tracking.follow(session, token, click=True, now=utcnow())
    if link is None or link.target is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=PAGE_HEADERS)
    return RedirectResponse(link.target, status_code=302,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


@pages.get("/track/open/{token}.gif")
def tracked_open(token: str, db: Db) -> Response:
    """The image of a targeted e-mail: the recipient's open counted."""
    with db.session_scope() as session:
        link = tracking.follow(session, token, click=False, now=utcnow())
    if link is None:
        return HTMLResponse(NOT_FOUND_PAGE, status_code=404, headers=PAGE_HEADERS)
    return Response(tracking.PIXEL, media_type="image/gif",
                    headers={"Cache-Control": "no-store"})


# --- message settings and quiet hours ---------------------------------------------------

@router.get("/merchants/{merchant_id}/message-settings", response_model=MessageSettingsRead,
            responses=problems(*AUTHED))
def get_message_settings(merchant_id: uuid.UUID, db: Db,
                         caller: Caller) -> MessageSettingsRead:
    """The merchant's e-mail sender name and reply-to, quiet hours and weekly cap."""
    with db.session_scope() as session:
        return preferences.message_settings(session, actor=caller, merchant_id=merchant_id)


@router.put("/merchants/{merchant_id}/message-settings", response_model=MessageSettingsRead,
            responses=problems(*AUTHED, 422))
def put_message_settings(merchant_id: uuid.UUID, data: MessageSettingsWrite, db: Db,
                         caller: Caller) -> MessageSettingsRead:
    """Set them (merchant or operator key): a field sent replaces the stored one, null
    clears it, a field left out is kept. Quiet hours are in each store's local time;
    marketing due in them waits until they end; transactional messages ignore both."""
    with db.session_scope() as session:
        return preferences.change_message_settings(session, actor=caller,
                                                   merchant_id=merchant_id, data=data)


@router.get("/members/{member_id}/quiet-hours", response_model=MemberQuietHoursRead,
            responses=problems(*AUTHED))
def get_member_quiet_hours(member_id: uuid.UUID, db: Db,
                           caller: Caller) -> MemberQuietHoursRead:
    """The member's own quiet hours (null: the merchants' apply)."""
    with db.session_scope() as session:
        return preferences.member_quiet_hours(session, actor=caller, member_id=member_id)


@router.put("/members/{member_id}/quiet-hours", response_model=MemberQuietHoursRead,
            responses=problems(*AUTHED, 422))
def put_member_quiet_hours(member_id: uuid.UUID, data: MemberQuietHoursWrite, db: Db,
                           caller: Caller) -> MemberQuietHoursRead:
    """Set the member's own quiet hours, in their time zone: they replace every
    merchant's. Who may: as for changing the member (a till with the member's proof)."""
    with db.session_scope() as session:
        return preferences.set_member_quiet_hours(session, actor=caller, member_id=member_id,
                                                  data=data)


# --- web push ---------------------------------------------------------------------------

@router.get("/push/vapid-key", response_model=VapidKeyRead, responses=problems(401, 404))
def get_vapid_key(caller: Caller) -> VapidKeyRead:
    """The deployment's VAPID public key, which a browser subscribes with (any key; 404
    `push_not_configured` when this deployment sends no push)."""
    return push.public_key()


@router.post("/members/{member_id}/push-subscriptions", status_code=201,
             response_model=PushSubscriptionRead, responses=problems(*AUTHED, 422))
def register_push_subscription(member_id: uuid.UUID, data: PushSubscriptionWrite,
                               response: Response, db: Db,
                               caller: Caller) -> PushSubscriptionRead:
    """Register the subscription a browser gave (`PushSubscription.toJSON()`): 201, or 200
    when the same endpoint is registered again (its keys renewed). Who may: as for changing
    the member (a till with the member's proof). Messages go to it on the `push` channel
    with the member's push consent."""
    with db.session_scope() as session:
        read, new = push.register(session, actor=caller, member_id=member_id, data=data)
    if not new:
        response.status_code = 200
    return read


@router.get("/members/{member_id}/push-subscriptions", response_model=PushSubscriptions,
            responses=problems(*AUTHED))
def list_push_subscriptions(member_id: uuid.UUID, db: Db, caller: Caller) -> PushSubscriptions:
    """The member's push subscriptions, live and gone (as for reading the member)."""
    with db.session_scope() as session:
        return push.subscriptions(session, actor=caller, member_id=member_id)


@router.post("/members/{member_id}/push-subscriptions/{subscription_id}/revoke",
             response_model=PushSubscriptionRead, responses=problems(*AUTHED))
def revoke_push_subscription(member_id: uuid.UUID, subscription_id: uuid.UUID,
                             data: PushSubscriptionRevoke, db: Db,
                             caller: Caller) -> PushSubscriptionRead:
    """Stop pushing to that browser (kept as gone); the body is `{}`, or the member's proof
    when a till revokes. Who may: as for changing the member."""
    with db.session_scope() as session:
        return push.revoke(session, actor=caller, member_id=member_id,
                           subscription_id=subscription_id, proof=data.proof)


# --- targeted messages ------------------------------------------------------------------

@router.post("/messages/preview", response_model=AudiencePreview,
             responses=problems(*AUTHED, 422))
def preview_message(data: MessageAudience, db: Db, caller: Caller) -> AudiencePreview:
    """How many of the merchant's members an audience selects, and how many of them the
    channel reaches (an address, and the merchant's marketing consent for the channel).
    Merchant keys; sends nothing."""
    with db.session_scope() as session:
        return targeted.preview(session, actor=caller, data=data)


@router.post("/messages", status_code=201, response_model=MessageRead,
             responses=problems(*AUTHED, 422))
def send_message(data: MessageWrite, db: Db, caller: Caller) -> MessageRead:
    """Send a message to the members the audience selects, on one channel, each with a
    personal code of `offer_id` if given (merchant keys). Each goes through the delivery
    worker: consent again when it is sent, quiet hours, the weekly cap."""
    with db.session_scope() as session:
        return targeted.send(session, actor=caller, data=data)


@router.get("/messages/{message_id:uuid}", response_model=MessageRead,
            responses=problems(*AUTHED))
def get_message(message_id: uuid.UUID, db: Db, caller: Caller) -> MessageRead:
    """A targeted message and its results: selected, sent, delivered, failed, suppressed,
    pending, and the redemptions of its codes."""
    with db.session_scope() as session:
        return targeted.get_message(session, actor=caller, message_id=message_id)


@router.get("/merchants/{merchant_id}/message-templates", response_model=MessageTemplates,
            responses=problems(*AUTHED))
def get_message_templates(merchant_id: uuid.UUID, db: Db, caller: Caller) -> MessageTemplates:
    """Every member message's template, per event, channel and language: the merchant's
    own where it has one (`builtin: false`), else the built-in one; an SMS's parts with the
    longest values."""
    with db.session_scope() as session:
        return preferences.message_templates(session, actor=caller, merchant_id=merchant_id)


@router.put("/merchants/{merchant_id}/message-templates", response_model=MessageTemplateRead,
            responses=problems(*AUTHED, 422))
def put_message_template(merchant_id: uuid.UUID, data: MessageTemplateWrite, db: Db,
                         caller: Caller) -> MessageTemplateRead:
    """Set the merchant's own template of one event, channel and language (Jinja2 over the
    event's variables, sandboxed), or remove it (`body: null`). It is tried with every
    variable at its longest when saved: a syntax error, an unknown variable or an SMS of
    more than `PATRON_SMS_MAX_PARTS` parts is 422 `invalid_template`."""
    with db.session_scope() as session:
        return preferences.put_message_template(session, actor=caller,
                                                merchant_id=merchant_id, data=data)
