"""The Web Push protocol's two halves that are Patron's: the payload's encryption
(RFC 8291, the ``aes128gcm`` content coding of RFC 8188) and the sender's identification
(VAPID, RFC 8292). Pure: keys and bytes in, bytes and headers out; no session, no network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256

# A push service must accept 4,096 bytes of encrypted body (RFC 8030, 7.2): one record of
# that size holds the header (86 bytes), the tag (16) and the padding delimiter (1).
RECORD_SIZE = 4096
HEADER_SIZE = 16 + 4 + 1 + 65
MAX_PAYLOAD = RECORD_SIZE - HEADER_SIZE - 16 - 1
# How long a VAPID token is good for (RFC 8292 allows at most 24 hours).
VAPID_LIFETIME_SECONDS = 12 * 3600


class PushKeyError(ValueError):
    """A key that is not what the protocol needs."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise PushKeyError("not base64url") from exc


def _public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.X962,
                            serialization.PublicFormat.UncompressedPoint)


def public_key_of(raw: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from its 65-byte uncompressed form (a subscription's
    ``p256dh``); ``PushKeyError`` when it is not a point on the curve."""
    if len(raw) != 65 or raw[0] != 4:
        raise PushKeyError("a P-256 public key in uncompressed form is 65 bytes from 0x04")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise PushKeyError("not a point on P-256") from exc


def _hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    # One block of HKDF-Expand (RFC 5869): every length here is at most 32.
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()[:length]


def encrypt(payload: bytes, *, p256dh: bytes, auth: bytes, salt: bytes | None = None,
            sender_key: ec.EllipticCurvePrivateKey | None = None) -> bytes:
    """The payload encrypted for one subscription (RFC 8291, section 3): a fresh key pair
    and salt per message, one record. ``salt`` and ``sender_key`` are for tests."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a push payload holds at most {MAX_PAYLOAD} bytes")
    if len(auth) != 16:
        raise PushKeyError("a subscription's auth secret is 16 bytes")
    receiver = public_key_of(p256dh)
    sender = sender_key or ec.generate_private_key(ec.SECP256R1())
    sender_public = _public_bytes(sender.public_key())
    salt = salt if salt is not None else os.urandom(16)
    shared = sender.exchange(ec.ECDH(), receiver)
    # The input keying material, bound to both public keys and the auth secret.
    prk_key = hmac.new(auth, shared, hashlib.sha256).digest()
    ikm = _hkdf_expand(prk_key, b"WebPush: info\x00" + p256dh + sender_public, 32)
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    cek = _hkdf_expand(prk, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf_expand(prk, b"Content-Encoding: nonce\x00", 12)
    # The last (and only) record ends with the delimiter 0x02.
    ciphertext = AESGCM(cek).encrypt(nonce, payload + b"\x02", None)
    header = salt + struct.pack("!IB", RECORD_SIZE, len(sender_public)) + sender_public
    return header + ciphertext


@dataclass(frozen=True)
class VapidKey:
    """The deployment's VAPID key pair (``PATRON_VAPID_PRIVATE_KEY``)."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def from_setting(cls, text: str) -> VapidKey:
        """From the base64url of the 32-byte private scalar (what ``patron push-keys``
        prints and browsers' tools use) or a PEM."""
        text = text.strip()
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise PushKeyError("PATRON_VAPID_PRIVATE_KEY must be a P-256 key")
            return cls(key)
        raw = from_b64url(text)
        if len(raw) != 32:
            raise PushKeyError("PATRON_VAPID_PRIVATE_KEY must be the base64url of 32 bytes "
                               "(patron push-keys makes one)")
        try:
            return cls(ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1()))
        except ValueError as exc:
            raise PushKeyError("PATRON_VAPID_PRIVATE_KEY is not a valid P-256 key") from exc

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @property
    def private_text(self) -> str:
        return b64url(self.private.private_numbers().private_value.to_bytes(32, "big"))

    @property
    def public_text(self) -> str:
        """The application server key a browser subscribes with (base64url, 65 bytes)."""
        return b64url(_public_bytes(self.private.public_key()))

    def authorization(self, endpoint: str, *, subject: str, now: int) -> str:
        """The ``Authorization`` header of a push to ``endpoint`` (RFC 8292: ``vapid`` with
        an ES256 JWT for the endpoint's origin, and the public key)."""
        parts = urlsplit(endpoint)
        claims = {"aud": f"{parts.scheme}://{parts.netloc}",
                  "exp": now + VAPID_LIFETIME_SECONDS, "sub": subject}
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode())
            for part in ({"typ": "JWT", "alg": "ES256"}, claims))
        r, s = decode_dss_signature(self.private.sign(signing_input.encode(),
                                                      ec.ECDSA(SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"vapid t={signing_input}.{b64url(signature)}, k={self.public_text}"
