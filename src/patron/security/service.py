"""Recording security events, counting a subject's recent failures, listing the log.

Services only flush; the caller owns the transaction. A refused request rolls its own
transaction back, so whoever records its refusal does it in a transaction of its own
(``patron.security.attempts`` for requests).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Label, ScalarSelect, Select, bindparam, select
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.kit.clock import utcnow
from patron.security.errors import TooManyFailures
from patron.security.models import SecurityEvent, SecurityEventKind, Throttle
from patron.security.schemas import SecurityEventRead
from patron.tenancy.models import Role
from patron.tenancy.service import Principal, get_merchant
from patron.vouchers import codes

CODE_PREFIX_LENGTH = 4
CODE_DIGEST_LENGTH = 32
MAX_ADDRESS_LENGTH = 64
MAX_DETAIL_LENGTH = 500


def code_trace(text: str, key: bytes) -> tuple[str, str]:
    """What the log keeps of a code tried: its first symbols and a keyed digest of it.

    A code in any accepted form (display, canonical, numeric barcode) is reduced to its
    canonical form first, so the same code tried in two forms has one digest. Text that is
    no code is kept as its first letters and digits only."""
    try:
        canonical = codes.parse_any(text).code
    except (codes.CodeFormatError, codes.CodeCheckError):
        canonical = "".join(ch for ch in text.upper() if ch.isascii() and ch.isalnum())
    digest = hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()
    return canonical[:CODE_PREFIX_LENGTH], digest[:CODE_DIGEST_LENGTH]


def record_security_event(session: Session, *, merchant_id: uuid.UUID,
                          kind: SecurityEventKind, refusal: str,
                          throttle: Throttle | None = None,
                          terminal_id: uuid.UUID | None = None,
                          client_address: str | None = None,
                          member_id: uuid.UUID | None = None, code: str | None = None,
                          detail: str | None = None,
                          occurred_at: datetime | None = None) -> SecurityEvent:
    """Append one event. With a ``throttle`` it counts towards that limit for its
    terminal, its member and its client address at its merchant; without, it is only
    recorded. ``code`` is the text tried; only its trace is stored."""
    prefix, digest = (code_trace(code, get_settings().derived_key("security-code"))
                      if code else (None, None))
    event = SecurityEvent(
        merchant_id=merchant_id, kind=kind.value, terminal_id=terminal_id,
        client_address=client_address[:MAX_ADDRESS_LENGTH] if client_address else None,
        member_id=member_id, code_prefix=prefix, code_digest=digest, refusal=refusal[:64],
        detail=detail[:MAX_DETAIL_LENGTH] if detail else None,
        throttle=throttle.value if throttle else None, occurred_at=occurred_at or utcnow())
    session.add(event)
    session.flush()
    return event


# --- the throttle ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Limit:
    throttle: Throttle
    failures: int  # 0: no limit
    window: timedelta

    @classmethod
    def vouchers(cls) -> Limit:
        settings = get_settings()
        return cls(Throttle.voucher, failures=settings.voucher_failure_limit,
                   window=timedelta(seconds=settings.voucher_failure_window_seconds))

    @classmethod
    def identification(cls) -> Limit:
        settings = get_settings()
        return cls(Throttle.identify, failures=settings.identify_failure_limit,
                   window=timedelta(seconds=settings.identify_failure_window_seconds))

    def parameters(self, now: datetime) -> dict[str, Any]:
        """The bound parameters every count of this limit takes (``_nth_newest``)."""
        return {"throttle": self.throttle.value, "since": now - self.window}


SUBJECT_NAMES = {"terminal_id": "this terminal", "client_address": "this address",
                 "member_id": "this member"}


def _nth_newest(name: str, n: int, subject: Any = None,
                merchant: Any = None) -> ScalarSelect[datetime]:
    """The time of the subject's n-th newest failure counted towards ``:throttle`` after
    ``:since`` (NULL when it has fewer): at most n index entries read, newest first. The
    subject is the parameter of its name, or ``subject`` (a column of an enclosing
    statement). A client address is a subject within one merchant only — the
    ``:merchant_id``, or ``merchant`` (a column) — so one merchant's failures never
    throttle another merchant's till behind the same address."""
    value = bindparam(name) if subject is None else subject
    conditions = [SecurityEvent.throttle == bindparam("throttle"),
                  getattr(SecurityEvent, name) == value,
                  SecurityEvent.occurred_at > bindparam("since")]
    if name == "client_address":
        conditions.append(SecurityEvent.merchant_id
                          == (bindparam("merchant_id") if merchant is None else merchant))
    return (select(SecurityEvent.occurred_at)
            .where(*conditions)
            .order_by(SecurityEvent.occurred_at.desc())
            .limit(1).offset(n - 1)
            .scalar_subquery())


@lru_cache(maxsize=64)
def _failures_statement(names: tuple[str, ...], n: int) -> Select[*tuple[Any, ...]]:
    # Built once per set of subjects and limit: every voucher attempt runs it first.
    return select(*(_nth_newest(name, n).label(name) for name in names))


