"""Human-readable reasons for ledger history lines (pure: no session).

An entry's stored ``reason`` is written for the books ("purchase R-123", "tap at Ginza",
a correction's own text); members and staff read a sentence. The sentence is built from
the entry's kind, unit and sign, plus what the history query looked up: the merchant's
name, the entry a return reverses, and the entry that created an expired lot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from patron.ledger.models import EntryKind, Unit

# How the POS pipeline and the tap recorder word their entries (patron.pos.service,
# patron.operations.service); the history tests go through both, so a change shows.
PURCHASE_PREFIX = "purchase "
TAP_PREFIX = "tap at "


@dataclass(frozen=True)
class Origin:
    """Another entry an item refers to: the one a return reverses, or the one that
    created a lot that expired."""

    kind: str
    reason: str
    occurred_at: datetime


@dataclass(frozen=True)
class Facts:
    kind: str
    unit: str
    amount: int  # the signed change to the member's account
    stored_reason: str
    merchant_name: str | None
    timezone: str | None  # the merchant's, for dates
    original: Origin | None = None  # a return's reversed entry
    lot_origin: Origin | None = None  # an expiry's lot's creating entry


def receipt_of(reason: str) -> str | None:
    """The receipt number in a purchase's stored reason ("purchase R-123" → "R-123")."""
    if reason.startswith(PURCHASE_PREFIX):
        receipt = reason[len(PURCHASE_PREFIX):].strip()
        return receipt or None
    return None


def describe(facts: Facts) -> str:
    if facts.unit == Unit.miles.value:
        return _miles(facts)
    return _points(facts)


def _at(merchant_name: str | None) -> str:
    return f" at {merchant_name}" if merchant_name else ""


def _detail(stored_reason: str) -> str:
    """" — receipt R-123" for a purchase, " — <stored text>" otherwise, "" if none."""
    receipt = receipt_of(stored_reason)
    if receipt:
        return f" — receipt {receipt}"
    text = stored_reason.strip()
    return f" — {text}" if text else ""


def _local_date(moment: datetime, timezone: str | None) -> str:
    return moment.astimezone(ZoneInfo(timezone or "UTC")).date().isoformat()


def _returned(facts: Facts, unit_name: str) -> str:
    original = facts.original
    receipt = receipt_of(original.reason) if original is not None else None
    taken_back = facts.amount < 0
    if original is not None and original.kind == EntryKind.tap.value:
        return (f"Card tap reversed: {unit_name} taken back" if taken_back
                else f"Card tap reversed: {unit_name} given back")
    purchase = f"returned purchase {receipt}" if receipt else \
        f"a returned purchase{_at(facts.merchant_name)}"
    if taken_back:
        return f"{purchase[0].upper()}{purchase[1:]}: {unit_name} taken back"
    return f"{unit_name.capitalize()} restored from {purchase}"


def _points(facts: Facts) -> str:
    kind = facts.kind
    if kind == EntryKind.earn.value:
        return f"Earned{_at(facts.merchant_name)}{_detail(facts.stored_reason)}"
    if kind == EntryKind.burn.value:
        return f"Redeemed{_at(facts.merchant_name)}{_detail(facts.stored_reason)}"
    if kind == EntryKind.tap.value:
        if facts.stored_reason.startswith(TAP_PREFIX):
            return f"Card tap at {facts.stored_reason[len(TAP_PREFIX):].strip()}"
        return f"Card tap{_at(facts.merchant_name)}"
    if kind == EntryKind.return_.value:
        return _returned(facts, "points")
    if kind == EntryKind.expire.value:
        origin = facts.lot_origin
        if origin is None:
            return "Expired"
        verb = {EntryKind.earn.value: "earned", EntryKind.tap.value: "earned",
                EntryKind.return_.value: "given back",
                EntryKind.adjust.value: "credited"}.get(origin.kind, "credited")
        return f"Expired ({verb} {_local_date(origin.occurred_at, facts.timezone)})"
    if kind == EntryKind.adjust.value:
        text = facts.stored_reason.strip()
        return f"Correction: {text}" if text else "Correction"
    text = facts.stored_reason.strip()
    return f"Transfer: {text}" if text else "Transfer"


def _miles(facts: Facts) -> str:
    kind = facts.kind
    if kind in (EntryKind.earn.value, EntryKind.tap.value):
        return f"Coalition miles earned{_at(facts.merchant_name)}{_detail(facts.stored_reason)}"
    if kind == EntryKind.burn.value:
        return (f"Coalition miles redeemed{_at(facts.merchant_name)}"
                f"{_detail(facts.stored_reason)}")
    if kind == EntryKind.return_.value:
        return _returned(facts, "miles")
    if kind == EntryKind.expire.value:
        return "Coalition miles expired"
    text = facts.stored_reason.strip()
    label = "Miles correction" if kind == EntryKind.adjust.value else "Miles transfer"
    return f"{label}: {text}" if text else label
