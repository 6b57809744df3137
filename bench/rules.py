"""Campaign rules: evaluating 100 active campaigns' conditions on a 50-line basket.

Acceptance (issue 5): ``make bench`` prints rules evaluation p50 / p99 for 100 active
campaigns on a 50-line basket, in process, target p99 <= 2 ms.

What one run does, in this process and without a database: ``--campaigns`` condition
trees are drawn (seeded) from templates that read every group of fields — the purchase
(categories, units per category and SKU, totals, channel), the member (segment, scores,
P(alive), tier, consents, affinities), the environment (local hour and weekday, weather,
temperature, holiday) and the inventory (overstock, stock) — each tree 3 to 7
comparisons under ``all`` / ``any`` / ``not``, and compiled (not timed). Then, for each
of ``--baskets`` measured checkouts: a ``--lines``-line basket turned into the purchase
fields (``campaigns.context.purchase_fields``), merged with the member's, the store's
and the inventory's values, and every campaign's condition evaluated — all of it timed,
as the checkout will do it. Printed: the machine, the campaigns and how many held, and
p50 / p99 / max per checkout, PASS / FAIL on p99.

    python -m bench rules [--campaigns 100] [--lines 50] [--baskets 5000] [--seed 5]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.environment import describe_machine, say, verdict
from patron.campaigns.conditions import Condition, compile_condition
from patron.campaigns.context import Line, purchase_fields

TARGET_MS = 2.0
CATEGORIES = ("coffee", "bakery", "dairy", "snacks", "tobacco", "produce", "drinks", "deli")
SEGMENTS = ("new", "champions", "loyal", "at_risk", "hibernating", "promising",
            "needs_attention")
WEATHER = ("rain", "sunny", "cloudy", "snow", "drizzle")
# The SKUs the conditions name (the checkout benchmark passes its catalogue's).
SKUS = tuple(f"SKU-{n}" for n in range(200))


def _leaf(rng: random.Random, skus: Sequence[str]) -> dict[str, Any]:
    category = rng.choice(CATEGORIES)
    sku = skus[rng.randrange(len(skus))]
    choices: list[dict[str, Any]] = [
        {"field": "purchase.categories", "op": "contains", "value": category},
        {"field": "purchase.category_quantity", "key": category, "op": "ge",
         "value": rng.randint(1, 4)},
        {"field": "purchase.sku_quantity", "key": sku, "op": "ge", "value": 1},
        {"field": "purchase.total_minor", "op": "ge", "value": rng.randrange(500, 20_000)},
        {"field": "purchase.items", "op": "between", "value": [5, rng.randint(20, 120)]},
        {"field": "purchase.channel", "op": "in", "value": ["store", "web"]},
        {"field": "member.segment", "op": "in", "value": rng.sample(SEGMENTS, 2)},
        {"field": "member.recency_score", "op": "le", "value": rng.randint(1, 5)},
        {"field": "member.p_alive", "op": "lt", "value": round(rng.random(), 2)},
        {"field": "member.tier", "op": "eq", "value": rng.choice(("gold", "silver"))},
        {"field": "member.consents", "op": "contains", "value": "email"},
        {"field": "member.affinity", "key": category, "op": "gt", "value": 0.3},
        {"field": "env.hour", "op": "between", "value": [6, rng.randint(9, 14)]},
        {"field": "env.weekday", "op": "in", "value": [1, 2, 3, 4, 5]},
        {"field": "env.weather", "op": "in", "value": rng.sample(WEATHER, 2)},
        {"field": "env.temperature_c", "op": "lt", "value": rng.randint(0, 25)},
        {"field": "env.holiday", "op": "eq", "value": False},
        {"field": "inventory.overstock", "key": sku, "op": "eq", "value": True},
        {"field": "inventory.stock", "key": sku, "op": "gt", "value": 10},
    ]
    return rng.choice(choices)


def draw_trees(count: int, rng: random.Random,
               skus: Sequence[str] = SKUS) -> list[dict[str, Any]]:
    """``count`` condition trees of 3 to 7 comparisons, as a campaign stores them (the
    checkout benchmark writes them as real campaigns)."""
    trees = []
    for _ in range(count):
        leaves = [_leaf(rng, skus) for _ in range(rng.randint(3, 7))]
        split = rng.randint(1, len(leaves) - 1)
        tree: dict[str, Any] = {"all": [*leaves[:split], {"any": leaves[split:]}]}
        if rng.random() < 0.2:
            tree["all"].append({"not": _leaf(rng, skus)})
        trees.append(tree)
    return trees


def draw_campaigns(count: int, rng: random.Random) -> list[Condition]:
    """``count`` compiled trees of 3 to 7 comparisons."""
    return [compile_condition(tree) for tree in draw_trees(count, rng)]


def draw_basket(lines: int, rng: random.Random) -> tuple[list[Line], int]:
    basket = [Line(sku=f"SKU-{rng.randrange(200)}", category=rng.choice(CATEGORIES),
                   quantity=rng.randint(1, 3)) for _ in range(lines)]
    return basket, sum(line.quantity * rng.randrange(100, 2_000) for line in basket)


MEMBER: dict[str, Any] = {
    "member.segment": "at_risk", "member.recency_score": 2, "member.frequency_score": 4,
    "member.monetary_score": 3, "member.p_alive": 0.62, "member.tier": "gold",
    "member.consents": frozenset({"email", "push"}), "member.purchases": 31,
    "member.affinity": {"coffee": 0.8, "bakery": 0.35, "dairy": 0.1},
}
STORE: dict[str, Any] = {"env.hour": 9, "env.weekday": 3, "env.weather": "rain",
                         "env.temperature_c": 11.5, "env.holiday": False,
                         "inventory.overstock": {f"SKU-{n}": True for n in range(0, 200, 7)},
                         "inventory.stock": {f"SKU-{n}": n % 40 for n in range(200)}}


@dataclass(frozen=True)
class Measured:
    campaigns: int
    lines: int
    held: int  # campaigns whose condition held, over all baskets
    per_checkout_ms: list[float]

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.per_checkout_ms)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(*, campaigns: int, lines: int, baskets: int, seed: int) -> Measured:
    rng = random.Random(seed)
    conditions = draw_campaigns(campaigns, rng)
    drawn = [draw_basket(lines, rng) for _ in range(baskets)]
    held = 0
    timings = []
    gc.collect()
    gc.disable()  # a collection is not the rules' cost; the server freezes its heap
    try:
        for basket, total in drawn:
            started = time.perf_counter()
            context = {**MEMBER, **STORE,
                       **purchase_fields(basket, total_minor=total, channel="store")}
            held += sum(1 for condition in conditions if condition.holds(context))
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        gc.enable()
    return Measured(campaigns=campaigns, lines=lines, held=held, per_checkout_ms=timings)


def report(measured: Measured) -> list[str]:
    p50, p99 = measured.percentile(0.5), measured.percentile(0.99)
    baskets = len(measured.per_checkout_ms)
    return [
        f"{measured.campaigns} campaigns, {measured.lines}-line baskets, {baskets:,} "
        f"checkouts: {measured.held / baskets:.1f} campaigns held per checkout on average",
        f"rules evaluation per checkout: p50 {p50:.3f} ms, p99 {p99:.3f} ms, "
        f"max {max(measured.per_checkout_ms):.3f} ms",
        f"target: p99 <= {TARGET_MS:g} ms: {verdict(p99 <= TARGET_MS)}",
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench rules", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--campaigns", type=int, default=100)
    parser.add_argument("--lines", type=int, default=50)
    parser.add_argument("--baskets", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    say(f"machine:  {describe_machine()}")
    measured = measure(campaigns=args.campaigns, lines=args.lines, baskets=args.baskets,
                       seed=args.seed)
    for line in report(measured):
        say(line)
