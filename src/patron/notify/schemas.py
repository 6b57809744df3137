"""Request and response bodies of webhook endpoints, deliveries and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from patron.kit.validation import NO_CONTROL_CHARACTERS, Flag, Int32, Int64
from patron.members.schemas import Email, MemberProof, proof_field
from patron.tenancy.schemas import Read, Strict, TimeZone

WebhookUrl = Annotated[str, Field(min_length=10, max_length=2048,
                                  pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$",
                                  description="An absolute http or https address")]
EventTypeName = Annotated[str, Field(min_length=1, max_length=64,
                                     pattern=r"^(\*|[a-z_]+(\.[a-z_]+)+)$",
                                     description="An event type, or `*` for every type")]
Description = Annotated[str, Field(min_length=1, max_length=200,
                                   pattern=NO_CONTROL_CHARACTERS)]


class WebhookEndpointCreate(Strict):
    url: WebhookUrl
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=50, description=(
        "The event types sent to this endpoint (`GET /v1/event-types`), or `[\"*\"]`"))]
    description: Description | None = None
    merchant_id: uuid.UUID | None = Field(default=None, description=(
        "Operator keys only: the merchant whose events it receives; none: every "
        "merchant's. Merchant keys: implied (their own)."))


class WebhookEndpointUpdate(Strict):
    url: WebhookUrl | None = None
    events: Annotated[list[EventTypeName], Field(min_length=1, max_length=50)] | None = None
    description: Description | None = None
    enabled: Flag | None = Field(default=None, description=(
        "false disables the endpoint; true enables a disabled one (its failure clock "
        "starts again)"))


class WebhookEndpointRead(Read):
    id: uuid.UUID
    merchant_id: uuid.UUID | None
    url: str
    events: list[str]
    description: str | None
    created_at: datetime
    updated_at: datetime
    enabled: bool
    disabled_at: datetime | None
    disabled_reason: str | None = Field(description=(
        "`gone` (the receiver answered 410), `failing` (5 days of failures), `by_request`"))
    failing_since: datetime | None
    previous_secret_expires_at: datetime | None = Field(description=(
        "Until then the previous secret signs too (after a rotation)"))


class WebhookEndpointSecret(WebhookEndpointRead):
    secret: str = Field(description="`whsec_` + base64 of 32 random bytes; shown only here")


class AttemptRead(Read):
    number: int
    attempted_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None


class DeliveryRead(BaseModel):
    id: uuid.UUID = Field(description="The `webhook-id` of every attempt")
    merchant_id: uuid.UUID = Field(description="The event's merchant")
    event_id: uuid.UUID
    event_type: str
    channel: str
    endpoint_id: uuid.UUID | None
    member_id: uuid.UUID | None
    purpose: str | None
    status: str = Field(description="pending, delivered, failed (dead letter), suppressed")
    reason: str | None
    attempts: list[AttemptRead]
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryRead]
    next_cursor: str | None


class EventRead(BaseModel):
    id: uuid.UUID
    type: str
    merchant_id: uuid.UUID
    member_id: uuid.UUID | None
    occurred_at: datetime
    created_at: datetime
    dispatched_at: datetime | None = Field(description=(
        "When its deliveries were made (null: not yet)"))
    data: dict[str, Any]


class EventPage(BaseModel):
    events: list[EventRead]
    next_cursor: str | None


class EventTypes(BaseModel):
    types: list[str]


class StopReply(BaseModel):
    stop: bool = Field(description="Whether the text is a stop word")
    consents_withdrawn: int = Field(description="SMS marketing consents it withdrew")


ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                 examples=["22:00"], description="HH:MM, 24-hour clock")]


class QuietWindow(Strict):
    start: ClockTime
    end: ClockTime = Field(description="May be earlier than start: the window wraps "
                                       "midnight (22:00 to 08:00)")


class MessageSettingsWrite(Strict):
    """A field sent replaces the stored one (null clears it); a field left out is kept."""

    sender_name: Annotated[str, Field(min_length=1, max_length=100,
                                      pattern=NO_CONTROL_CHARACTERS)] | None = Field(
        default=None, description="The e-mails' sender name (default: the merchant's name)")
    reply_to: Email | None = Field(default=None,
                                   description="Where members' replies to e-mails go")
    quiet_hours: QuietWindow | None = Field(default=None, description=(
        "Marketing due in this daily window (the store's local time) waits until it ends"))
    weekly_cap: Int32 | None = Field(default=None, ge=1, le=100, description=(
        "At most this many marketing messages to a member in any 7 days"))


class MessageSettingsRead(BaseModel):
    merchant_id: uuid.UUID
    sender_name: str | None
    reply_to: str | None
    quiet_hours: QuietWindow | None
    weekly_cap: int | None
    updated_at: datetime | None


class MemberQuietHoursWrite(Strict):
    start: ClockTime
    end: ClockTime
    timezone: TimeZone
    proof: MemberProof | None = proof_field()


class MemberQuietHoursRead(BaseModel):
    member_id: uuid.UUID
    quiet_hours: QuietWindow | None
    timezone: str | None


class Audience(Strict):
    conditions: dict[str, Any] = Field(description=(
        "A condition tree of the campaign condition language (docs/campaigns.md) over "
        "`member.*` fields only: segment, tier, RFM scores, p_alive, CLV, region, age_band, "
        "affinity, purchases, days since enrolment, …; `{\"all\": []}` selects every member"))


class MessageAudience(Strict):
    audience: Audience
    channel: Literal["email", "sms", "push"]


class MessageWrite(MessageAudience):
    subject: Annotated[str, Field(min_length=1, max_length=200,
                                  pattern=NO_CONTROL_CHARACTERS)] | None = Field(
        default=None, description="The e-mail's subject (default: the merchant's name)")
    text: Annotated[str, Field(min_length=1, max_length=1000)] = Field(
        description="The message; plain text, line breaks allowed")
    offer_id: uuid.UUID | None = Field(default=None, description=(
        "An offer of the merchant's: each recipient gets a personal code of it"))


class AudiencePreview(BaseModel):
    selected: int = Field(description="Members of the merchant the audience selects")
    reachable: int = Field(description="Of them, those with an address on the channel and "
                                       "the merchant's marketing consent for it")


class MessageRead(BaseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID
    channel: str
    audience: dict[str, Any]
    subject: str | None
    text: str
    offer_id: uuid.UUID | None
    created_at: datetime
    selected: int = Field(description="Members the audience selected when it was sent")
    sent: int = Field(description="Messages made (reachable members)")
    delivered: int
    failed: int
    suppressed: int = Field(description="Not sent: consent withdrawn since, the cap, …")
    pending: int
    opened: int | None = Field(description=(
        "E-mail: recipients who opened it (its image loaded, or a link clicked); "
        "null on other channels"))
    clicked: int | None = Field(description="E-mail: recipients who clicked one of its links")
    redemptions: int = Field(description="Uses of the personal codes it carried")


class MessageTemplateWrite(Strict):
    event_type: Annotated[str, Field(min_length=1, max_length=64, examples=["tier.changed"],
                                     description="One of the events a member is sent")]
    channel: Literal["email", "sms", "push"]
    language: Literal["en", "ja", "zh-Hans", "ko"]
    subject: Annotated[str, Field(min_length=1, max_length=300)] | None = Field(
        default=None, description="The e-mail's subject, or the push notification's title "
                                  "(e-mail and push only; default: built-in)")
    body: Annotated[str, Field(min_length=1, max_length=4000)] | None = Field(
        description="Jinja2 over the event's variables (docs/notify.md); null removes the "
                    "merchant's template, and the built-in one applies again")


class MessageTemplateRead(BaseModel):
    event_type: str
    channel: str
    language: str
    subject: str | None
    body: str
    updated_at: datetime | None
    builtin: bool = Field(description="True: the built-in template (the merchant has none)")
    sms_parts: int | None = Field(description="SMS: the parts the sample message takes")


class MessageTemplates(BaseModel):
    items: list[MessageTemplateRead]


Base64Url = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+=*$",
                                 description="base64url, as the browser gives it")]


class PushKeys(Strict):
    p256dh: Base64Url = Field(description="The browser's P-256 public key (65 bytes)")
    auth: Base64Url = Field(description="The browser's auth secret (16 bytes)")


class PushSubscriptionWrite(Strict):
    """What a browser's ``PushSubscription.toJSON()`` gives, and the member's proof when a
    terminal key registers it."""

    endpoint: Annotated[str, Field(min_length=12, max_length=2048,
                                   pattern=r"^https?://[^\s/?#]+(/[^\s]*)?$",
                                   description="The push service's address for this browser")]
    expiration_time: Annotated[Int64, Field(ge=0, le=253_402_300_799_999)] | None = Field(
        default=None, alias="expirationTime",
        description="When the subscription ends, in milliseconds since 1970 (null: never)")
    keys: PushKeys
    proof: MemberProof | None = proof_field()


class PushSubscriptionRevoke(Strict):
    proof: MemberProof | None = proof_field()


class PushSubscriptionRead(BaseModel):
    id: uuid.UUID
    member_id: uuid.UUID
    push_service: str = Field(description="The push service's host (the endpoint itself is "
                                          "the browser's and is not shown)")
    created_at: datetime
    expires_at: datetime | None
    last_delivered_at: datetime | None
    gone_at: datetime | None = Field(description="When the push service said it is gone "
                                                 "(or a newer one retired it)")


class PushSubscriptions(BaseModel):
    items: list[PushSubscriptionRead]


class VapidKeyRead(BaseModel):
    public_key: str = Field(description="The VAPID application server key (base64url): "
                                        "`applicationServerKey` of `pushManager.subscribe`")
