"""Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP): what authenticator apps
compute from a shared secret. Pure functions: no session, no clock of their own."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote

STEP_SECONDS = 30
DIGITS = 6
# A code of the previous or the next 30 s window passes too: phones' clocks drift.
DRIFT_STEPS = 1


def new_secret() -> str:
    """160 random bits in base32, as authenticator apps take them."""
    return base64.b32encode(secrets.token_bytes(20)).decode()


def valid_secret(secret: str) -> bool:
    """Whether ``secret`` is base32 of at least 80 bits (what an authenticator takes)."""
    try:
        return len(base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))) >= 10
    except (ValueError, TypeError):
        return False


def hotp(secret: str, counter: int) -> str:
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{number % 10 ** DIGITS:0{DIGITS}d}"


def totp(secret: str, unix_time: float) -> str:
    return hotp(secret, int(unix_time // STEP_SECONDS))


def matching_step(secret: str, code: str, unix_time: float) -> int | None:
    """The time step whose code ``code`` is, within the drift allowed; None: no match.
    The caller refuses a step it has already accepted (a code works once)."""
    if len(code) != DIGITS or not code.isdigit():
        return None
    now = int(unix_time // STEP_SECONDS)
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(secret, step), code):
            return step
    return None


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` address an authenticator app reads from a QR code."""
    label = quote(f"{issuer}:{account}")
    return (f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer)}"
            f"&digits={DIGITS}&period={STEP_SECONDS}")
