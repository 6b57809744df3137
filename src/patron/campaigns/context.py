"""The values a checkout's conditions read about the purchase itself, from its lines.
Pure: the checkout passes what it has priced (``conditions.FIELDS``, group ``purchase``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Line:
    sku: str
    category: str | None
    quantity: int


def purchase_fields(lines: Sequence[Line], *, total_minor: int, channel: str,
                    offers_used: Iterable[str] = ()) -> dict[str, Any]:
    """``purchase.*`` for a basket: totals, SKUs and categories bought, units per
    category and per SKU, the offers of the codes used."""
    by_category: dict[str, int] = {}
    by_sku: dict[str, int] = {}
    items = 0
    for line in lines:
        items += line.quantity
        by_sku[line.sku] = by_sku.get(line.sku, 0) + line.quantity
        if line.category:
            by_category[line.category] = by_category.get(line.category, 0) + line.quantity
    return {"purchase.total_minor": total_minor, "purchase.lines": len(lines),
            "purchase.items": items, "purchase.channel": channel,
            "purchase.skus": frozenset(by_sku), "purchase.categories": frozenset(by_category),
            "purchase.category_quantity": by_category, "purchase.sku_quantity": by_sku,
            "purchase.vouchers": frozenset(offers_used)}
