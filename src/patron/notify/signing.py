"""Standard Webhooks 1.0 signatures: pure functions, no session, no network.

A secret is ``whsec_`` + base64 of 32 random bytes. A message is signed over
``{webhook-id}.{webhook-timestamp}.{body}`` with HMAC-SHA256 keyed by the secret's
bytes; the ``webhook-signature`` header holds ``v1,<base64 digest>``, space-separated
when several secrets sign (a rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format's prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secrets_: Sequence[str], *, message_id: str, timestamp: int,
            body: bytes) -> dict[str, str]:
    """The three headers of one attempt, signed by every secret given (current first)."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret, message_id=message_id, timestamp=timestamp, body=body)
            for secret in secrets_),
    }
