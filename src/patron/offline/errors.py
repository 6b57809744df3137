"""Why an offline request or queue entry is refused. Entry refusals are not raised to the
caller of the batch: each is that entry's answer (``status: refused`` with its problem)."""

from __future__ import annotations

from patron.errors import Conflict, InvalidInput, NotFound


class BatchTooLarge(InvalidInput):
    code = "batch_too_large"
    title = "A batch holds 1 to 500 entries"


class BatchOutOfOrder(InvalidInput):
    code = "batch_out_of_order"
    title = "Entries must come in strictly increasing seq order"


class DuplicateReceiptInBatch(InvalidInput):
    code = "duplicate_receipt_in_batch"
    title = "A receipt number appears twice in one batch"


class ExceptionNotFound(NotFound):
    code = "not_found"
    title = "No such offline exception"


class ExceptionAlreadyResolved(Conflict):
    code = "exception_already_resolved"
    title = "This exception was already resolved"


class InvalidNote(InvalidInput):
    code = "invalid_note"
    title = "A resolution note is 1 to 2,000 characters"


class InvalidStatusFilter(InvalidInput):
    code = "invalid_status_filter"
    title = "status is open or resolved"


# --- entry refusals (answers, and the code of a refused_entry exception) ----------------

class EntryRefused(Conflict):
    code = "entry_refused"
    title = "The queue entry was refused"


class AllowanceSignatureInvalid(EntryRefused):
    code = "allowance_signature_invalid"
    title = "The allowance's signature does not match its content (tampered or forged)"


class AllowanceUnknown(EntryRefused):
    code = "allowance_unknown"
    title = "No allowance with this id was issued"


class AllowanceWrongTerminal(EntryRefused):
    code = "allowance_wrong_terminal"
    title = "The allowance was issued to another terminal"


class AllowanceMemberMismatch(EntryRefused):
    code = "allowance_member_mismatch"
    title = "The sale's member is not the allowance's member"


class AllowanceExpired(EntryRefused):
    code = "allowance_expired"
    title = "The sale happened after the allowance expired"


class AllowanceNotYetValid(EntryRefused):
    code = "allowance_not_yet_valid"
    title = "The sale happened before the allowance was issued"


class BurnWithoutAllowance(EntryRefused):
    code = "offline_burn_without_allowance"
    title = "Offline, points can be burned only within an allowance"


class VoucherWithoutAllowance(EntryRefused):
    code = "offline_voucher_without_allowance"
    title = "Offline, vouchers can be used only within an allowance"


class VoucherNotInAllowance(EntryRefused):
    code = "voucher_not_in_allowance"
    title = "The voucher is not one of the allowance's codes"


class MilesBurnOffline(EntryRefused):
    code = "offline_miles_burn"
    title = "Offline, coalition miles cannot be burned (no allowance covers them)"


class EntryConflict(EntryRefused):
    code = "receipt_conflict"
    title = "This receipt was already replayed or committed with a different body"
