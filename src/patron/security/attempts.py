"""A voucher attempt at the request boundary: throttled before anything is looked up,
recorded when refused.

An endpoint that takes voucher codes wraps its unit of work::

    with voucher_attempt(db, caller=caller, address=address, kind=..., codes=[code]) as attempt:
        with attempt.session() as session:     # db.session_scope() + the throttle check
            ...

``attempt.session()`` refuses a throttled terminal or client address (429) as the
transaction's first statement, before the caller's code, member or anything else is
looked up, so a throttled caller learns nothing. (The stand-alone redemption's common
case, ``vouchers.direct``, reads the throttle together with the code; a throttled caller
gets nothing from that read: it falls back to this path, which refuses it first.)
The member is known only once the request has identified them: the voucher service calls
``note_member`` at that point, before it looks a code up, and a throttled member is
refused there. ``note_code`` tells the attempt which of the request's codes is being
looked up, so the event names the one refused.

The hooks find the attempt in a context variable rather than in every service signature
between the endpoint and the code lookup (the POS pipeline, validation, holds): outside an
attempt (jobs, the CLI, offline replay) they do nothing.

A refusal of a code (``RECORDED``, or a validation answering ``valid: false``) is recorded
after the request's own transaction has rolled back, in a short transaction of its own,
so it survives the refusal. Only what could be guessing (``GUESSES``: an unknown, malformed
or another merchant's code) counts towards the limit; a business refusal is recorded
without counting. Recording never changes the answer: if it fails, the failure is logged
and the refusal stands. ``identification_attempt`` does the same for identifications,
with its own limit.

The check and the record are two steps, not one atomic one: requests of one subject that
pass the check at the same moment can all fail, so a concurrent burst can exceed the limit
by the requests in flight (at most the server's worker threads); the next request is
refused. Exactness would need a committed write on every attempt, successful ones too.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy.orm import Session

from patron.db import Database
from patron.identity.errors import CardNotFound, MalformedCode, MemberNotFound, QrInvalid
from patron.security import service
from patron.security.models import SecurityEventKind, Throttle
from patron.tenancy.service import Principal
from patron.vouchers.errors import InvalidVoucherCode, VoucherNotFound, VoucherRefused

log = logging.getLogger("patron")

# The refusals recorded as security events: every refusal of a code. Bad input about the
# basket (too many vouchers, a basket needed) is the till's bug, not an attempt at a code.
RECORDED = (VoucherRefused, VoucherNotFound, InvalidVoucherCode)
# Of those, the ones that count towards the limit: what probing codes produces — an
# unknown code, another merchant's (the same answer) or no code at all. A business
# refusal (a minimum spend not met, one's own code expired or used up) is recorded for
# the merchant to see but counts towards nothing: an innocent register hits them.
GUESSES = frozenset({VoucherNotFound.code, InvalidVoucherCode.code})
# A failed identification: no member for the number, phone, card or QR token given, or
# text that is none. Each is recorded and counts towards the identification limit.
NO_MEMBER = (MemberNotFound, CardNotFound, QrInvalid, MalformedCode)

_current: ContextVar[Attempt | None] = ContextVar("patron_voucher_attempt", default=None)


def counted(refusal: str) -> bool:
    """Whether a refused voucher attempt counts towards the voucher failure limit."""
    return refusal in GUESSES


class Attempt:
    """One request presenting voucher codes (or identifying a member): who is trying, and
    how it ended."""

    def __init__(self, db: Database, *, caller: Principal, address: str,
                 kind: SecurityEventKind, codes: Sequence[str],
                 limit: service.Limit | None = None) -> None:
        self._db = db
        self._limit = limit or service.Limit.vouchers()
        self.kind = kind
        self.merchant_id = caller.merchant_id
        self.terminal_id = caller.terminal_id
        self.address = address
        # An operator's request belongs to no merchant's log; a purchase without codes is
        # no voucher attempt.
        self.active = caller.merchant_id is not None and len(codes) > 0
        self.code: str | None = codes[0] if codes else None
        self.member_id: uuid.UUID | None = None
        self.refusal: str | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """The request's unit of work; its first statement is the throttle check."""
        with self._db.session_scope() as session:
            self.check(session)
            yield session

    def check(self, session: Session) -> None:
        """The throttle check of the terminal and the client address (a request under two
        attempts runs the second's in the first's session, before any look-up)."""
        if self.active:
            service.refuse_if_throttled(session, limit=self._limit,
                                        terminal_id=self.terminal_id,
                                        merchant_id=self.merchant_id,
                                        client_address=self.address)

    def refused(self, refusal: str | None) -> None:
        """A refusal the answer carries without an error (a validation's ``reason``)."""
        self.refusal = refusal

    def member_identified(self, session: Session, member_id: uuid.UUID) -> None:
        if self.member_id == member_id:
            return
        self.member_id = member_id
        if self.active:
            service.refuse_if_throttled(session, limit=self._limit, member_id=member_id)

    def throttle(self, refusal: str) -> Throttle | None:
        if self._limit.throttle == Throttle.identify:
            return Throttle.identify
        return Throttle.voucher if counted(refusal) else None

    def record(self) -> None:
        if not self.active or self.refusal is None or self.merchant_id is None:
            return
        try:
            with self._db.session_scope() as session:
                service.record_security_event(
                    session, merchant_id=self.merchant_id, kind=self.kind,
                    refusal=self.refusal, throttle=self.throttle(self.refusal),
                    terminal_id=self.terminal_id, client_address=self.address,
                    member_id=self.member_id, code=self.code)
        except Exception:
            log.exception("could not record a security event (%s, %s)", self.kind,
                          self.refusal)


@contextmanager
def voucher_attempt(db: Database, *, caller: Principal, address: str,
                    kind: SecurityEventKind, codes: Sequence[str]) -> Iterator[Attempt]:
    attempt = Attempt(db, caller=caller, address=address, kind=kind, codes=codes)
    token = _current.set(attempt)
    try:
        yield attempt
    except RECORDED as refusal:
        attempt.refusal = refusal.code
        if isinstance(refusal, VoucherRefused) and refusal.voucher_code:
            attempt.code = refusal.voucher_code
        raise
    finally:
        _current.reset(token)
        attempt.record()


@contextmanager
def identification_attempt(db: Database, *, caller: Principal, address: str,
                           identifies: bool = True) -> Iterator[Attempt]:
    """A request identifying a member (``POST /v1/identify``, a tap, a quote or purchase
    naming its member other than by id: ``identifies``): a terminal, or a client address
    at one merchant, with too many failed identifications lately is refused (429) before
    anything is looked up; a failure (``NO_MEMBER``) is recorded and counted. Nothing of
    what was tried is kept: it may be a phone number."""
    attempt = Attempt(db, caller=caller, address=address,
                      kind=SecurityEventKind.identification,
                      codes=["identification"] if identifies else [],
                      limit=service.Limit.identification())
    attempt.code = None
    try:
        yield attempt
    except NO_MEMBER as refusal:
        attempt.refusal = refusal.code
        raise
    finally:
        attempt.record()


def note_member(session: Session, member_id: uuid.UUID | None) -> None:
    """The attempt in progress has identified its member (before any code lookup): a
    member over the limit is refused here."""
    attempt = _current.get()
    if attempt is not None and member_id is not None:
        attempt.member_identified(session, member_id)


def note_code(text: str) -> None:
    """The attempt in progress is looking this code up."""
    attempt = _current.get()
    if attempt is not None:
        attempt.code = text
