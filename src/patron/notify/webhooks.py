"""Webhook endpoints: who may register them, their secrets, where they may point.

An endpoint belongs to a merchant (its events only) or, made by the operator without a
merchant, to the coalition (every merchant's events). Only the operator's and the
merchant's own keys see or change one; any other key of another tenant gets 404, a
terminal or sales-rep key 403 (docs/notify.md, "Who may").
"""

from __future__ import annotations

import ipaddress
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.errors import Forbidden
from patron.kit.clock import utcnow
from patron.kit.crypto import decrypt, encrypt
from patron.notify import rules
from patron.notify.errors import TargetNotAllowed, UnknownEventType, WebhookEndpointNotFound
from patron.notify.models import WebhookEndpoint
from patron.notify.outbox import EventType
from patron.notify.schemas import (
    WebhookEndpointCreate,
    WebhookEndpointRead,
    WebhookEndpointSecret,
    WebhookEndpointUpdate,
)
from patron.notify.signing import new_secret
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal

SECRET_CONTEXT = "webhook.secret"  # noqa: S105 - an AEAD context label
ALL_EVENTS = "*"
# Events that carry a secret for the member alone (a one-time code): never sent to a
# merchant's systems.
PRIVATE_EVENTS = frozenset({EventType.verification_code.value})


def event_catalogue() -> list[str]:
    """The event types an endpoint may subscribe to."""
    return sorted(str(type_) for type_ in EventType if type_ not in PRIVATE_EVENTS)


def _check_events(events: Sequence[str]) -> list[str]:
    known = set(event_catalogue())
    unknown = [event for event in events if event != ALL_EVENTS and event not in known]
    if unknown:
        raise UnknownEventType(
            f"unknown event type {unknown[0]!r}: use `*` or types from GET /v1/event-types",
            field="events")
    if ALL_EVENTS in events:
        return [ALL_EVENTS]
    return sorted(set(events))


def subscribed(endpoint_events: Sequence[str], event_type: str) -> bool:
    if event_type in PRIVATE_EVENTS:
        return False
    return ALL_EVENTS in endpoint_events or event_type in endpoint_events


def _literal_address(host: str) -> rules.IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse, at registration, an address that names a host webhooks may not reach: an IP
    literal in a private, loopback, link-local or reserved range, or ``localhost``. A name
    is resolved again at every attempt (``resolve_target``): what it points to may change."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        raise TargetNotAllowed("the address needs a host", field="url")
    if parts.username or parts.password:
        raise TargetNotAllowed("the address may not carry a user name or password; the "
                               "signature authenticates Patron", field="url")
    try:
        parts.port  # noqa: B018 - a port out of range raises here
    except ValueError:
        raise TargetNotAllowed("the port must be 1-65535", field="url") from None
    if allow_private:
        return
    address = _literal_address(host)
    if host == "localhost" or host.endswith(".localhost") or (
            address is not None and rules.private_address(address)):
        raise TargetNotAllowed(
            f"{host} is a loopback, private or reserved address; webhooks go to public "
            "addresses (PATRON_WEBHOOK_ALLOW_PRIVATE_TARGETS=true allows others)",
            field="url")


def resolve_target(url: str, *, allow_private: bool) -> str:
    """The address an attempt connects to (the name resolved once, so that what was
    checked is what is reached); ``TargetNotAllowed`` when it is a private one."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    address = _literal_address(host)
    if address is None:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
        if not allow_private and any(rules.private_address(found) for found in addresses):
            raise TargetNotAllowed(f"{host} resolves to a private or reserved address")
        address = addresses[0]
    elif not allow_private and rules.private_address(address):
        raise TargetNotAllowed(f"{host} is a private or reserved address")
    return str(address)


def _seal(secret: str) -> bytes:
    return encrypt(get_settings().encryption_key, secret, context=SECRET_CONTEXT)


def _open(sealed: bytes) -> str:
    return decrypt(get_settings().encryption_key, sealed, context=SECRET_CONTEXT)


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign an attempt now: the current one, and the previous one while
    its rotation window lasts."""
    secrets = [_open(endpoint.secret_enc)]
    if (endpoint.previous_secret_enc is not None
            and endpoint.previous_secret_expires_at is not None
            and endpoint.previous_secret_expires_at > now):
        secrets.append(_open(endpoint.previous_secret_enc))
    return secrets


