from __future__ import annotations

from typing import ClassVar

from patron.errors import Conflict, InvalidInput, NotFound, PatronError


class InsufficientPoints(Conflict):
    code = "insufficient_points"
    title = "The balance is too low for this"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    title = "This idempotency key was used for a different ledger entry"


class ReturnExceedsOriginal(Conflict):
    code = "return_exceeds_original"
    title = "More points would be returned than the original entry moved"


class InvalidPoints(InvalidInput):
    code = "invalid_points"
    title = "Points must be a whole number above zero"


class InvalidEntry(InvalidInput):
    code = "invalid_ledger_entry"
    title = "This ledger entry cannot be used for that"


class EntryNotFound(NotFound):
    code = "ledger_entry_not_found"
    title = "No such ledger entry"


class LedgerBug(PatronError):
    """A caller broke the ledger's contract (an unbalanced entry, a lot short of its
    balance): a programming error, never the user's."""

    status: ClassVar[int] = 500
    code = "ledger_error"
    title = "Internal ledger error"


class UnbalancedEntry(LedgerBug):
    code = "ledger_unbalanced_entry"
    title = "A journal entry's postings do not sum to zero"


class LedgerInconsistent(LedgerBug):
    code = "ledger_inconsistent"
    title = "The point lots do not match the balance"


class InvalidLimit(InvalidInput):
    code = "invalid_limit"
    title = "The page size is out of range"


class InvalidCursor(InvalidInput):
    code = "invalid_cursor"
    title = "This cursor was not given by a previous page"
