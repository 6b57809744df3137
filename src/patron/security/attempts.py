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

A refusal that counts (the code is unknown, malformed or cannot be used: ``COUNTED``, or
a validation answering ``valid: false``) is recorded after the request's own transaction
has rolled back, in a short transaction of its own, so it survives the refusal. Recording
never changes the answer: if it fails, the failure is logged and the refusal stands.

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
from patron.security import service
from patron.security.models import SecurityEventKind
from patron.tenancy.service import Principal
from patron.vouchers.errors import InvalidVoucherCode, VoucherNotFound, VoucherRefused

log = logging.getLogger("patron")

# The refusals that count as failed attempts: what probing codes produces. Bad input about
# the basket (too many vouchers, a basket needed) is the till's bug, not a guess.
COUNTED = (VoucherRefused, VoucherNotFound, InvalidVoucherCode)

_current: ContextVar[Attempt | None] = ContextVar("patron_voucher_attempt", default=None)


class Attempt:
    """One request presenting voucher codes: who is trying, and how it ended."""

    def __init__(self, db: Database, *, caller: Principal, address: str,
                 kind: SecurityEventKind, codes: Sequence[str]) -> None:
        self._db = db
        self._limit = service.Limit.from_settings()
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
            if self.active:
                service.refuse_if_throttled(session, limit=self._limit,
                                            terminal_id=self.terminal_id,
                                            client_address=self.address)
            yield session

    def refused(self, refusal: str | None) -> None:
        """A refusal the answer carries without an error (a validation's ``reason``)."""
        self.refusal = refusal

    def member_identified(self, session: Session, member_id: uuid.UUID) -> None:
        if self.member_id == member_id:
            return
        self.member_id = member_id
        if self.active:
            service.refuse_if_throttled(session, limit=self._limit, member_id=member_id)

    def record(self) -> None:
        if not self.active or self.refusal is None or self.merchant_id is None:
            return
        try:
            with self._db.session_scope() as session:
                service.record_security_event(
                    session, merchant_id=self.merchant_id, kind=self.kind,
                    refusal=self.refusal, terminal_id=self.terminal_id,
                    client_address=self.address, member_id=self.member_id, code=self.code)
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
    except COUNTED as refusal:
        attempt.refusal = refusal.code
        if isinstance(refusal, VoucherRefused) and refusal.voucher_code:
            attempt.code = refusal.voucher_code
        raise
    finally:
        _current.reset(token)
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
