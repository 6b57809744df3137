"""Referral codes: ten Crockford base-32 symbols (50 random bits), shown as two groups of
five and read back case- and confusable-insensitively (O as 0, I and L as 1)."""

from __future__ import annotations

import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
LENGTH = 10
GROUP = 5
_CONFUSABLE = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = frozenset(" -")


class ReferralCodeFormatError(ValueError):
    """Text that cannot be a referral code; says what is wrong."""


def new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def display(code: str) -> str:
    return f"{code[:GROUP]}-{code[GROUP:]}"


def parse(text: str) -> str:
    """The canonical code of text as typed: spaces and hyphens left out, upper case,
    confusable letters read as the digits they look like."""
    cleaned = "".join(char for char in text if char not in _SEPARATORS)
    cleaned = cleaned.upper().translate(_CONFUSABLE)
    if len(cleaned) != LENGTH:
        raise ReferralCodeFormatError(
            f"a referral code has {LENGTH} characters (hyphens and spaces do not count), "
            f"not {len(cleaned)}")
    for position, char in enumerate(cleaned, start=1):
        if char not in ALPHABET:
            raise ReferralCodeFormatError(
                f"character {char!r} at position {position} is not part of a referral code")
    return cleaned
