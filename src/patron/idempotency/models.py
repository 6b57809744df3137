"""One row per Idempotency-Key a caller has used: the claim while its request runs, then
the answer a retry gets again.

Keyed by tenant first (DESIGN, scale path): the merchant of the key that sent it (the
nil UUID for keys of no merchant: the operator, a coalition sales rep), then the API key,
then the key the client chose. Rows expire (``expires_at``) and a job deletes them.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, Boolean, CheckConstraint, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime, sql_in

# Keys of no merchant are kept under this tenant.
NO_MERCHANT = uuid.UUID(int=0)


class ClaimState(StrEnum):
    running = "running"  # the request is under way (or its process died: see service.py)
    done = "done"  # the answer is stored


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint(f"state IN ({sql_in(ClaimState)})", name="state"),
        CheckConstraint("state <> 'done' OR status_code IS NOT NULL", name="done_has_answer"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    api_key_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the method, path, query and canonical body: what a retry must send again.
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # The running request's token: its commit and its answer count only while it holds it.
    claim: Mapped[uuid.UUID]
    # Set in the same transaction as the request's own work (``Database.session_scope``).
    work_committed: Mapped[bool] = mapped_column(Boolean, default=False)
    # A running claim past this time whose work never committed was abandoned.
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSON)
    # AES-GCM with the personal-data key: an answer may hold personal data or a new secret.
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
