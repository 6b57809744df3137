"""Why an offer or a code is refused. Every refusal of a code is a ``VoucherRefused``
(409) with its own ``code``; ``voucher_code`` names the canonical code refused."""

from __future__ import annotations

from typing import Any

from patron.errors import Conflict, InvalidInput, NotFound


class OfferNotFound(NotFound):
    code = "not_found"
    title = "No such offer"


class InvalidOffer(InvalidInput):
    code = "invalid_offer"
    title = "The offer's terms do not fit together"


class InvalidVoucherCode(InvalidInput):
    code = "invalid_voucher_code"
    title = "Not a voucher code (wrong length, character or check character)"


class InvalidCodeRequest(InvalidInput):
    code = "invalid_code_request"
    title = "Codes are issued 1 to 1,000 at a time (more as a batch job)"


class InvalidReservation(InvalidInput):
    code = "invalid_reservation"
    title = "A hold lasts 1 second to 30 minutes"


class TooManyVouchers(InvalidInput):
    code = "too_many_vouchers"
    title = "At most 10 vouchers on one purchase"


class DuplicateVoucher(InvalidInput):
    code = "duplicate_voucher"
    title = "The same code appears twice on one purchase"


class VoucherNeedsBasket(InvalidInput):
    code = "voucher_needs_basket"
    title = "This voucher's worth depends on the basket: give its lines"


class VoucherNotFound(NotFound):
    """Unknown codes and other merchants' codes get this same answer (no enumeration)."""

    code = "not_found"
    title = "No such voucher"


class ReservationNotFound(NotFound):
    code = "not_found"
    title = "No such hold"


class BatchNotFound(NotFound):
    code = "not_found"
    title = "No such code batch"


class VoucherRefused(Conflict):
    """A code that exists but cannot be used here and now."""

    code = "voucher_refused"
    title = "The voucher cannot be used"

    def __init__(self, detail: str | None = None, *, voucher_code: str = "",
                 **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.voucher_code = voucher_code


class VoucherExpired(VoucherRefused):
    code = "voucher_expired"
    title = "The voucher has expired"


class VoucherNotYetValid(VoucherRefused):
    code = "voucher_not_yet_valid"
    title = "The voucher is not valid yet"


class VoucherWrongStore(VoucherRefused):
    code = "voucher_wrong_store"
    title = "The voucher is not valid in this store"


class VoucherWrongChannel(VoucherRefused):
    code = "voucher_wrong_channel"
    title = "The voucher is not valid for this channel"


class VoucherWrongTime(VoucherRefused):
    code = "voucher_wrong_time"
    title = "The voucher is not valid on this day or at this hour (store-local time)"


class VoucherMinimumSpend(VoucherRefused):
    code = "voucher_minimum_spend"
    title = "The basket is below the voucher's minimum spend"


class VoucherNoEligibleItems(VoucherRefused):
    code = "voucher_no_eligible_items"
    title = "Nothing in the basket is eligible for the voucher"


class VoucherCurrencyMismatch(VoucherRefused):
    code = "voucher_currency_mismatch"
    title = "The voucher's amount is in another currency"


class VoucherAlreadyRedeemed(VoucherRefused):
    code = "voucher_already_redeemed"
    title = "The voucher has already been used"


class VoucherRevoked(VoucherRefused):
    code = "voucher_revoked"
    title = "The voucher has been revoked"


class VoucherCapReached(VoucherRefused):
    code = "voucher_cap_reached"
    title = "The offer's redemption cap is reached"


class VoucherBudgetExhausted(VoucherRefused):
    code = "voucher_budget_exhausted"
    title = "The offer's budget cannot cover this discount"


class VoucherMemberLimit(VoucherRefused):
    code = "voucher_member_limit"
    title = "The member has used this offer as often as allowed"


class VoucherNotMembers(VoucherRefused):
    code = "voucher_not_members"
    title = "The voucher belongs to another member"


class VoucherNeedsMember(VoucherRefused):
    code = "voucher_needs_member"
    title = "Identify the member to use this voucher"


class VoucherNeedsPurchase(VoucherRefused):
    code = "voucher_needs_purchase"
    title = "A points multiplier applies to a purchase"


class VoucherNotStackable(VoucherRefused):
    code = "voucher_not_stackable"
    title = "This voucher cannot be combined with another"


class VoucherIsTicket(VoucherRefused):
    code = "voucher_is_ticket"
    title = "A ticket admits at a gate; it is not a discount"


class VoucherNotTicket(VoucherRefused):
    code = "voucher_not_a_ticket"
    title = "Only a ticket admits"


class TicketAlreadyAdmitted(VoucherRefused):
    code = "ticket_already_admitted"
    title = "The ticket has already admitted someone"


class ReservationEnded(Conflict):
    code = "reservation_ended"
    title = "The hold was released, expired or already used"

