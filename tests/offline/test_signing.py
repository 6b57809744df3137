"""Allowance signatures: deterministic keys, and any change to a signed allowance (or the
wrong key) fails verification — on the server and in the register SDK alike."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from patron.offline import signing
from patron.pos_client import signing as client_signing

DOCUMENT: dict[str, Any] = {
    "v": 1, "id": "7b0f6e1e-5d1c-4a43-9d38-0f8a3c8e2b11", "key_id": "00112233aabbccdd",
    "terminal_id": "1f7c2a34-0d9e-4f7e-a1b2-33c4d5e6f708",
    "merchant_id": "2e8d3b45-1eaf-4a8f-b2c3-44d5e6f70819",
    "member_id": "3f9e4c56-2fb0-4b90-83d4-55e6f708192a", "member_number": "12345000000184",
    "currency": "JPY", "burn_limit": 500, "point_value_minor": 1, "min_burn": 100,
    "codes": [{"code": "ABCD-EFGH-JKMN-P", "kind": "amount_off", "value": 300,
               "max_discount": None, "min_spend": 0, "item_sku": None,
               "item_category": None, "categories": [], "valid_until": None}],
    "issued_at": "2026-11-22T10:00:00+00:00", "expires_at": "2026-11-23T10:00:00+00:00",
}


def test_the_key_is_derived_from_the_secret_key_and_the_same_in_every_process() -> None:
    one = signing.public_key_bytes(signing.derive_private_key("secret one"))
    again = signing.public_key_bytes(signing.derive_private_key("secret one"))
    other = signing.public_key_bytes(signing.derive_private_key("secret two"))
    assert one == again and one != other and len(one) == 32
    assert signing.key_id(one) == signing.key_id(again) != signing.key_id(other)


def test_a_signed_allowance_verifies_on_the_server_and_in_the_sdk() -> None:
    key = signing.derive_private_key("s")
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, DOCUMENT)
    assert signing.verify(public, DOCUMENT, signature)
    assert client_signing.verify(base64.b64encode(public).decode(), DOCUMENT, signature)
    # The SDK writes the same canonical bytes as the server.
    assert client_signing.canonical_json(DOCUMENT) == signing.canonical_json(DOCUMENT)


def test_any_changed_byte_of_the_allowance_fails_verification() -> None:
    key = signing.derive_private_key("s")
    public = signing.public_key_bytes(key)
    public_b64 = base64.b64encode(public).decode()
    signature = signing.sign(key, DOCUMENT)
    payload = signing.canonical_json(DOCUMENT)
    parsed_variants = 0
    for index in range(len(payload)):
        for replacement in {ord("0"), ord("9"), ord("a"), ord('"')} - {payload[index]}:
            changed = payload[:index] + bytes([replacement]) + payload[index + 1:]
            try:
                document = json.loads(changed)
            except ValueError:
                continue  # not JSON any more: no register could even read it
            if not isinstance(document, dict):
                continue
            parsed_variants += 1
            assert not signing.verify(public, document, signature), changed
            assert not client_signing.verify(public_b64, document, signature), changed
    assert parsed_variants > 500


@pytest.mark.parametrize("field, value", [
    ("burn_limit", 501), ("burn_limit", "500"), ("member_id", DOCUMENT["terminal_id"]),
    ("expires_at", "2026-11-24T10:00:00+00:00"), ("codes", []), ("extra", 1)])
def test_a_changed_field_fails(field: str, value: Any) -> None:
    key = signing.derive_private_key("s")
    signature = signing.sign(key, DOCUMENT)
    assert not signing.verify(signing.public_key_bytes(key), {**DOCUMENT, field: value},
                              signature)


def test_the_wrong_key_or_a_broken_signature_fails() -> None:
    key = signing.derive_private_key("s")
    signature = signing.sign(key, DOCUMENT)
    other = signing.public_key_bytes(signing.derive_private_key("not s"))
    assert not signing.verify(other, DOCUMENT, signature)
    raw = bytearray(base64.b64decode(signature))
    raw[0] ^= 1
    assert not signing.verify(signing.public_key_bytes(key), DOCUMENT,
                              base64.b64encode(bytes(raw)).decode())
    for broken in ("", "not base64!", base64.b64encode(b"short").decode()):
        assert not signing.verify(signing.public_key_bytes(key), DOCUMENT, broken)
        assert not client_signing.verify(
            base64.b64encode(signing.public_key_bytes(key)).decode(), DOCUMENT, broken)
