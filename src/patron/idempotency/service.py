"""Claims and stored answers of Idempotency-Keys (Stripe's rules).

A request with a key first *claims* it in a transaction of its own: a row in state
``running`` with a fresh token. A retry then finds the row: another request (method, path,
query or body) is ``IdempotencyKeyReused``; a stored answer is sent again; a running claim
is ``IdempotencyKeyInProgress`` (409, the client retries later: Patron does not wait).

The request's work commits in its own transaction, which also sets ``work_committed`` on
the claim (``mark_committed``, called by ``Database.session_scope`` before its commit), so
the claim says whether the work happened, atomically with the work. The answer is stored
by ``finish`` right after (the endpoint's transaction has closed before its answer is
serialised, so it cannot be written in the same transaction). If the process dies between
the two:

* the work had not committed: nothing happened. Once the claim's lease is over (``LEASE``)
  a retry takes the claim over and runs the request; the old request, if it was only slow,
  can no longer commit (its ``mark_committed`` finds another token and rolls it back);
* the work had committed: a retry gets 409 ``idempotency_answer_lost`` once the lease is
  over: the effect exists, the answer cannot be rebuilt, and running the request again
  would do it twice. The client looks the result up or sends a new key.

A 5xx answer is not stored: the claim is deleted (work not committed: a retry runs the
request again) or, if the work had committed, left as an answer lost.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, delete, select, update
from sqlalchemy.orm import Session

from patron.db import Database, insert_for, rowcount, table_of
from patron.idempotency.errors import (
    IdempotencyAnswerLost,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
)
from patron.idempotency.models import NO_MERCHANT, ClaimState, IdempotencyKey
from patron.kit import crypto
from patron.tenancy.service import Principal

# How long a running claim is trusted to belong to a live request.
LEASE = timedelta(minutes=5)
_CONTEXT = "idempotency.response"
_TABLE: Table = table_of(IdempotencyKey)


@dataclass
class Claim:
    tenant_id: uuid.UUID
    api_key_id: uuid.UUID
    key: str
    token: uuid.UUID

    def _is_mine(self) -> ColumnElement[bool]:
        return and_(_TABLE.c.tenant_id == self.tenant_id,
                    _TABLE.c.api_key_id == self.api_key_id, _TABLE.c.key == self.key,
                    _TABLE.c.claim == self.token)


@dataclass(frozen=True)
class Stored:
    """A stored answer: status, headers (name, value) and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    """What a retry must send again. A JSON body counts by its content (key order and
    spacing do not matter); an empty body counts as ``{}``; another body by its bytes."""
    try:
        parsed = json.loads(body) if body.strip() else {}
    except ValueError:
        canonical = b"bytes:" + body
    else:
        canonical = b"json:" + json.dumps(parsed, sort_keys=True, separators=(",", ":"),
                                          ensure_ascii=False).encode()
    digest = hashlib.sha256(f"{method} {path}?{query}\n".encode())
    digest.update(canonical)
    return digest.hexdigest()


def claim(database: Database, *, principal: Principal, key: str, digest: str, now: datetime,
          retention: timedelta, encryption_key: bytes) -> Claim | Stored:
    """The key for this request (a ``Claim``), or the answer it got before (``Stored``)."""
    assert principal.key_id is not None
    tenant_id = principal.merchant_id or NO_MERCHANT
    new = Claim(tenant_id=tenant_id, api_key_id=principal.key_id, key=key,
                token=uuid.uuid4())
    this_key = and_(_TABLE.c.tenant_id == tenant_id,
                    _TABLE.c.api_key_id == principal.key_id, _TABLE.c.key == key)
    with database.session_scope() as session:
        for _ in range(2):
            inserted = session.execute(insert_for(session, _TABLE).values(
                tenant_id=tenant_id, api_key_id=principal.key_id, key=key,
                request_hash=digest, state=ClaimState.running.value, claim=new.token,
                work_committed=False, locked_until=now + LEASE, created_at=now,
                expires_at=now + retention).on_conflict_do_nothing().returning(
                    _TABLE.c.claim)).first()
            if inserted is not None:
                return new
            existing = session.execute(select(_TABLE).where(this_key)).one_or_none()
            if existing is None or existing.expires_at <= now:
                # Gone meanwhile, or kept past its time: the key is free again.
                session.execute(delete(_TABLE).where(this_key, _TABLE.c.expires_at <= now))
                continue
            if existing.request_hash != digest:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was used with another request (method, path or "
                    "body); send a new key for a new request", field="Idempotency-Key")
            if existing.state == ClaimState.done.value:
                body = (crypto.decrypt(encryption_key, existing.response_body,
                                       context=_CONTEXT).encode("latin-1")
                        if existing.response_body is not None else b"")
                return Stored(status=existing.status_code,
                              headers=[(name, value)
                                       for name, value in existing.response_headers or []],
                              body=body)
            if existing.locked_until > now:
                raise IdempotencyKeyInProgress(
                    "a request with this Idempotency-Key is still running; retry in a "
                    "moment to get its answer", field="Idempotency-Key")
            if existing.work_committed:
                raise IdempotencyAnswerLost(
                    "the request with this Idempotency-Key was carried out but the server "
                    "stopped before storing its answer; look the result up, or send a new "
                    "key", field="Idempotency-Key")
            taken = session.execute(update(_TABLE).where(
                this_key, _TABLE.c.claim == existing.claim,
                _TABLE.c.work_committed.is_(False)).values(
                    claim=new.token, locked_until=now + LEASE))
            if rowcount(taken) == 1:  # an abandoned claim whose work never committed
                return new
        raise IdempotencyKeyInProgress("a request with this Idempotency-Key is running; "
                                       "retry in a moment", field="Idempotency-Key")


def mark_committed(session: Session, claim: Claim) -> None:
    """In the request's own transaction, just before it commits: the work is done under
    this claim. A claim taken over meanwhile refuses the commit (the work rolls back)."""
    marked = session.execute(update(_TABLE).where(claim._is_mine()).values(
        work_committed=True))
    if rowcount(marked) != 1:
        raise IdempotencyKeyInProgress(
            "another request took this Idempotency-Key over; retry to get its answer",
            field="Idempotency-Key")


def finish(database: Database, claim: Claim, answer: Stored, *, now: datetime,
           encryption_key: bytes) -> None:
    """Store the answer for the retries (nothing if the claim was taken over)."""
    with database.session_scope() as session:
        session.execute(update(_TABLE).where(claim._is_mine()).values(
            state=ClaimState.done.value, status_code=answer.status,
            response_headers=[[name, value] for name, value in answer.headers],
            response_body=crypto.encrypt(encryption_key, answer.body.decode("latin-1"),
                                         context=_CONTEXT),
            locked_until=now))


def abandon(database: Database, claim: Claim, *, now: datetime) -> None:
    """No answer to store (a 5xx, or the request failed): free the key if the work did not
    commit; otherwise the claim stays, an answer lost from now on."""
    with database.session_scope() as session:
        session.execute(delete(_TABLE).where(claim._is_mine(),
                                             _TABLE.c.work_committed.is_(False)))
        session.execute(update(_TABLE).where(claim._is_mine()).values(locked_until=now))


def purge(database: Database, now: datetime) -> int:
    """Delete the keys kept past their time; how many."""
    with database.session_scope() as session:
        return rowcount(session.execute(delete(_TABLE).where(_TABLE.c.expires_at <= now)))
