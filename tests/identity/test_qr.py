import pytest

from patron.identity.qr import (
    TokenExpiredError,
    TokenFormatError,
    TokenSignatureError,
    make_token,
    verify_token,
)

KEY = b"k" * 32
NUMBER = "12345000000184"


@pytest.mark.parametrize("age", [-1, 0, 1])
def test_token_accepted_within_one_step(age):
    token = make_token(KEY, NUMBER, 1000)
    assert verify_token(KEY, token, 1000 + age).member_number == NUMBER


@pytest.mark.parametrize("age", [2, 3, 100, -2])
def test_token_two_or_more_steps_away_is_refused_as_expired(age):
    token = make_token(KEY, NUMBER, 1000)
    with pytest.raises(TokenExpiredError):
        verify_token(KEY, token, 1000 + age)


def test_forged_or_altered_tokens_are_refused():
    token = make_token(KEY, NUMBER, 1000)
    number, step, mac = token.split(".")
    with pytest.raises(TokenSignatureError):
        verify_token(KEY, f"12345000000285.{step}.{mac}", 1000)
    with pytest.raises(TokenSignatureError):
        verify_token(KEY, f"{number}.1001.{mac}", 1001)
    with pytest.raises(TokenSignatureError):
        verify_token(b"x" * 32, token, 1000)


@pytest.mark.parametrize("text", ["", "abc", "1.2", "a.b.c", "123.456.789.0"])
def test_malformed_tokens(text):
    with pytest.raises(TokenFormatError):
        verify_token(KEY, text, 1000)


def test_token_is_qr_alphanumeric_and_short():
    token = make_token(KEY, NUMBER, 58_000_000)
    alphabet = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    assert set(token) <= alphabet
    assert len(token) <= 40
