from __future__ import annotations

from typing import ClassVar

from patron.errors import Conflict, Forbidden, InvalidInput, PatronError


class MerchantRequired(InvalidInput):
    code = "merchant_id_required"
    title = "An operator key must name merchant_id"


class InvalidPhone(InvalidInput):
    code = "invalid_phone"
    title = "Not a valid phone number"


class InvalidCardUid(InvalidInput):
    code = "invalid_card_uid"
    title = "Not a valid card UID"


class PhoneTaken(Conflict):
    code = "phone_already_registered"
    title = "Another member already uses this phone number"


class EmailTaken(Conflict):
    code = "email_already_registered"
    title = "Another member already uses this e-mail address"


class CardTaken(Conflict):
    code = "card_already_registered"
    title = "This card is already registered"


class DuplicateExternalRef(Conflict):
    code = "duplicate_external_ref"
    title = "An earlier member of the file has this external_ref"


class EnrolledInFuture(InvalidInput):
    code = "enrolled_in_future"
    title = "enrolled_at is after the server's time"


class CustomerNumbersExhausted(Conflict):
    code = "customer_numbers_exhausted"
    title = "This merchant has used all 9,999,999 customer numbers"


class MemberNotActive(Conflict):
    code = "member_not_active"
    title = "The member has withdrawn or been erased"


class NotHomeMerchant(Forbidden):
    code = "not_home_merchant"
    title = "Only the enrolling merchant or the operator may do this"


class MemberGone(PatronError):
    status: ClassVar[int] = 410
    code = "member_gone"
    title = "Member withdrawn"


class ProofRequired(Forbidden):
    code = "member_proof_required"
    title = "This change needs the member present: send their PIN or a one-time code"

    def __init__(self, detail: str | None = None, **extra: object) -> None:
        super().__init__(detail or (
            "send `proof`: {\"pin\": \"…\"} with the member's PIN, or "
            "{\"verification_id\": \"…\", \"code\": \"…\"} with the one-time code from "
            "POST /v1/members/{id}/verification-codes"), field="proof", **extra)


class VerificationCodeIncorrect(Forbidden):
    code = "verification_code_incorrect"
    title = "The one-time code is wrong, used or expired"
    # The counted attempt must survive the request's rollback.
    keep_side_effects = True


class NoChannelForCode(Conflict):
    code = "no_channel_for_code"
    title = "The member has no phone or e-mail to send a code to"


class TooManyVerificationCodes(PatronError):
    status: ClassVar[int] = 429
    code = "too_many_verification_codes"
    title = "Too many one-time codes for this member; try again later"


class ConsentScopeNotAllowed(Forbidden):
    code = "consent_scope_not_allowed"
    title = "This key may not record consent in this scope"
