"""What a replayed entry is answered (and what a resend of it is answered again): shared by
the one-by-one and the set-wise replay."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from patron.offline.schemas import BatchEntry, Difference, EntryResult, EntryStatus


def differences(entry: BatchEntry, transaction: Mapping[str, Any]) -> list[Difference]:
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


_NO_TRANSACTION = ',"transaction":null,'


def committed_json(entry: BatchEntry, *, answer_json: str, figures: Mapping[str, int]) -> str:
    """A committed entry's answer as JSON text, the commit's answer (``answer_json``) set
    in as it is: the same document ``entry_result(...).model_dump_json()`` makes, without
    turning the answer into data and back twice. ``figures``: the committed sale's
    points_earned, points_burned and the three discounts."""
    shell = EntryResult.model_construct(
        seq=entry.seq, receipt_no=entry.transaction.receipt_no, status=EntryStatus.committed,
        transaction=None, differences=differences(entry, figures), exceptions=[],
        problem=None).model_dump_json()
    # The receipt is a JSON string (its quotes escaped), so the first match is the field.
    assert _NO_TRANSACTION in shell
    return shell.replace(_NO_TRANSACTION, f',"transaction":{answer_json},', 1)


def entry_row(*, receipt_no: str, result_json: str, terminal_id: uuid.UUID,
              merchant_id: uuid.UUID, transaction_id: uuid.UUID,
              allowance_id: uuid.UUID | None, digest: str, now: datetime) -> dict[str, Any]:
    """The ``offline_entries`` row that answers a resend of this entry."""
    return {"terminal_id": terminal_id, "receipt_no": receipt_no,
            "merchant_id": merchant_id, "transaction_id": transaction_id,
            "allowance_id": allowance_id, "entry_hash": digest,
            "result_json": result_json, "created_at": now}
