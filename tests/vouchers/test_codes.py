"""Voucher code formats (patron.vouchers.codes): pure, no database."""

from __future__ import annotations

import itertools
import re

import pytest
from bench import codes as bench_codes
from hypothesis import given
from hypothesis import strategies as st
from stdnum.iso7064 import mod_97_10

from patron.vouchers import codes
from patron.vouchers.codes import (
    BARCODE_LENGTH,
    BATCH_SIZE,
    CHECK_SYMBOLS,
    CODE_BITS,
    CODE_LENGTH,
    MAX_BARREN_ROUNDS,
    CodeCheckError,
    CodeFormatError,
    ParsedCode,
    barcode_number,
    check_char,
    code_value,
    display,
    encode_value,
    generate_code,
    generate_codes,
    parse_any,
    parse_code,
)

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CHECK_ONLY = "*~$=U"
CANONICAL = re.compile(r"[0-9A-HJKMNP-TV-Z]{13}")
DISPLAYED = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}"
                       r"-[0-9A-HJKMNP-TV-Z][0-9A-HJKMNP-TV-Z*~$=U]")
# Python reads base 32 with the digits 0-9a-v: an independent decoder for Crockford's.
TO_PYTHON_BASE32 = str.maketrans(ALPHABET, "0123456789abcdefghijklmnopqrstuv")

values = st.integers(min_value=0, max_value=2**CODE_BITS - 1)
merchant_numbers = st.integers(min_value=0, max_value=99_999)


def reference_value(code: str) -> int:
    return int(code.translate(TO_PYTHON_BASE32), 32)


def reference_check(code: str) -> str:
    return CHECK_SYMBOLS[reference_value(code) % 37]


def sample_codes() -> list[str]:
    """Codes with every kind of check symbol: digits, letters and each check-only one."""
    samples = [0, 1234, 2**CODE_BITS - 1, 2**64, 987_654_321_987_654_321]
    samples += [code_value(code) for code in ("7K3QDRX2M9T4W", "ABCDEFGHJKMNP",
                                               "Z1Y2X3W4V5T6S", "FEDCBA9876543")]
    # value % 37 == r gives check symbol CHECK_SYMBOLS[r]: the five check-only ones.
    samples += [37 * 99_999_999_999 + r for r in range(32, 37)]
    found = [encode_value(value) for value in samples]
    assert {check_char(code) for code in found} >= set(CHECK_ONLY)
    return found


# --- the canonical form and the check symbol -----------------------------------------

def test_known_values() -> None:
    # Crockford's own example: 1234 is "16J", check symbol "D".
    assert encode_value(1234) == "000000000016J"
    assert check_char("000000000016J") == "D"
    assert encode_value(0) == "0000000000000"
    assert check_char("0000000000000") == "0"
    assert encode_value(2**CODE_BITS - 1) == "ZZZZZZZZZZZZZ"
    assert check_char("ZZZZZZZZZZZZZ") == CHECK_SYMBOLS[(2**CODE_BITS - 1) % 37] == "Q"
    assert display("ZZZZZZZZZZZZZ") == "ZZZZ-ZZZZ-ZZZZ-ZQ"
    assert display("000000000016J") == "0000-0000-0016-JD"
    assert code_value("000000000016J") == 1234
    assert encode_value(32**12) == "1000000000000"


@given(values)
def test_value_round_trip(value: int) -> None:
    code = encode_value(value)
    assert CANONICAL.fullmatch(code)
    assert code_value(code) == reference_value(code) == value
    assert check_char(code) == reference_check(code)
    shown = display(code)
    assert DISPLAYED.fullmatch(shown)
    assert shown.replace("-", "") == code + check_char(code)
    assert parse_code(shown) == code
    assert parse_any(shown) == ParsedCode(code=code, merchant_number=None)


def _typed(draw: st.DrawFn, shown: str) -> str:
    """``shown`` as a person might type it: any case, confusables, hyphens and spaces."""
    typed = []
    for char in shown:
        if char == "-":
            typed.append(draw(st.sampled_from(["-", " ", "", "  ", " - "])))
            continue
        choices = {"1": "1IiLl", "0": "0Oo"}.get(char, char + char.lower())
        typed.append(draw(st.sampled_from(choices)))
        typed.append(draw(st.sampled_from(["", "", "", " ", "-", "\t"])))
    return draw(st.sampled_from(["", " ", "\n"])) + "".join(typed)


@given(st.data(), values)
def test_case_confusables_and_separators_are_accepted(data: st.DataObject, value: int) -> None:
    code = encode_value(value)
    typed = _typed(data.draw, display(code))
    assert parse_code(typed) == code


