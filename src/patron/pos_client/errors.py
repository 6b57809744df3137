"""What the register tells the cashier when a sale cannot go through."""

from __future__ import annotations

from typing import Any


class PosClientError(Exception):
    """Anything the SDK raises."""


class CheckoutRefused(PosClientError):
    """The sale was not recorded; ``code`` is stable, ``message`` is for the cashier."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServerRefused(CheckoutRefused):
    """The server answered with a problem (4xx): nothing was recorded."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("code", f"http_{status}")),
                         str(problem.get("detail", problem.get("title", ""))))
        self.status = status
        self.problem = problem


class OfflineRefused(CheckoutRefused):
    """Offline, only what the register can price and an allowance covers is accepted."""


class OutcomeUnknown(PosClientError):
    """The server may or may not have recorded the sale (the connection broke after it was
    sent) and it cannot be queued offline (it needs what only the server can grant).
    Repeat the checkout with the same receipt number when the server is back: it is
    idempotent."""

    def __init__(self, receipt_no: str) -> None:
        super().__init__(f"the outcome of receipt {receipt_no} is unknown: repeat it with "
                         f"the same receipt number when the server is reachable")
        self.receipt_no = receipt_no


class AllowanceInvalid(PosClientError):
    """An allowance whose signature does not verify with the package's public key."""
