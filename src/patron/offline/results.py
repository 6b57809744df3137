"""What a replayed entry is answered (and what a resend of it is answered again): shared by
the one-by-one and the set-wise replay."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from patron.offline.schemas import BatchEntry, Difference, EntryResult, EntryStatus


def differences(entry: BatchEntry, transaction: dict[str, Any]) -> list[Difference]:
    """Each figure where the server's committed sale differs from the till's provisional."""
    provisional = entry.provisional
    figures = [("points_earned", provisional.points_earned,
                int(transaction.get("points_earned", 0))),
               ("points_burned", provisional.points_burned,
                int(transaction.get("points_burned", 0))),
               ("points_discount", provisional.discounts.points,
                int(transaction.get("points_discount", 0))),
               ("voucher_discount", sum(provisional.discounts.vouchers.values()),
                int(transaction.get("voucher_discount", 0))),
               ("miles_discount", provisional.discounts.miles,
                int(transaction.get("miles_discount", 0)))]
    return [Difference(figure=name, provisional=mine, server=theirs)
            for name, mine, theirs in figures if mine != theirs]


def entry_result(entry: BatchEntry, *, transaction: dict[str, Any], status: EntryStatus,
                 exceptions: list[uuid.UUID]) -> EntryResult:
    # Built from values that are already what the fields hold (the committed answer as
    # JSON-ready data, ids, models): nothing to validate again.
    return EntryResult.model_construct(
        seq=entry.seq, receipt_no=entry.transaction.receipt_no, status=status,
        transaction=transaction, differences=differences(entry, transaction),
        exceptions=exceptions, problem=None)


def entry_row(result: EntryResult, *, terminal_id: uuid.UUID, merchant_id: uuid.UUID,
              transaction_id: uuid.UUID, allowance_id: uuid.UUID | None, digest: str,
              now: datetime) -> dict[str, Any]:
    """The ``offline_entries`` row that answers a resend of this entry."""
    return {"terminal_id": terminal_id, "receipt_no": result.receipt_no,
            "merchant_id": merchant_id, "transaction_id": transaction_id,
            "allowance_id": allowance_id, "entry_hash": digest,
            "result_json": result.model_dump_json(), "created_at": now}
