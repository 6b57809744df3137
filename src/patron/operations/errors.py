from __future__ import annotations

from patron.errors import Conflict, Forbidden, InvalidInput


class OccurredInFuture(InvalidInput):
    code = "occurred_at_in_future"
    title = "The time is more than 5 minutes in the future; check the register's clock"


class OccurredTooLongAgo(InvalidInput):
    code = "occurred_at_too_old"
    title = "The time is more than 30 days ago; such old data is not accepted"


class NotAReader(Forbidden):
    code = "not_a_reader"
    title = "Only a card reader's key may record taps"


class TapIdReused(Conflict):
    code = "tap_id_reused"
    title = "This tap_id was already used for another card at this reader"
