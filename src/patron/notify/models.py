"""The transactional outbox: business events written in the transaction that caused them.

Delivery (webhooks, a broker, e-mail) reads undelivered rows later, outside any business
transaction; nothing here ever talks to the network.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow


class OutboxEvent(Base):
    __tablename__ = "outbox_events"
    __table_args__ = (
        # The delivery worker's scan: undelivered events in creation order.
        Index("ix_outbox_events_delivered_created", "delivered_at", "created_at"),
        # The event stream's relay: events not yet streamed, in creation order.
        Index("ix_outbox_events_streamed_created", "streamed_at", "created_at"),
    )

    # The event id consumers de-duplicate on.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    type: Mapped[str] = mapped_column(String(64))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When its deliveries were made (the worker's dispatch).
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the event stream's broker acknowledged it (None: not yet, or no stream).
    streamed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(Base):
    """A merchant's (or the operator's: merchant None, every merchant's events) receiver of
    Standard Webhooks. The signing secret is stored encrypted; during a rotation the
    previous one signs too until ``previous_secret_expires_at``."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    url: Mapped[str] = mapped_column(String(2048))
    # Event types, or ["*"] for every type.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Failing without a success since then; five days of it disables the endpoint.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(64))


class Delivery(Base):
    """One event to one destination: a webhook endpoint, or a member's e-mail, phone or
    push subscription. Its id is derived from the event and the destination, so making
    the deliveries of an event twice makes them once; it is the ``webhook-id`` a receiver
    de-duplicates on, the same at every attempt."""

    __tablename__ = "deliveries"
    __table_args__ = (
        # The sender's scan: what is due, oldest first.
        Index("ix_deliveries_status_due", "status", "next_attempt_at"),
        Index("ix_deliveries_endpoint_created", "endpoint_id", "created_at"),
        Index("ix_deliveries_member_created", "member_id", "created_at"),
        Index("ix_deliveries_merchant_created", "merchant_id", "created_at"),
    )

    # The event's merchant first: the tenant key (DESIGN.md, "Scale path").
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox_events.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    endpoint_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("webhook_endpoints.id"))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    # marketing or transactional (member messages); None for webhooks.
    purpose: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    # Why it was suppressed, failed or is held; the last error while it is retried.
    reason: Mapped[str | None] = mapped_column(String(300))
    # Attempts in all (numbering the attempt rows) and in the current round (the retry
    # schedule's position; a replay starts a new round).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    round_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryAttempt(Base):
    """Every attempt of a delivery: when, how long, what came back."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (ForeignKeyConstraint(["merchant_id", "delivery_id"],
                                           ["deliveries.merchant_id", "deliveries.id"]),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_ms: Mapped[int] = mapped_column(Integer)
    # delivered, retry, failed (no more attempts) or gone (410: the endpoint is disabled)
    outcome: Mapped[str] = mapped_column(String(16))
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(300))


class MessageSettings(Base):
    """A merchant's settings for its member messages: the e-mails' sender name and
    reply-to, its default quiet hours (store-local) and a weekly cap per member."""

    __tablename__ = "message_settings"

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    sender_name: Mapped[str | None] = mapped_column(String(100))
    reply_to: Mapped[str | None] = mapped_column(String(254))
    # Minutes after local midnight; a window may wrap midnight (22:00-08:00).
    quiet_start_minute: Mapped[int | None] = mapped_column(Integer)
    quiet_end_minute: Mapped[int | None] = mapped_column(Integer)
    weekly_cap: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MemberQuietHours(Base):
    """A member's own quiet hours, in their time zone: they replace the merchants'."""

    __tablename__ = "member_quiet_hours"

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    start_minute: Mapped[int] = mapped_column(Integer)
    end_minute: Mapped[int] = mapped_column(Integer)
    timezone: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageSend(Base):
    """A marketing message sent (or being sent) to a member by a merchant: what the weekly
    cap counts. One row per delivery, taken under the membership's row lock."""

    __tablename__ = "message_sends"
    __table_args__ = (Index("ix_message_sends_member_sent", "merchant_id", "member_id",
                            "sent_at"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TargetedMessage(Base):
    """A message a merchant sent to the members an audience selected, on one channel,
    with an offer's personal code each if it names one."""

    __tablename__ = "targeted_messages"

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    channel: Mapped[str] = mapped_column(String(16))
    audience: Mapped[dict[str, Any]] = mapped_column(JSON)
    subject: Mapped[str | None] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(String(1000))
    offer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("offers.id"))
    selected: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TargetedRecipient(Base):
    """One member a targeted message went to: its event (and so its deliveries) and the
    personal code it carried."""

    __tablename__ = "targeted_recipients"
    __table_args__ = (ForeignKeyConstraint(["merchant_id", "message_id"],
                                           ["targeted_messages.merchant_id",
                                            "targeted_messages.id"]),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    message_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("outbox_events.id"), index=True)
    voucher_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    # The e-mail's first open (its image loaded) and first click of a tracked link.
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class MessageTemplate(Base):
    """A merchant's own template of one event, channel and language (Jinja2, sandboxed),
    used instead of the built-in one."""

    __tablename__ = "message_templates"

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    language: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str | None] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(String(4000))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PushSubscription(Base):
    """A browser's Web Push subscription of a member (the wallet registers it): where to
    push (the push service's ``endpoint``) and the keys a payload is encrypted to. A
    subscription the push service says is gone (404, 410) is kept as gone, not used."""

    __tablename__ = "push_subscriptions"
    __table_args__ = (UniqueConstraint("member_id", "endpoint"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    endpoint: Mapped[str] = mapped_column(String(2048))
    # The browser's P-256 public key (65 bytes) and auth secret (16 bytes), RFC 8291.
    p256dh: Mapped[bytes] = mapped_column(LargeBinary(65))
    auth: Mapped[bytes] = mapped_column(LargeBinary(16))
    # The merchant whose key registered it (None: the operator's).
    registered_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the browser says the subscription ends (its ``expirationTime``), if it does.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    gone_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