def test_confusables_and_lower_case() -> None:
    code = "1O0L1ABCDEFGH".replace("O", "0").replace("L", "1")
    check = check_char(code)
    assert parse_code("iooL-iabc-defg-h" + check.lower()) == code
    assert parse_code(f" {code.lower()}{check} ") == code
    assert parse_code(f"{code[:7]} {code[7:]}{check}") == code


def test_full_width_input_from_a_japanese_input_method() -> None:
    code = encode_value(987_654_321_987_654_321)
    shown = display(code)
    full_width = "".join(chr(ord(char) + 0xFEE0) for char in shown)
    assert full_width != shown
    assert parse_code(full_width) == code
    assert parse_code(full_width.replace("\uff0d", "\u3000")) == code  # ideographic space


@pytest.mark.parametrize("code", sample_codes())
def test_every_single_substitution_is_refused(code: str) -> None:
    full = code + check_char(code)
    refused = 0
    for position in range(len(full)):
        others = (ALPHABET if position < CODE_LENGTH else CHECK_SYMBOLS).replace(
            full[position], "")
        for symbol in others:
            wrong = full[:position] + symbol + full[position + 1:]
            with pytest.raises(CodeCheckError, match="check character"):
                parse_code(wrong)
            refused += 1
    assert refused == CODE_LENGTH * 31 + 36


@pytest.mark.parametrize("code", sample_codes()[1:])  # not 0000000000000 (0): no pair
def test_every_adjacent_transposition_is_refused(code: str) -> None:
    full = code + check_char(code)
    refused = 0
    for position in range(len(full) - 1):
        first, second = full[position], full[position + 1]
        if first == second:
            continue
        swapped = full[:position] + second + first + full[position + 2:]
        if second in CHECK_ONLY:
            # The check-only symbol moved into the code: refused for its place.
            with pytest.raises(CodeFormatError, match="can only be the check character"):
                parse_code(swapped)
        else:
            with pytest.raises(CodeCheckError):
                parse_code(swapped)
        refused += 1
    assert refused == sum(a != b for a, b in itertools.pairwise(full))


# --- errors ------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("", "has 14 characters .* not 0$"),
    ("ABC", "has 14 characters .* or 27 digits, not 3$"),
    ("7K3Q-DRX2-M9T4-W", "not 13$"),  # the check character left out
    ("7K3Q-DRX2-M9T4-WCC", "not 15$"),
    ("1" * 26, "or 27 digits, not 26$"),
    ("7K3Q-DRX2-M9T4-W#", r"character '#' at position 17 is not part of a voucher code"),
    ("7K3Q.DRX2.M9T4.WC", r"character '\.' at position 5 is not part of a voucher code"),
    ("7K3Q-DRX2-M9T4-WÄ", r"character 'Ä' at position 17 is not part"),
    ("7K3u-DRX2-M9T4-WC", r"character 'u' at position 4 can only be the check character"),
    ("*K3Q-DRX2-M9T4-WC", r"character '\*' at position 1 can only be the check character"),
    ("7K3Q-DRX2-M9T4-W" + " " * 90, "at most 100 characters long .* not 106$"),
])
def test_format_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CodeFormatError, match=message):
        parse_code(text)


def test_a_wrong_check_character_is_a_check_error() -> None:
    code = encode_value(1234)
    wrong = "E" if check_char(code) != "E" else "F"
    with pytest.raises(CodeCheckError, match=r"^the check character of the code does not "
                                             r"match: it is mistyped$"):
        parse_code(code + wrong)
    # The two kinds are told apart and both are ValueErrors.
    assert not issubclass(CodeCheckError, CodeFormatError)
    assert not issubclass(CodeFormatError, CodeCheckError)
    assert issubclass(CodeCheckError, ValueError) and issubclass(CodeFormatError, ValueError)


@pytest.mark.parametrize("function", [check_char, display, code_value,
                                      lambda code: barcode_number(1, code)])
def test_functions_taking_a_canonical_code_refuse_anything_else(function) -> None:
    with pytest.raises(CodeFormatError, match="character 'k' at position 2 is not a "
                                              "canonical code character"):
        function("7k3QDRX2M9T4W")
    with pytest.raises(CodeFormatError, match="character 'U' at position 13"):
        function("7K3QDRX2M9T4U")
    with pytest.raises(CodeFormatError, match="has 13 characters, not 14"):
        function("7K3QDRX2M9T4WC")
    with pytest.raises(CodeFormatError, match="has 13 characters, not 16"):
        function("7K3Q-DRX2-M9T4-W")


def test_values_out_of_range_are_refused() -> None:
    for value in (-1, 2**CODE_BITS):
        with pytest.raises(CodeFormatError, match=r"0 to 2\*\*65 - 1"):
            encode_value(value)
    for merchant_number in (-1, 100_000):
        with pytest.raises(CodeFormatError, match="merchant number has 5 digits"):
            barcode_number(merchant_number, encode_value(1))