def read(endpoint: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead(
        id=endpoint.id, merchant_id=endpoint.merchant_id, url=endpoint.url,
        events=list(endpoint.event_types), description=endpoint.description,
        created_at=endpoint.created_at, updated_at=endpoint.updated_at,
        enabled=endpoint.disabled_at is None, disabled_at=endpoint.disabled_at,
        disabled_reason=endpoint.disabled_reason, failing_since=endpoint.failing_since,
        previous_secret_expires_at=endpoint.previous_secret_expires_at)


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> WebhookEndpointSecret:
    return WebhookEndpointSecret(**read(endpoint).model_dump(), secret=secret)


def _require_owner_role(actor: Principal) -> None:
    if actor.role not in (Role.operator, Role.merchant):
        raise Forbidden("webhook endpoints are the operator's and the merchant's keys' "
                        "(this key's role may not use them)")


def create_endpoint(session: Session, *, actor: Principal,
                    data: WebhookEndpointCreate) -> WebhookEndpointSecret:
    _require_owner_role(actor)
    if actor.role == Role.merchant:
        if data.merchant_id is not None and data.merchant_id != actor.merchant_id:
            raise Forbidden("a merchant key registers endpoints for its own merchant; "
                            "leave merchant_id out")
        merchant_id = actor.merchant_id
    else:
        merchant_id = data.merchant_id
        if merchant_id is not None and session.get(Merchant, merchant_id) is None:
            raise WebhookEndpointNotFound("no such merchant", field="merchant_id")
    settings = get_settings()
    check_target(data.url, allow_private=settings.webhook_allow_private_targets)
    events = _check_events(data.events)
    secret = new_secret()
    now = utcnow()
    endpoint = WebhookEndpoint(id=uuid.uuid4(), merchant_id=merchant_id, url=data.url,
                               event_types=events, description=data.description,
                               secret_enc=_seal(secret), created_at=now, updated_at=now)
    session.add(endpoint)
    session.flush()
    return _with_secret(endpoint, secret)


def _endpoint(session: Session, actor: Principal, endpoint_id: uuid.UUID,
              *, lock: bool = False) -> WebhookEndpoint:
    statement = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if lock:
        statement = statement.with_for_update()
    endpoint = session.scalar(statement)
    # Another tenant's endpoint is not found, whatever the key's role; the role is asked
    # of the owner's own keys only.
    if endpoint is None or not actor.holds(endpoint.merchant_id):
        raise WebhookEndpointNotFound("no such webhook endpoint")
    _require_owner_role(actor)
    return endpoint


def get_endpoint(session: Session, *, actor: Principal,
                 endpoint_id: uuid.UUID) -> WebhookEndpointRead:
    return read(_endpoint(session, actor, endpoint_id))


def owned_endpoint(session: Session, *, actor: Principal,
                   endpoint_id: uuid.UUID) -> WebhookEndpoint:
    """The endpoint, when the caller may see it (else 404 / 403 as for every endpoint
    route)."""
    return _endpoint(session, actor, endpoint_id)


def list_endpoints(session: Session, *, actor: Principal) -> list[WebhookEndpointRead]:
    _require_owner_role(actor)
    statement = select(WebhookEndpoint).order_by(WebhookEndpoint.created_at,
                                                 WebhookEndpoint.id)
    if actor.role != Role.operator:
        statement = statement.where(WebhookEndpoint.merchant_id == actor.merchant_id)
    return [read(endpoint) for endpoint in session.scalars(statement)]


def update_endpoint(session: Session, *, actor: Principal, endpoint_id: uuid.UUID,
                    data: WebhookEndpointUpdate) -> WebhookEndpointRead:
    endpoint = _endpoint(session, actor, endpoint_id, lock=True)
    now = utcnow()
    if data.url is not None:
        check_target(data.url, allow_private=get_settings().webhook_allow_private_targets)
        endpoint.url = data.url
    if data.events is not None:
        endpoint.event_types = _check_events(data.events)
    if "description" in data.model_fields_set:
        endpoint.description = data.description
    if data.enabled is True and endpoint.disabled_at is not None:
        endpoint.disabled_at = endpoint.disabled_reason = None
        endpoint.failing_since = None
    elif data.enabled is False and endpoint.disabled_at is None:
        endpoint.disabled_at, endpoint.disabled_reason = now, "by_request"
    endpoint.updated_at = now
    session.flush()
    return read(endpoint)


def rotate_secret(session: Session, *, actor: Principal,
                  endpoint_id: uuid.UUID) -> WebhookEndpointSecret:
    """A new secret; the one it replaces keeps signing beside it for
    ``PATRON_WEBHOOK_ROTATION_HOURS`` so that a receiver can switch without a gap."""
    endpoint = _endpoint(session, actor, endpoint_id, lock=True)
    now = utcnow()
    secret = new_secret()
    endpoint.previous_secret_enc = endpoint.secret_enc
    endpoint.previous_secret_expires_at = now + timedelta(
        hours=get_settings().webhook_rotation_hours)
    endpoint.secret_enc = _seal(secret)
    endpoint.updated_at = now
    session.flush()
    return _with_secret(endpoint, secret)
