"""A made-up history in the import formats (docs/imports.md): for the demo, the benchmark
and the tests. Members buy at their own pace: a few once, most again and again, some
stop after a while — what the lifetime models (``scores``) are fitted to."""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO

CATEGORIES = ("food", "drinks", "household", "beauty", "clothing", "books")


@dataclass(frozen=True)
class History:
    members: int
    purchases: int


def write_history(members_csv: IO[str], purchases_csv: IO[str], *, members: int,
                  purchases: int, start: datetime, end: datetime, store_codes: Sequence[str],
                  currency: str, minor_units: int, seed: int = 7,
                  prefix: str = "M", email_domain: str = "example.com") -> History:
    """Write ``members`` member rows and about ``purchases`` purchase rows (one or more
    lines each) between ``start`` and ``end`` (aware datetimes), rows sorted by time."""
    rng = random.Random(seed)  # noqa: S311 - made-up data, not secrets
    span = (end - start).total_seconds()
    member_writer = csv.writer(members_csv)
    member_writer.writerow(["external_ref", "email", "birth_year", "gender", "enrolled_at"])
    # Each member's share of the purchases (a heavy-tailed rate) and when they stop.
    weights = [rng.lognormvariate(0, 1) for _ in range(members)]
    scale = purchases / sum(weights)
    sales: list[tuple[float, int]] = []
    for number in range(members):
        joined = rng.random() * span * 0.8
        stops = joined + (span - joined) * (1 if rng.random() < 0.6 else rng.random())
        count = max(1, round(weights[number] * scale))
        sales.extend((joined + (stops - joined) * (0 if index == 0 else rng.random()), number)
                     for index in range(count))
        member_writer.writerow([
            f"{prefix}{number:07d}", f"{prefix.lower()}{number}@{email_domain}",
            rng.randint(1950, 2005), rng.choice(("female", "male", "")),
            (start + timedelta(seconds=joined)).isoformat(timespec="seconds")])
    sales.sort()
    writer = csv.writer(purchases_csv)
    writer.writerow(["external_ref", "receipt_no", "occurred_at", "amount", "currency",
                     "store_code", "sku", "category", "quantity"])
    unit = 10 ** minor_units
    rows = 0
    for index, (offset, number) in enumerate(sales):
        moment = (start + timedelta(seconds=offset)).isoformat(timespec="seconds")
        store = store_codes[number % len(store_codes)]
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            category = rng.choice(CATEGORIES)
            quantity = rng.choice((1, 1, 1, 2, 3))
            price = rng.randint(100, 5000) * quantity
            writer.writerow([f"{prefix}{number:07d}", f"R{index:08d}", moment,
                             f"{price / unit:.{minor_units}f}", currency, store,
                             f"{category}-{rng.randint(1, 40):03d}", category, quantity])
            rows += 1
    return History(members=members, purchases=len(sales))