@given(st.text(max_size=40))
def test_any_text_is_a_code_or_one_of_the_two_errors(text: str) -> None:
    try:
        parsed = parse_any(text)
    except (CodeFormatError, CodeCheckError):
        return
    assert CANONICAL.fullmatch(parsed.code)


@given(st.text(alphabet=ALPHABET + CHECK_SYMBOLS + "ilo- ", max_size=30))
def test_text_of_code_symbols_is_a_code_or_one_of_the_two_errors(text: str) -> None:
    try:
        parsed = parse_any(text)
    except (CodeFormatError, CodeCheckError):
        return
    assert parsed.merchant_number is None or len(text.replace(" ", "").replace("-", "")) == 27
    assert CANONICAL.fullmatch(parsed.code)


# --- numeric barcode form ------------------------------------------------------------

@given(merchant_numbers, values)
def test_numeric_round_trip(merchant_number: int, value: int) -> None:
    code = encode_value(value)
    number = barcode_number(merchant_number, code)
    assert len(number) == BARCODE_LENGTH and number.isdigit()
    assert number[:5] == f"{merchant_number:05d}"
    assert number[5:25] == f"{value:020d}"
    assert number == number[:25] + mod_97_10.calc_check_digits(number[:25])
    assert mod_97_10.is_valid(number)
    assert parse_any(number) == ParsedCode(code=code, merchant_number=merchant_number)
    assert parse_code(number) == code
    assert parse_code(f"{number[:5]} {number[5:15]}-{number[15:]}") == code


def test_coalition_codes_use_merchant_number_zero() -> None:
    code = encode_value(2**64 + 5)
    number = barcode_number(codes.COALITION_MERCHANT_NUMBER, code)
    assert number.startswith("00000")
    assert parse_any(number) == ParsedCode(code=code, merchant_number=0)


def _sample_numbers() -> list[str]:
    return [barcode_number(merchant, encode_value(value)) for merchant, value in
            [(10001, 1234), (0, 2**CODE_BITS - 1), (99999, 2**64 + 987_654_321),
             (54321, 12_345_678_901_234_567_890)]]


@pytest.mark.parametrize("number", _sample_numbers())
def test_every_single_digit_error_in_the_number_is_refused(number: str) -> None:
    refused = 0
    for position in range(len(number)):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            wrong = number[:position] + digit + number[position + 1:]
            with pytest.raises(CodeCheckError, match=r"^the check digits of the number do "
                                                     r"not match: it is mistyped$"):
                parse_any(wrong)
            refused += 1
    assert refused == BARCODE_LENGTH * 9


@pytest.mark.parametrize("number", _sample_numbers())
def test_every_adjacent_transposition_in_the_number_is_refused(number: str) -> None:
    refused = 0
    for position in range(len(number) - 1):
        first, second = number[position], number[position + 1]
        if first == second:
            continue
        with pytest.raises(CodeCheckError):
            parse_any(number[:position] + second + first + number[position + 2:])
        refused += 1
    assert refused == sum(a != b for a, b in itertools.pairwise(number))


def test_a_coupon_number_beyond_65_bits_is_refused() -> None:
    payload = f"{10001:05d}{2**CODE_BITS:020d}"
    number = payload + mod_97_10.calc_check_digits(payload)
    with pytest.raises(CodeFormatError, match="coupon number .* is out of range: at most "
                                              f"{2**CODE_BITS - 1}$"):
        parse_any(number)
    payload = f"{10001:05d}{'9' * 20}"
    with pytest.raises(CodeFormatError, match="out of range"):
        parse_any(payload + mod_97_10.calc_check_digits(payload))


# --- generation ----------------------------------------------------------------------

def test_generate_code() -> None:
    generated = [generate_code() for _ in range(2_000)]
    assert all(CANONICAL.fullmatch(code) for code in generated)
    assert len(set(generated)) == len(generated)
    assert any(code_value(code) >= 2**64 for code in generated)


def test_a_hundred_thousand_generated_codes_are_distinct_and_use_65_bits() -> None:
    generated = generate_codes(100_000)
    assert len(generated) == 100_000
    assert len(set(generated)) == 100_000
    assert all(CANONICAL.fullmatch(code) for code in generated)
    numbers = [code_value(code) for code in generated]
    assert max(numbers) < 2**CODE_BITS
    assert max(numbers).bit_length() == CODE_BITS
    # Each of the 65 bits is set in about half the codes (standard deviation 158 codes,
    # so 48,500..51,500 is more than nine of them): nothing is stuck, the top bit included.
    for bit in range(CODE_BITS):
        set_count = sum((number >> bit) & 1 for number in numbers)
        assert 48_500 <= set_count <= 51_500, (bit, set_count)
    # The first symbol carries only bit 64 and bits 63-60: its value is spread over 0..31.
    assert {code[0] for code in generated} == set(ALPHABET)


