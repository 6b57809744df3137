"""Web push: members' browser subscriptions (who may register and remove them) and the
push channel.

The member wallet (or a merchant's own app) subscribes in the browser with the
deployment's VAPID public key (``GET /v1/push/vapid-key``) and registers the
subscription the browser gives (``POST /v1/members/{id}/push-subscriptions``). A message
then goes to each of the member's live subscriptions: encrypted for it (RFC 8291), signed
for its push service (VAPID, RFC 8292), through the same address checks as webhooks (a
push endpoint is an address a client gave). A push service's 404 or 410 marks the
subscription gone.

A push is one delivery per member and message, whatever the number of browsers: consent,
quiet hours and the weekly cap count the message once. It succeeds when a push service
took it for at least one browser; the notification's ``tag`` is the delivery id, so a
browser that gets it again (a retry) replaces it rather than showing two.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.config import Settings, get_settings
from patron.kit.clock import utcnow
from patron.members.access import member_for
from patron.members.models import Member
from patron.members.schemas import MemberProof
from patron.notify import rules, templates, webhooks
from patron.notify.errors import (
    InvalidSubscription,
    PushNotConfigured,
    PushSubscriptionNotFound,
    TargetNotAllowed,
)
from patron.notify.messages import MemberChannel, Outgoing, push_live
from patron.notify.models import PushSubscription
from patron.notify.rules import AttemptOutcome, DeliveryChannel
from patron.notify.schemas import (
    PushSubscriptionRead,
    PushSubscriptions,
    PushSubscriptionWrite,
    VapidKeyRead,
)
from patron.notify.webpush import PushKeyError, VapidKey, encrypt, from_b64url, public_key_of
from patron.notify.worker import Attempt, Send, post_pinned
from patron.tenancy.rules import MemberAction
from patron.tenancy.service import Principal

# A member's live subscriptions are at most this many (a new one retires the oldest).
MAX_SUBSCRIPTIONS = 10


def vapid_key(settings: Settings | None = None) -> VapidKey | None:
    settings = settings or get_settings()
    return VapidKey.from_setting(settings.vapid_private_key) if settings.vapid_private_key \
        else None


def public_key() -> VapidKeyRead:
    key = vapid_key()
    if key is None:
        raise PushNotConfigured("no VAPID key is set (PATRON_VAPID_PRIVATE_KEY)")
    return VapidKeyRead(public_key=key.public_text)


# --- registering ------------------------------------------------------------------------

def _read(row: PushSubscription) -> PushSubscriptionRead:
    # The endpoint is a capability of the browser's: only its push service is shown.
    return PushSubscriptionRead(id=row.id, member_id=row.member_id,
                                push_service=urlsplit(row.endpoint).hostname or "",
                                created_at=row.created_at, expires_at=row.expires_at,
                                last_delivered_at=row.last_delivered_at, gone_at=row.gone_at)


def _keys(data: PushSubscriptionWrite) -> tuple[bytes, bytes]:
    try:
        p256dh = from_b64url(data.keys.p256dh)
        public_key_of(p256dh)
    except PushKeyError as exc:
        raise InvalidSubscription(f"keys.p256dh: {exc}", field="keys.p256dh") from None
    try:
        auth = from_b64url(data.keys.auth)
    except PushKeyError:
        auth = b""
    if len(auth) != 16:
        raise InvalidSubscription("keys.auth must be the base64url of 16 bytes",
                                  field="keys.auth")
    return p256dh, auth


def register(session: Session, *, actor: Principal, member_id: uuid.UUID,
             data: PushSubscriptionWrite) -> tuple[PushSubscriptionRead, bool]:
    """Register (or renew: the same endpoint again) a browser's subscription for the
    member; whether it is new. Who may: as for changing the member (a till with the
    member's proof)."""
    # The subscription is checked first: a refusal must not spend the member's proof.
    endpoint = str(data.endpoint)
    allow_private = get_settings().webhook_allow_private_targets
    if urlsplit(endpoint).scheme != "https" and not allow_private:
        raise InvalidSubscription("a push endpoint is an https:// address", field="endpoint")
    try:
        webhooks.check_target(endpoint, allow_private=allow_private)
    except TargetNotAllowed as exc:
        raise InvalidSubscription(exc.detail, field="endpoint") from None
    p256dh, auth = _keys(data)
    now = utcnow()
    expires = (datetime.fromtimestamp(data.expiration_time / 1000, UTC)
               if data.expiration_time is not None else None)
    if expires is not None and expires <= now:
        raise InvalidSubscription("the subscription has already expired",
                                  field="expirationTime")
    member = member_for(session, actor=actor, member_id=member_id,
                        action=MemberAction.change, proof=data.proof)
    # Serialised per member (its row), so the cap on live subscriptions holds.
    session.execute(select(Member.id).where(Member.id == member.id).with_for_update())
    row = session.scalar(select(PushSubscription).where(
        PushSubscription.member_id == member.id, PushSubscription.endpoint == endpoint))
    new = row is None
    if row is None:
        row = PushSubscription(id=uuid.uuid4(), member_id=member.id, endpoint=endpoint,
                               created_at=now)
        session.add(row)
    row.p256dh, row.auth, row.expires_at, row.gone_at = p256dh, auth, expires, None
    row.registered_by = actor.merchant_id
    session.flush()
    others = list(session.scalars(
        select(PushSubscription).where(PushSubscription.member_id == member.id,
                                       PushSubscription.id != row.id, push_live(now))
        .order_by(PushSubscription.created_at.desc())))
    for old in others[MAX_SUBSCRIPTIONS - 1:]:
        old.gone_at = now
    session.flush()
    return _read(row), new


def subscriptions(session: Session, *, actor: Principal,
                  member_id: uuid.UUID) -> PushSubscriptions:
    """The member's subscriptions, live and gone (as for reading the member)."""
    member = member_for(session, actor=actor, member_id=member_id, action=MemberAction.read)
    return PushSubscriptions(items=[_read(row) for row in session.scalars(
        select(PushSubscription).where(PushSubscription.member_id == member.id)
        .order_by(PushSubscription.created_at, PushSubscription.id))])


def revoke(session: Session, *, actor: Principal, member_id: uuid.UUID,
           subscription_id: uuid.UUID, proof: MemberProof | None = None
           ) -> PushSubscriptionRead:
    """Stop pushing to one browser (the member turned notifications off there): kept as
    gone. Who may: as for changing the member (a till with the member's proof)."""
    member = member_for(session, actor=actor, member_id=member_id,
                        action=MemberAction.change, proof=proof)
    row = session.get(PushSubscription, subscription_id, with_for_update=True)
    if row is None or row.member_id != member.id:
        raise PushSubscriptionNotFound("no such push subscription")
    if row.gone_at is None:
        row.gone_at = utcnow()
        session.flush()
    return _read(row)


# --- the channel ------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One subscription a message goes to."""

    id: uuid.UUID
    endpoint: str
    p256dh: bytes
    auth: bytes


def payload(outgoing: Outgoing, notification: templates.Push) -> bytes:
    """What the wallet's service worker gets: the notification and where a tap leads."""
    values = outgoing.values
    return json.dumps({
        "title": notification.title, "body": notification.body,
        "url": values.get("link"), "tag": str(outgoing.due.id),
        "event": outgoing.due.event_type, "merchant": outgoing.merchant.name,
        "code": values.get("code")}, ensure_ascii=False, separators=(",", ":")).encode()


class PushChannel(MemberChannel):
    name = DeliveryChannel.push.value

    def __init__(self, client: httpx.Client, settings: Settings) -> None:
        key = vapid_key(settings)
        assert key is not None
        self.key = key
        self.client = client
        self.subject = settings.vapid_subject or f"mailto:{settings.mail_from}"
        self.ttl = settings.push_ttl_seconds
        self.allow_private = settings.webhook_allow_private_targets

    def addresses(self, session: Session, members: Collection[Member], now: datetime
                  ) -> dict[uuid.UUID, Any]:
        found: dict[uuid.UUID, list[Target]] = {}
        for row in session.scalars(select(PushSubscription).where(
                PushSubscription.member_id.in_([member.id for member in members]),
                push_live(now)).order_by(PushSubscription.created_at)):
            found.setdefault(row.member_id, []).append(
                Target(row.id, row.endpoint, row.p256dh, row.auth))
        return found

    def build(self, outgoing: Outgoing) -> Send:
        notification = self.render(outgoing, lambda override: templates.push(
            outgoing.due.event_type, outgoing.language, outgoing.values, override))
        body = payload(outgoing, notification)
        targets: Sequence[Target] = outgoing.address
        urgent = outgoing.due.purpose == "transactional"

        def send() -> Attempt:
            started = time.monotonic()
            # One after the other: a member has a browser or two.
            attempts = [self.push(target, body, urgent=urgent) for target in targets]
            took = int((time.monotonic() - started) * 1000)
            gone = tuple(target.id for target, attempt in zip(targets, attempts, strict=True)
                         if attempt.outcome == AttemptOutcome.gone)
            delivered = tuple(target.id for target, attempt in zip(targets, attempts,
                                                                   strict=True)
                              if attempt.outcome == AttemptOutcome.delivered)
            return combine(attempts, took, gone=gone, delivered=delivered)
        return send

    def push(self, target: Target, body: bytes, *, urgent: bool) -> Attempt:
        started = time.monotonic()
        headers = {
            "content-type": "application/octet-stream", "content-encoding": "aes128gcm",
            "ttl": str(self.ttl), "urgency": "high" if urgent else "normal",
            "authorization": self.key.authorization(target.endpoint, subject=self.subject,
                                                    now=int(time.time())),
            "user-agent": "Patron-Push/1"}
        content = encrypt(body, p256dh=target.p256dh, auth=target.auth)
        response = post_pinned(self.client, target.endpoint, content=content,
                               headers=headers, allow_private=self.allow_private,
                               started=started)
        if isinstance(response, Attempt):
            return response
        outcome = rules.push_outcome(response.status_code)
        return Attempt(outcome, int((time.monotonic() - started) * 1000),
                       status_code=response.status_code,
                       error=None if outcome == AttemptOutcome.delivered
                       else f"the push service answered {response.status_code}",
                       retry_after=rules.parse_retry_after(
                           response.headers.get("retry-after"), utcnow()))


def combine(attempts: Sequence[Attempt], took: int, *, gone: tuple[uuid.UUID, ...],
            delivered: tuple[uuid.UUID, ...]) -> Attempt:
    """One message's outcome over its browsers: delivered if one push service took it;
    else tried again if one may take it later; else failed (every subscription gone, or
    refused)."""
    if not attempts:
        return Attempt(AttemptOutcome.failed, took, error="no live push subscription")
    if delivered:
        taken = next(attempt for attempt in attempts
                     if attempt.outcome == AttemptOutcome.delivered)
        return Attempt(AttemptOutcome.delivered, took, status_code=taken.status_code,
                       pushed=delivered, gone_subscriptions=gone)
    retry = [attempt for attempt in attempts if attempt.outcome == AttemptOutcome.retry]
    if retry:
        later = [attempt.retry_after for attempt in retry if attempt.retry_after]
        return Attempt(AttemptOutcome.retry, took, status_code=retry[0].status_code,
                       error=retry[0].error, retry_after=max(later) if later else None,
                       gone_subscriptions=gone)
    last = attempts[-1]
    error = ("every push subscription is gone" if len(gone) == len(attempts)
             else last.error)
    return Attempt(AttemptOutcome.failed, took, status_code=last.status_code, error=error,
                   gone_subscriptions=gone)