def failure_columns(n: int, *, terminal: Any, merchant: Any) -> list[Label[datetime]]:
    """The throttle check as columns of a larger statement (a till's read): the n-th newest
    failure of the terminal ``terminal`` (a column) and of the ``:client_address`` at the
    merchant ``merchant`` (a column), counted towards ``:throttle`` after ``:since``
    (``Limit.parameters``), as ``terminal_failure`` and ``address_failure``; ``throttled``
    reads them."""
    return [_nth_newest("terminal_id", n, terminal).label("terminal_failure"),
            _nth_newest("client_address", n, merchant=merchant).label("address_failure")]


def throttled(failures: Mapping[Any, datetime | None], *, limit: Limit,
              now: datetime) -> tuple[int, str] | None:
    """Seconds until the most throttled subject may fail again, and which subject it is,
    from each subject's n-th newest failure; None when none has reached the limit."""
    waits = {str(name): (at + limit.window - now).total_seconds()
             for name, at in failures.items() if at is not None}
    if not waits:
        return None
    subject = max(waits, key=lambda name: waits[name])
    return max(1, math.ceil(waits[subject])), subject


def retry_after(session: Session, *, limit: Limit, now: datetime,
                terminal_id: uuid.UUID | None = None, merchant_id: uuid.UUID | None = None,
                client_address: str | None = None,
                member_id: uuid.UUID | None = None) -> tuple[int, str] | None:
    """Seconds until the most throttled of the given subjects may fail again, and which
    subject it is; None when none has reached the limit. One statement. The client
    address counts only with the merchant it is counted at."""
    if limit.failures <= 0:
        return None
    subjects: dict[str, Any] = {name: value for name, value in (
        ("terminal_id", terminal_id),
        ("client_address", client_address if merchant_id is not None else None),
        ("member_id", member_id)) if value is not None}
    if not subjects:
        return None
    statement = _failures_statement(tuple(subjects), limit.failures)
    parameters = {**subjects, **limit.parameters(now)}
    if "client_address" in subjects:
        parameters["merchant_id"] = merchant_id
    row = session.connection().execute(statement, parameters).one()
    return throttled(row._mapping, limit=limit, now=now)


def refuse_if_throttled(session: Session, *, limit: Limit,
                        terminal_id: uuid.UUID | None = None,
                        merchant_id: uuid.UUID | None = None,
                        client_address: str | None = None,
                        member_id: uuid.UUID | None = None) -> None:
    throttled = retry_after(session, limit=limit, now=utcnow(), terminal_id=terminal_id,
                            merchant_id=merchant_id, client_address=client_address,
                            member_id=member_id)
    if throttled is None:
        return
    seconds, subject = throttled
    raise TooManyFailures(
        f"more than {limit.failures} failed attempts in "
        f"{limit.window.total_seconds():g} seconds from {SUBJECT_NAMES[subject]}; "
        f"try again in {seconds} s", retry_after=seconds)


# --- the merchant's view ---------------------------------------------------------------------

@dataclass(frozen=True)
class EventQuery:
    merchant_id: uuid.UUID | None = None
    kind: str | None = None
    terminal_id: uuid.UUID | None = None
    since: datetime | None = None
    cursor: int | None = None
    limit: int = 100


def _read(event: SecurityEvent) -> SecurityEventRead:
    return SecurityEventRead(
        id=event.id, merchant_id=event.merchant_id, kind=event.kind,
        terminal_id=event.terminal_id, client_address=event.client_address,
        member_id=event.member_id, code_prefix=event.code_prefix,
        code_digest=event.code_digest, refusal=event.refusal, detail=event.detail,
        counted=event.throttle is not None, occurred_at=event.occurred_at)


def list_events(session: Session, *, actor: Principal,
                query: EventQuery) -> tuple[list[SecurityEventRead], int | None]:
    """A page of the log, newest first: a merchant key sees its own merchant's events
    (naming another merchant is 404), the operator every merchant's or the one named."""
    actor.require(Role.operator, Role.merchant)
    if query.merchant_id is not None:
        get_merchant(session, actor=actor, merchant_id=query.merchant_id)
    scope = query.merchant_id if actor.role == Role.operator else actor.merchant_id
    statement = select(SecurityEvent)
    if scope is not None:
        statement = statement.where(SecurityEvent.merchant_id == scope)
    if query.kind is not None:
        statement = statement.where(SecurityEvent.kind == query.kind)
    if query.terminal_id is not None:
        statement = statement.where(SecurityEvent.terminal_id == query.terminal_id)
    if query.since is not None:
        statement = statement.where(SecurityEvent.occurred_at >= query.since)
    if query.cursor is not None:
        statement = statement.where(SecurityEvent.id < query.cursor)
    rows = list(session.scalars(statement.order_by(SecurityEvent.id.desc())
                                .limit(query.limit + 1)))
    more = len(rows) > query.limit
    rows = rows[:query.limit]
    return [_read(row) for row in rows], (rows[-1].id if more else None)
