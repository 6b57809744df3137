"""Verifying an offline allowance's Ed25519 signature (the server's canonical JSON:
keys sorted, no spaces, UTF-8)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def canonical_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()


def verify(public_key_b64: str, document: dict[str, Any], signature: str) -> bool:
    try:
        public_key = Ed25519PublicKey.from_public_bytes(
            base64.b64decode(public_key_b64, validate=True))
        raw = base64.b64decode(signature, validate=True)
        public_key.verify(raw, canonical_json(document))
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True
