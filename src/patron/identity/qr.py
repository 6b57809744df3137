"""Rotating QR tokens: a keyed HMAC over the member number and a 30-second time step.

Token text: ``<member number>.<step>.<16 base32 chars of HMAC-SHA256>``, all in the QR
alphanumeric alphabet so the code stays small. A token is accepted for its own step and
one step either side (clock skew between phone and server); anything older is refused,
so a screenshot stops working within about a minute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from patron.identity.numbers import NumberFormatError

MAC_CHARS = 16
ALLOWED_SKEW_STEPS = 1


class TokenFormatError(ValueError):
    pass


class TokenSignatureError(ValueError):
    pass


class TokenExpiredError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class QrToken:
    member_number: str
    step: int


def time_step(at: datetime, step_seconds: int) -> int:
    return int(at.timestamp()) // step_seconds


def _mac(key: bytes, member_number: str, step: int) -> str:
    digest = hmac.new(key, f"qr\x00{member_number}\x00{step}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode()[:MAC_CHARS]


def make_token(key: bytes, member_number: str, step: int) -> str:
    return f"{member_number}.{step}.{_mac(key, member_number, step)}"


def verify_token(key: bytes, token: str, current_step: int) -> QrToken:
    parts = token.strip().upper().split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        raise TokenFormatError("not a Patron QR token")
    member_number, step_text, mac = parts
    if len(step_text) > 12:
        raise TokenFormatError("not a Patron QR token")
    step = int(step_text)
    if not hmac.compare_digest(mac, _mac(key, member_number, step)):
        raise TokenSignatureError("the QR token's signature does not match")
    if abs(current_step - step) > ALLOWED_SKEW_STEPS:
        raise TokenExpiredError("the QR token has expired; show the live code from the app")
    return QrToken(member_number, step)


__all__ = [
    "NumberFormatError",
    "QrToken",
    "TokenExpiredError",
    "TokenFormatError",
    "TokenSignatureError",
    "make_token",
    "time_step",
    "verify_token",
]