def test_generate_codes_counts() -> None:
    assert generate_codes(0) == []
    assert len(generate_codes(1)) == 1
    with pytest.raises(ValueError, match="cannot be negative"):
        generate_codes(-1)


def _is_taken(code: str) -> bool:
    # About half of all codes: those ending in one of the first 16 symbols.
    return code[-1] in ALPHABET[:16]


def test_existing_codes_are_dropped_and_replaced() -> None:
    offered: list[list[str]] = []

    def existing(batch: list[str]) -> set[str]:
        offered.append(list(batch))
        return {code for code in batch if _is_taken(code)}

    count = BATCH_SIZE * 2 + 7
    generated = generate_codes(count, existing)
    assert len(generated) == count == len(set(generated))
    every_offer = [code for batch in offered for code in batch]
    assert len(every_offer) == len(set(every_offer)), "a code was offered twice"
    assert all(len(batch) <= BATCH_SIZE for batch in offered)
    assert not any(_is_taken(code) for code in generated)
    assert sum(_is_taken(code) for code in every_offer) > BATCH_SIZE
    # About half of each batch kept: at least four rounds of asking.
    assert len(offered) >= 4
    assert set(generated) == {code for code in every_offer if not _is_taken(code)}


def _from_bytes(raw: bytes) -> str:
    """The code bulk generation makes of 9 random bytes: bit 0 of the first, then 64 bits."""
    return encode_value(((raw[0] & 1) << 64) | int.from_bytes(raw[1:], "big"))


def test_bulk_encoding_takes_65_bits_of_9_random_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [bytes(range(1, 10)), b"\xff" * 9, b"\xfe" + b"\xff" * 8, bytes(9),
              b"\x01" + bytes(8), bytes(8) + b"\x1f", b"\x80" + b"\x12\x34" * 4]
    monkeypatch.setattr(codes, "token_bytes", lambda size: b"".join(blocks))
    assert codes._random_codes(len(blocks)) == [_from_bytes(raw) for raw in blocks]
    assert _from_bytes(b"\xff" * 9) == "ZZZZZZZZZZZZZ"
    assert _from_bytes(b"\xfe" + b"\xff" * 8) == "FZZZZZZZZZZZZ"
    assert _from_bytes(b"\x01" + bytes(8)) == "G000000000000"


def test_a_taken_code_drawn_again_is_not_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    block = bytes(range(1, 10))
    taken = _from_bytes(block)
    real = codes.token_bytes
    calls: list[int] = []

    def repeating(size: int) -> bytes:
        calls.append(size)
        # First round: the taken code five times over; afterwards real randomness.
        return block * (size // len(block)) if len(calls) == 1 else real(size)

    offered: list[list[str]] = []

    def existing(batch: list[str]) -> set[str]:
        offered.append(list(batch))
        return {taken} & set(batch)

    monkeypatch.setattr(codes, "token_bytes", repeating)
    generated = generate_codes(5, existing)
    assert len(generated) == 5 == len(set(generated))
    assert taken not in generated
    assert offered[0] == [taken]
    assert calls[:2] == [5 * 9, 5 * 9]


def test_duplicates_from_the_random_source_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    real = codes.token_bytes
    calls: list[int] = []

    def repeating(size: int) -> bytes:
        calls.append(size)
        return bytes(range(9)) * (size // 9) if len(calls) == 1 else real(size)

    monkeypatch.setattr(codes, "token_bytes", repeating)
    generated = generate_codes(1_000)
    assert len(generated) == 1_000 == len(set(generated))
    assert len(calls) == 2
    assert calls[1] == 999 * 9  # the first round gave one code a thousand times


def test_an_existing_callback_that_takes_everything_is_reported() -> None:
    offered: list[int] = []

    def everything(batch: list[str]) -> set[str]:
        offered.append(len(batch))
        return set(batch)

    with pytest.raises(RuntimeError, match=f"every new code as taken {MAX_BARREN_ROUNDS} "
                                           "times in a row"):
        generate_codes(3, everything)
    assert offered == [3] * MAX_BARREN_ROUNDS


# --- the benchmark's checks (bench/codes.py; its database part: tests/benchmarks) ----

def test_benchmark_checks_the_codes_it_times() -> None:
    assert len(bench_codes.time_generation(1_000, runs=2)) == 2
    good = generate_codes(3)
    bench_codes.check_codes(good, 3)
    with pytest.raises(bench_codes.BenchError, match="asked for 4 codes, got 3"):
        bench_codes.check_codes(good, 4)
    with pytest.raises(bench_codes.BenchError, match="1 codes repeated"):
        bench_codes.check_codes([*good[:2], good[0]], 3)
    with pytest.raises(bench_codes.BenchError, match="1 malformed codes"):
        bench_codes.check_codes([*good[:2], good[2].lower()], 3)
