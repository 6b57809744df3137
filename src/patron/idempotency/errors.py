from __future__ import annotations

from patron.errors import Conflict, InvalidInput


class InvalidIdempotencyKey(InvalidInput):
    code = "invalid_idempotency_key"
    title = "Invalid Idempotency-Key"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was used with another request"


class IdempotencyKeyInProgress(Conflict):
    code = "idempotency_key_in_progress"
    title = "A request with this Idempotency-Key is still running"


class IdempotencyAnswerLost(Conflict):
    code = "idempotency_answer_lost"
    title = "The request with this Idempotency-Key was done but its answer was lost"
