"""Voucher code formats: canonical, display (with check character) and numeric barcode.

A code's value is a random integer of 65 bits (``secrets``). Three forms of it:

- **canonical**: the value in Crockford base32, exactly 13 symbols, zero-padded, upper
  case, no check character. What the database stores (unique).
- **display**: canonical + Crockford's mod-37 check symbol, in groups of four for
  people: ``7K3Q-DRX2-M9T4-WC``. Typed back in any case, with hyphens and spaces anywhere,
  ``I``/``L`` read as ``1`` and ``O`` as ``0``.
- **numeric barcode** (PRODUCT.md part 4): 5-digit merchant number + 20-digit coupon
  number (the value in decimal) + 2 check digits ISO 7064 MOD 97-10, 27 digits, the
  scheme of member numbers (``patron.identity.numbers``). Coalition codes use merchant
  number 0.

The mod-37 check catches every single-symbol substitution and every adjacent
transposition: 37 is prime and larger than the alphabet, so a change of one symbol
(``d * 32**i``, ``0 < |d| < 32``) or a swap of neighbours (``d * 31 * 32**i``) is never a
multiple of 37.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from secrets import randbits, token_bytes

from patron.identity.numbers import MERCHANT_DIGITS, check_digits, mod97_remainder

CODE_BITS = 65
CODE_LENGTH = 13
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_SYMBOLS = ALPHABET + "*~$=U"
CHECK_MODULUS = len(CHECK_SYMBOLS)  # 37
DISPLAY_LENGTH = CODE_LENGTH + 1
DISPLAY_GROUP = 4
COUPON_DIGITS = 20
BARCODE_LENGTH = MERCHANT_DIGITS + COUPON_DIGITS + 2  # 27
MAX_VALUE = 2**CODE_BITS - 1
MAX_MERCHANT_NUMBER = 10**MERCHANT_DIGITS - 1
COALITION_MERCHANT_NUMBER = 0
# Longest text looked at: a display code with generous spacing fits many times over.
MAX_INPUT_LENGTH = 100
# generate_codes hands ``existing`` at most this many codes at a time: a look-up of up to
# 1,000 codes by ``code = ANY(...)`` stays on the unique index (PostgreSQL chose a full
# scan for 10,000 in a table of a million codes).
BATCH_SIZE = 1_000
# Rounds in a row in which ``existing`` took every new code: the callback is wrong.
MAX_BARREN_ROUNDS = 20

_SEPARATORS = frozenset("-")
_VALUES = {symbol: index for index, symbol in enumerate(ALPHABET)}


def _input_symbols() -> dict[str, str]:
    """What a person may type for each symbol: either case, and the confusables."""
    symbols: dict[str, str] = {}
    for symbol in CHECK_SYMBOLS:
        symbols[symbol] = symbol
        symbols[symbol.lower()] = symbol
    for typed, meant in (("I", "1"), ("L", "1"), ("O", "0")):
        symbols[typed] = meant
        symbols[typed.lower()] = meant
    return symbols


_INPUT_SYMBOLS = _input_symbols()

# Bulk generation: 9 random bytes per code (the lowest bit of the first and the 64 bits of
# the other eight), split into 5-bit symbols with NumPy (imported there: the server's start
# does not pay for it).
_BYTES_PER_CODE = 9


class CodeFormatError(ValueError):
    """The text is not shaped like a voucher code (length, a character at a position)."""


class CodeCheckError(ValueError):
    """The text is shaped like a code but its check character or digits do not match."""


@dataclass(frozen=True)
class ParsedCode:
    """A code as read from input; ``merchant_number`` only when it came in numeric form."""

    code: str
    merchant_number: int | None


# --- canonical form -------------------------------------------------------------------

def encode_value(value: int) -> str:
    """The canonical 13-symbol code of a value 0 <= value < 2**65."""
    if not 0 <= value <= MAX_VALUE:
        raise CodeFormatError(f"a code's value is 0 to 2**{CODE_BITS} - 1")
    symbols = []
    for _ in range(CODE_LENGTH):
        value, digit = divmod(value, 32)
        symbols.append(ALPHABET[digit])
    return "".join(reversed(symbols))


def code_value(code: str) -> int:
    """The value of a canonical code (13 symbols, upper case, no check character)."""
    if len(code) != CODE_LENGTH:
        raise CodeFormatError(
            f"a canonical code has {CODE_LENGTH} characters, not {len(code)}")
    value = 0
    for position, symbol in enumerate(code, start=1):
        digit = _VALUES.get(symbol)
        if digit is None:
            raise CodeFormatError(
                f"character {symbol!r} at position {position} is not a canonical code "
                f"character ({ALPHABET})")
        value = value * 32 + digit
    return value


def check_char(code: str) -> str:
    """Crockford's mod-37 check symbol of a canonical code's value."""
    return CHECK_SYMBOLS[code_value(code) % CHECK_MODULUS]


def display(code: str) -> str:
    """Canonical code + check symbol in groups of four: ``7K3Q-DRX2-M9T4-WC``."""
    full = code + check_char(code)
    return "-".join(full[start:start + DISPLAY_GROUP]
                    for start in range(0, len(full), DISPLAY_GROUP))


# --- numeric barcode form -------------------------------------------------------------

def barcode_number(merchant_number: int, code: str) -> str:
    """27 digits: merchant number (5), the code's value (20), MOD 97-10 check digits (2)."""
    if not 0 <= merchant_number <= MAX_MERCHANT_NUMBER:
        raise CodeFormatError(f"a merchant number has {MERCHANT_DIGITS} digits "
                              f"(0 to {MAX_MERCHANT_NUMBER})")
    payload = f"{merchant_number:0{MERCHANT_DIGITS}d}{code_value(code):0{COUPON_DIGITS}d}"
    return payload + check_digits(payload)


