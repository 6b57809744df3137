"""Keyed lookup hashes, AES-GCM field encryption and random secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


def lookup_hash(key: bytes, purpose: str, value: str) -> str:
    """A keyed HMAC-SHA256 for equality lookups; the purpose separates identifier kinds."""
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).hexdigest()


def encrypt(key: bytes, plaintext: str, *, context: str) -> bytes:
    """AES-256-GCM; the context (e.g. "member.phone") is bound as associated data."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())


def decrypt(key: bytes, blob: bytes, *, context: str) -> str:
    nonce, ciphertext = blob[:_NONCE_BYTES], blob[_NONCE_BYTES:]
    return AESGCM(key).decrypt(nonce, ciphertext, context.encode()).decode()


def webhook_authentic(secret: str, body: bytes, *, signature: str | None,
                      token: str | None) -> bool:
    """An inbound webhook's proof, either way (providers differ in what they can send): a
    signature (hex HMAC-SHA256 of the raw body with the secret), or, for providers that
    only let you set a URL, the secret itself as a token."""
    key = secret.encode()
    # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError).
    if signature:
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        return hmac.compare_digest(signature.strip().lower().encode(), expected)
    return bool(token) and hmac.compare_digest((token or "").encode(), key)


def token_hash(token: str) -> str:
    """SHA-256 of a high-entropy secret (API keys): no salt or stretching needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def random_token(nbytes: int = 24) -> str:
    return base64.b32encode(secrets.token_bytes(nbytes)).decode().rstrip("=").lower()
