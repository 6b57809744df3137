from __future__ import annotations

from typing import ClassVar

from patron.errors import Conflict, Forbidden, InvalidInput, NotFound, PatronError


class MalformedCode(InvalidInput):
    code = "malformed_code"
    title = "The code is not a member number or QR token"


class QrInvalid(InvalidInput):
    code = "qr_invalid"
    title = "The QR token's signature does not match"


class QrExpired(PatronError):
    status: ClassVar[int] = 410
    code = "qr_expired"
    title = "The QR code has expired; show the live code from the app"


class NoCodeInImage(InvalidInput):
    code = "no_code_in_image"
    title = "No member barcode or QR code was found in the image"


class InvalidImage(InvalidInput):
    code = "invalid_image"
    title = "The image could not be read"


class MemberNotFound(NotFound):
    code = "member_not_found"
    title = "No member matches"


class CardNotFound(NotFound):
    code = "card_not_found"
    title = "No card with this UID is registered"


class MemberWithdrawn(PatronError):
    status: ClassVar[int] = 410
    code = "member_withdrawn"
    title = "The member has withdrawn; their identifiers no longer work"


class MemberErased(PatronError):
    status: ClassVar[int] = 410
    code = "member_erased"
    title = "The member's data has been erased"


class CardBlocked(Forbidden):
    code = "card_blocked"
    title = "This card is blocked"


class PinRequired(Forbidden):
    code = "pin_required"
    title = "This terminal requires the member's PIN"


class PinNotSet(Forbidden):
    code = "pin_not_set"
    title = "The member has no PIN; set one before using a terminal that requires it"


class PinIncorrect(Forbidden):
    code = "pin_incorrect"
    title = "The PIN is wrong"
    keep_side_effects = True


class PinLocked(PatronError):
    """The member is locked out: refused at every terminal, whether it asks for the PIN or
    not, until the lock ends or the enrolling merchant unlocks it."""

    status: ClassVar[int] = 423
    code = "pin_locked"
    title = "Too many wrong PINs; the member is locked for a while"


class PinLockedNow(PinLocked):
    """The wrong PIN that locks: the count and the lock are kept."""

    keep_side_effects = True


class NoCallNumber(Conflict):
    code = "no_call_number"
    title = "This terminal has no call-in number configured"


class CardAlreadyBlocked(Conflict):
    code = "card_already_blocked"
    title = "The card is already blocked"


class BadSignature(PatronError):
    status: ClassVar[int] = 401
    code = "bad_signature"
    title = "The webhook signature does not match"
