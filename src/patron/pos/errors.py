from __future__ import annotations

from patron.errors import Conflict, InvalidInput, NotFound


class UnknownCurrency(InvalidInput):
    code = "unknown_currency"
    title = "Not an ISO 4217 currency code"


class CurrencyMismatch(InvalidInput):
    code = "currency_not_merchants"
    title = "The currency is not the merchant's"


class InvalidGtin(InvalidInput):
    code = "invalid_gtin"
    title = "Not a valid GTIN (wrong length or check digit)"


class InvalidQuantity(InvalidInput):
    code = "invalid_quantity"
    title = "A line quantity must be a whole number, 1 or more"


class InvalidPrice(InvalidInput):
    code = "invalid_price"
    title = "A unit price must be a whole number of minor units, 0 or more"


class InvalidPaymentAmount(InvalidInput):
    code = "invalid_payment_amount"
    title = "The payment amount must be a whole number of minor units, 0 or more"


class BasketTooLarge(InvalidInput):
    code = "basket_too_large"
    title = "The basket total is beyond what one transaction may hold"


class BurnNeedsMember(InvalidInput):
    code = "burn_needs_member"
    title = "Points can only be burned by an identified member"


class ReceiptConflict(Conflict):
    code = "receipt_conflict"
    title = "This receipt number was already committed with a different body"


class TransactionNotFound(NotFound):
    code = "not_found"
    title = "No such transaction"


class ReturnConflict(Conflict):
    code = "return_conflict"
    title = "This return number was already used for this purchase with a different body"


class UnknownLine(InvalidInput):
    code = "unknown_line"
    title = "The purchase has no line with this number"


class DuplicateLine(InvalidInput):
    code = "duplicate_line"
    title = "A line appears twice in one return"


class ReturnExceedsPurchase(Conflict):
    code = "return_exceeds_purchase"
    title = "More units would come back than were bought and not yet returned"


class NothingToReturn(Conflict):
    code = "nothing_to_return"
    title = "Every unit of this purchase has already been returned"


class ReturnBeforePurchase(InvalidInput):
    code = "return_before_purchase"
    title = "A return cannot happen before its purchase"


class ChannelMismatch(InvalidInput):
    code = "channel_not_terminals"
    title = "The channel contradicts the terminal's kind"
