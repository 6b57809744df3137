"""Phone numbers in any common national or international format → E.164."""

from __future__ import annotations

import phonenumbers


class PhoneFormatError(ValueError):
    pass


def normalise_phone(text: str, default_region: str) -> str:
    candidate = text.strip()
    # "00" international prefix, common in Europe and Asia: treat as "+".
    if candidate.startswith("00"):
        candidate = "+" + candidate[2:]
    try:
        parsed = phonenumbers.parse(candidate, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise PhoneFormatError("not a phone number") from exc
    if not phonenumbers.is_possible_number(parsed) or not phonenumbers.is_valid_number(parsed):
        raise PhoneFormatError("not a valid phone number for its country")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalise_card_uid(text: str) -> str:
    """Card UIDs arrive as hex with or without separators and in either case."""
    uid = "".join(ch for ch in text if ch not in " :-").upper()
    if not 4 <= len(uid) <= 40 or any(ch not in "0123456789ABCDEF" for ch in uid):
        raise ValueError("a card UID is 4 to 40 hexadecimal characters")
    return uid
