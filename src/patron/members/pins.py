"""Member PINs, hashed with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum argon2id profile: 19 MiB, 2 passes, 1 lane (~20 ms a check).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_pin(pin: str) -> str:
    return _hasher.hash(pin)


def pin_matches(pin_hash: str, pin: str) -> bool:
    try:
        return _hasher.verify(pin_hash, pin)
    except (VerificationError, InvalidHashError):
        return False
