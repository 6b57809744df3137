import pytest
from stdnum.iso7064 import mod_97_10

from patron.identity.numbers import (
    CheckDigitError,
    NumberFormatError,
    check_digits,
    format_member_number,
    is_valid,
    parse_member_number,
)


@pytest.mark.parametrize("merchant,customer", [(0, 1), (12345, 1), (99999, 9999999),
                                               (10001, 4242), (54321, 1234567)])
def test_check_digits_agree_with_python_stdnum(merchant, customer):
    number = format_member_number(merchant, customer)
    assert len(number) == 14
    payload = f"{merchant:05d}{customer:07d}"
    assert number == payload + mod_97_10.calc_check_digits(payload)
    assert mod_97_10.is_valid(number)
    assert parse_member_number(number).customer_no == customer


def test_check_digits_over_many_payloads_agree_with_stdnum():
    for value in range(0, 10**12, 7_919_999_999):
        payload = f"{value:012d}"
        assert check_digits(payload) == mod_97_10.calc_check_digits(payload)


def _valid_numbers():
    return [format_member_number(m, c) for m, c in [(12345, 1), (10001, 987654), (99999, 31)]]


@pytest.mark.parametrize("number", _valid_numbers())
def test_every_single_digit_error_is_refused(number):
    refused = 0
    for position in range(len(number)):
        for digit in "0123456789":
            if digit == number[position]:
                continue
            wrong = number[:position] + digit + number[position + 1:]
            assert not is_valid(wrong), wrong
            with pytest.raises(CheckDigitError):
                parse_member_number(wrong)
            refused += 1
    assert refused == 14 * 9


@pytest.mark.parametrize("number", _valid_numbers())
def test_every_adjacent_transposition_is_refused(number):
    refused = 0
    for position in range(len(number) - 1):
        a, b = number[position], number[position + 1]
        if a == b:
            continue
        swapped = number[:position] + b + a + number[position + 2:]
        with pytest.raises(CheckDigitError):
            parse_member_number(swapped)
        refused += 1
    assert refused > 0


@pytest.mark.parametrize("text", ["", "1234", "1234500000018x", "123450000001845", "abc"])
def test_malformed_numbers_are_format_errors(text):
    with pytest.raises(NumberFormatError):
        parse_member_number(text)


def test_spaces_and_dashes_are_ignored():
    number = format_member_number(12345, 1)
    spaced = f"{number[:5]} {number[5:12]}-{number[12:]}"
    assert parse_member_number(spaced).merchant_number == 12345
