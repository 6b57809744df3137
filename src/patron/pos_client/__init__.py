"""Patron's POS SDK: a register that keeps selling when the server cannot be reached.

Talks to the server over HTTP only and imports nothing from the server side, so an
integrator can ship this package alone (it needs httpx and cryptography).
"""

from patron.pos_client.errors import (
    AllowanceInvalid,
    CheckoutRefused,
    OfflineRefused,
    OutcomeUnknown,
    PosClientError,
    ServerRefused,
)
from patron.pos_client.register import CheckoutResult, Register, SyncReport

__all__ = ["AllowanceInvalid", "CheckoutRefused", "CheckoutResult", "OfflineRefused",
           "OutcomeUnknown", "PosClientError", "Register", "ServerRefused", "SyncReport"]
