"""Ed25519 signatures over offline allowances (no session, no settings).

The signing key is derived from the deployment's secret key with HKDF, so every worker
process of every API machine signs with the same key without a key file to distribute.
What is signed is the allowance's canonical JSON: keys sorted, no spaces, UTF-8, integers
and strings only (no floats, so every JSON library writes the same bytes). The register
SDK (``patron.pos_client.signing``) verifies the same bytes with its own copy of these few
lines: it imports nothing from the server.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HKDF_INFO = b"patron offline allowance v1"


def derive_private_key(secret_key: str) -> Ed25519PrivateKey:
    """The one offline signing key of a deployment, from its secret key."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=HKDF_INFO).derive(secret_key.encode())
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                 serialization.PublicFormat.Raw)


def key_id(public_key: bytes) -> str:
    """A short name for a public key (16 hex digits of its SHA-256): which key signed."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def canonical_json(document: dict[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode()


def sign(private_key: Ed25519PrivateKey, document: dict[str, Any]) -> str:
    """Base64 (standard alphabet, padded) Ed25519 signature of the canonical JSON."""
    return base64.b64encode(private_key.sign(canonical_json(document))).decode()


def verify(public_key: bytes, document: dict[str, Any], signature: str) -> bool:
    """True only for an untouched document signed by the holder of ``public_key``."""
    try:
        raw = base64.b64decode(signature, validate=True)
        payload = canonical_json(document)
    except (binascii.Error, ValueError, TypeError):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(raw, payload)
    except (InvalidSignature, ValueError):
        return False
    return True
