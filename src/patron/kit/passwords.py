"""Secrets that people type (a member's PIN, a staff user's password), hashed with argon2id."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP's minimum argon2id profile: 19 MiB, 2 passes, 1 lane (~20 ms a check).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

# Compared against when the account does not exist, so that a wrong e-mail costs as much
# time as a wrong password and the answer's timing tells nothing.
_DECOY = _hasher.hash("decoy password that matches nothing")


def hash_secret(secret: str) -> str:
    return _hasher.hash(secret)


def secret_matches(stored_hash: str | None, secret: str) -> bool:
    try:
        return _hasher.verify(stored_hash or _DECOY, secret) and stored_hash is not None
    except (VerificationError, InvalidHashError):
        return False
