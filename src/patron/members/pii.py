"""Decrypting and masking a member's phone and e-mail (stored as AES-GCM ciphertext)."""

from __future__ import annotations

from patron.config import get_settings
from patron.kit.crypto import decrypt
from patron.members.models import Member

PHONE = "member.phone"
EMAIL = "member.email"


def mask_phone(e164: str) -> str:
    return e164[:3] + "*" * (len(e164) - 5) + e164[-2:]


def mask_email(email: str) -> str:
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def decrypt_phone(member: Member) -> str | None:
    if member.phone_enc is None:
        return None
    return decrypt(get_settings().encryption_key, member.phone_enc, context=PHONE)


def decrypt_email(member: Member) -> str | None:
    if member.email_enc is None:
        return None
    return decrypt(get_settings().encryption_key, member.email_enc, context=EMAIL)
