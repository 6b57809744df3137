from __future__ import annotations

from patron.errors import InvalidInput


class InvalidPeriod(InvalidInput):
    code = "invalid_period"
    title = "A settlement period is a month written YYYY-MM"


class DuplicateRate(InvalidInput):
    code = "duplicate_rate"
    title = "Each currency may have one rate"


class InvalidRate(InvalidInput):
    code = "invalid_rate"
    title = "Rates are whole numbers from 1 to 10^9"


class MilesNotOffered(InvalidInput):
    code = "miles_not_offered"
    title = "The coalition has no miles rate for this merchant's currency"


class InvalidMiles(InvalidInput):
    code = "invalid_miles"
    title = "Miles must be a whole number, 0 or more"


class MilesExceedBasket(InvalidInput):
    code = "miles_exceed_basket"
    title = "The miles are worth more than what is left to pay"