def _parse_barcode(number: str) -> ParsedCode:
    if mod97_remainder(number) != 1:
        raise CodeCheckError("the check digits of the number do not match: it is mistyped")
    value = int(number[MERCHANT_DIGITS:MERCHANT_DIGITS + COUPON_DIGITS])
    if value > MAX_VALUE:
        raise CodeFormatError(f"the coupon number (digits 6 to 25) is out of range: at most "
                              f"{MAX_VALUE}")
    return ParsedCode(code=encode_value(value),
                      merchant_number=int(number[:MERCHANT_DIGITS]))


# --- reading input --------------------------------------------------------------------

def parse_any(text: str) -> ParsedCode:
    """Read a code as typed or scanned: the display form (14 symbols after cleaning, the
    check symbol required) or the 27-digit numeric form.

    Text is NFKC-normalised first (full-width input). Raises ``CodeFormatError`` for text
    that is not shaped like a code (saying what is wrong: the length, or which character
    at which position, counting from 1 with spaces and hyphens) and
    ``CodeCheckError`` when the check symbol or digits do not match.
    """
    if len(text) > MAX_INPUT_LENGTH:
        raise CodeFormatError(f"a voucher code is at most {MAX_INPUT_LENGTH} characters long "
                              f"with its spaces and hyphens, not {len(text)}")
    # Full-width letters, digits and hyphens (a Japanese input method's) become ASCII.
    text = unicodedata.normalize("NFKC", text)
    symbols: list[str] = []
    positions: list[int] = []
    for position, char in enumerate(text, start=1):
        if char in _SEPARATORS or char.isspace():
            continue
        symbol = _INPUT_SYMBOLS.get(char)
        if symbol is None:
            raise CodeFormatError(
                f"character {char!r} at position {position} is not part of a voucher code")
        symbols.append(symbol)
        positions.append(position)
    cleaned = "".join(symbols)
    if len(cleaned) == BARCODE_LENGTH and cleaned.isdigit():
        return _parse_barcode(cleaned)
    if len(cleaned) != DISPLAY_LENGTH:
        raise CodeFormatError(
            f"a voucher code has {DISPLAY_LENGTH} characters ({CODE_LENGTH} and a check "
            f"character; hyphens and spaces do not count) or {BARCODE_LENGTH} digits, "
            f"not {len(cleaned)}")
    for symbol, position in zip(cleaned[:CODE_LENGTH], positions, strict=False):
        if symbol not in _VALUES:
            raise CodeFormatError(
                f"character {text[position - 1]!r} at position {position} can only be the "
                f"check character, the last one")
    code, check = cleaned[:CODE_LENGTH], cleaned[CODE_LENGTH]
    if check_char(code) != check:
        raise CodeCheckError("the check character of the code does not match: it is mistyped")
    return ParsedCode(code=code, merchant_number=None)


def parse_code(text: str) -> str:
    """The canonical code of what a person or scanner typed (either form)."""
    return parse_any(text).code


# --- generation -----------------------------------------------------------------------

def generate_code() -> str:
    """One new canonical code: 65 random bits from ``secrets``."""
    return encode_value(randbits(CODE_BITS))


def _random_codes(count: int) -> list[str]:
    """``count`` random canonical codes (not necessarily distinct), encoded in bulk."""
    import numpy as np

    raw = np.frombuffer(token_bytes(_BYTES_PER_CODE * count), dtype=np.uint8)
    raw = raw.reshape(count, _BYTES_PER_CODE)
    top = (raw[:, 0] & 1).astype(np.uint64)
    low = raw[:, 1:].copy().view(">u8").reshape(count).astype(np.uint64)
    symbols = np.empty((count, CODE_LENGTH), dtype=np.uint8)
    # The first symbol holds bit 64 and bits 63-60; each next one five bits lower.
    symbols[:, 0] = (top << np.uint64(4)) | (low >> np.uint64(60))
    for index in range(1, CODE_LENGTH):
        shift = np.uint64(5 * (CODE_LENGTH - 1 - index))
        symbols[:, index] = (low >> shift) & np.uint64(31)
    table = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)
    text = table[symbols].tobytes().decode("ascii")
    return [text[start:start + CODE_LENGTH]
            for start in range(0, len(text), CODE_LENGTH)]


def generate_codes(count: int,
                   existing: Callable[[list[str]], set[str]] | None = None) -> list[str]:
    """``count`` distinct new canonical codes.

    ``existing``, when given, is asked about each batch of new codes (at most
    ``BATCH_SIZE`` at a time) and returns those already taken (stored); they are dropped
    and more are generated until there are ``count``.
    """
    if count < 0:
        raise ValueError("the number of codes cannot be negative")
    chosen: dict[str, None] = {}
    barren_rounds = 0
    while len(chosen) < count:
        wanted = count - len(chosen)
        if existing is None:
            chosen.update(dict.fromkeys(_random_codes(wanted)))
            continue
        fresh = [code for code in dict.fromkeys(_random_codes(min(wanted, BATCH_SIZE)))
                 if code not in chosen]
        taken = existing(fresh) if fresh else set()
        before = len(chosen)
        chosen.update(dict.fromkeys(code for code in fresh if code not in taken))
        barren_rounds = 0 if len(chosen) > before else barren_rounds + 1
        if barren_rounds >= MAX_BARREN_ROUNDS:
            raise RuntimeError(f"existing() reported every new code as taken "
                               f"{MAX_BARREN_ROUNDS} times in a row")
    return list(chosen)

