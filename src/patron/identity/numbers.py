"""Member and coupon numbers: 5-digit merchant number + serial + ISO 7064 MOD 97-10.

A member number is 14 digits: merchant (5) + customer (7) + check (2). MOD 97-10 catches
every single-digit error and every adjacent transposition, which is why it was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

MERCHANT_DIGITS = 5
CUSTOMER_DIGITS = 7
MEMBER_NUMBER_LENGTH = MERCHANT_DIGITS + CUSTOMER_DIGITS + 2
MAX_CUSTOMER_NO = 10**CUSTOMER_DIGITS - 1


class NumberFormatError(ValueError):
    """The text is not shaped like the number (length, characters)."""


class CheckDigitError(ValueError):
    """The text is shaped right but its check digits do not match."""


def mod97_remainder(digits: str) -> int:
    remainder = 0
    for char in digits:
        remainder = (remainder * 10 + (ord(char) - 48)) % 97
    return remainder


def check_digits(payload: str) -> str:
    """The two ISO 7064 MOD 97-10 check digits (02..98) that make ``payload + cd`` ≡ 1 (mod 97)."""
    if not payload.isdigit():
        raise NumberFormatError("check digits are computed over digits only")
    return f"{98 - mod97_remainder(payload + '00'):02d}"


def is_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 2 and mod97_remainder(number) == 1


@dataclass(frozen=True, slots=True)
class MemberNumber:
    merchant_number: int
    customer_no: int

    def __str__(self) -> str:
        payload = f"{self.merchant_number:05d}{self.customer_no:07d}"
        return payload + check_digits(payload)


def format_member_number(merchant_number: int, customer_no: int) -> str:
    if not 0 <= merchant_number <= 99999:
        raise NumberFormatError("merchant number must have 5 digits")
    if not 1 <= customer_no <= MAX_CUSTOMER_NO:
        raise NumberFormatError("customer number must have 7 digits")
    return str(MemberNumber(merchant_number, customer_no))


def clean(text: str) -> str:
    """Remove the spaces and dashes people and scanners put inside numbers."""
    return "".join(ch for ch in text if ch not in " -\t")


def parse_member_number(text: str) -> MemberNumber:
    number = clean(text)
    if len(number) != MEMBER_NUMBER_LENGTH or not number.isdigit():
        raise NumberFormatError(f"a member number has {MEMBER_NUMBER_LENGTH} digits")
    if not is_valid(number):
        raise CheckDigitError("the member number's check digits do not match")
    return MemberNumber(int(number[:MERCHANT_DIGITS]),
                        int(number[MERCHANT_DIGITS:MERCHANT_DIGITS + CUSTOMER_DIGITS]))
