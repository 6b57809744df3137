"""New codes written with PostgreSQL's ``COPY``: the fast path of ``service.insert_codes``.

On PostgreSQL (psycopg) a chunk of new codes goes to ``vouchers`` as one
``COPY … FROM STDIN`` in the caller's transaction (its savepoint), instead of a multi-row
``INSERT``: the server skips parsing and planning a statement per thousand rows, and the
client skips binding twelve parameters per row. The rows are the ones the ``INSERT``
stores: every row of a chunk shares the same values but its id and its code, so those are
formatted once per chunk. The text format is written here rather than row by row through
psycopg's ``write_row`` (which, with ``uuid.uuid4()`` per row, cost five times the
application's whole share of a million-code batch, see docs/vouchers.md): ``None`` is
``\\N``, a timestamp goes through ``UTCDateTime`` (naive ones refused) and is written in
ISO 8601 with its offset, and text is escaped. Ids are time-ordered version-7 UUIDs
(RFC 9562: the millisecond, then 74 random bits), drawn for the whole chunk at once: each
chunk's ids go to the right-hand end of the primary key's index instead of to a random
page of it, which saves about a tenth of the database's work per code.

A unique or foreign-key violation during the COPY is raised as SQLAlchemy's
``IntegrityError``, as from the ``INSERT``, so the caller's savepoint and retry work alike.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

from sqlalchemy.orm import Session

from patron.db import copy_field, copy_in, uses_copy

# The columns a chunk writes: the two that differ per row first, then the shared ones.
SHARED_COLUMNS = ("merchant_id", "offer_id", "member_id", "max_redemptions",
                  "redemptions_count", "valid_from", "valid_until", "source", "batch_id",
                  "issued_at")
COPY_SQL = f"COPY vouchers (id, code, {', '.join(SHARED_COLUMNS)}) FROM STDIN"
_UUID_BYTES = 16
__all__ = ["copy_field", "copy_vouchers", "time_ordered_ids", "uses_copy"]
_SPECIAL = "\\\t\n\r"


def time_ordered_ids(count: int, *, now_ms: int | None = None) -> list[str]:
    """``count`` version-7 UUIDs (RFC 9562): 48 bits of Unix milliseconds, then 74 bits from
    ``os.urandom``; as 32 hex digits, which PostgreSQL reads as a ``uuid``."""
    import numpy as np  # here: the server's start does not pay for it

    millis = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    raw = np.frombuffer(os.urandom(_UUID_BYTES * count), dtype=np.uint8)
    raw = raw.reshape(count, _UUID_BYTES).copy()
    raw[:, :6] = np.frombuffer(millis.to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70  # version 7
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 9562 variant
    text = raw.tobytes().hex()
    width = 2 * _UUID_BYTES
    return [text[start:start + width] for start in range(0, len(text), width)]


def copy_vouchers(session: Session, *, codes: Sequence[str],
                  shared: Mapping[str, object]) -> None:
    """One row of ``vouchers`` per code, each with a new id and the ``shared`` values
    (every column of ``SHARED_COLUMNS``), in one ``COPY`` in the session's transaction."""
    if not codes:
        return
    joined = "".join(codes)
    if any(special in joined for special in _SPECIAL):
        # Canonical codes are base32 symbols: written as they are, unescaped.
        raise ValueError("a code holds a character COPY's text format escapes")
    tail = "\t".join(copy_field(shared[column]) for column in SHARED_COLUMNS)
    data = "".join(f"{row_id}\t{code}\t{tail}\n"
                   for row_id, code in zip(time_ordered_ids(len(codes)), codes, strict=True))
    with copy_in(session, COPY_SQL) as copy:
        copy.write(data)
