"""Local pricing equals the server's on plain baskets (no tiers, no vouchers): the same
points earned, discount and total, for every rounding rule and category rule."""

from __future__ import annotations

import random
from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.db import Database
from patron.pos_client import pricing
from tests.conftest import World, auth
from tests.pos.conftest import enrol, give_points, purchase, put_program

PROGRAMS = [
    {"earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
     "category_multipliers_bp": {"coffee": 20000}, "excluded_categories": ["tobacco"],
     "point_value_minor": 1, "min_burn": 100, "expiry_months": 12},
    {"earn_points": 3, "earn_per_amount": 250, "rounding": "round_half_up",
     "category_multipliers_bp": {"Coffee": 15000, "bakery": 12500},
     "excluded_categories": ["gift_card"], "point_value_minor": 2, "min_burn": 1,
     "expiry_months": None},
    {"earn_points": 7, "earn_per_amount": 1000, "rounding": "ceil",
     "category_multipliers_bp": {}, "excluded_categories": [], "point_value_minor": 1,
     "min_burn": 50, "expiry_months": None},
]
CATEGORIES = [None, "coffee", "Coffee ", "tobacco", "bakery", "gift_card", "toys"]


def baskets(seed: int) -> list[tuple[list[dict[str, Any]], int]]:
    rng = random.Random(seed)
    made = []
    for _ in range(12):
        lines = []
        for index in range(rng.randint(1, 6)):
            line: dict[str, Any] = {"sku": f"S{index}", "name": f"Item {index}",
                                    "quantity": rng.randint(1, 3),
                                    "unit_price": rng.choice([0, 1, 99, 350, 1234, 4999])}
            category = rng.choice(CATEGORIES)
            if category is not None:
                line["category"] = category
            lines.append(line)
        made.append((lines, rng.choice([0, 0, 100, 150, 333])))
    return made


@pytest.mark.parametrize("program_index", range(len(PROGRAMS)))
def test_local_pricing_equals_the_servers_quote(client: TestClient, world: World,
                                                database: Database, program_index: int) -> None:
    put_program(client, world.a, PROGRAMS[program_index])
    member = enrol(client, world.a, email="pricing@example.com")
    give_points(database, world.a.merchant_id, member["id"], 100_000)
    package = client.get("/v1/pos/offline/package", headers=auth(world.a.pos_key)).json()
    rules = pricing.Rules.from_package(package)
    compared = 0
    for lines, burn in baskets(program_index):
        body = purchase(member={"member_id": member["id"]}, lines=lines, points_to_burn=burn)
        server = client.post("/v1/pos/quote", headers=auth(world.a.pos_key), json=body)
        try:
            local = pricing.price(rules, [pricing.Line(
                sku=line["sku"], name=line["name"], quantity=line["quantity"],
                unit_price=line["unit_price"], category=line.get("category"))
                for line in lines], points_to_burn=burn)
        except pricing.PricingError as exc:
            assert server.status_code == 422, server.text
            assert server.json()["code"] == exc.code
            continue
        assert server.status_code == 200, server.text
        quote = server.json()
        assert (local.subtotal, local.points_discount, local.total, local.points_burned,
                local.points_earned) == (quote["subtotal"], quote["points_discount"],
                                         quote["total"], quote["points_burned"],
                                         quote["points_earned"]), (lines, burn)
        compared += 1
    assert compared >= 6


def test_an_amount_off_code_is_priced_before_points() -> None:
    rules = pricing.Rules(earn_points=1, earn_per_amount=100, rounding="floor",
                          point_value_minor=1, min_burn=1)
    code = pricing.OfflineCode(code="AAAA", kind="amount_off", value=300, max_discount=None,
                               min_spend=0, item_sku=None, item_category=None)
    priced = pricing.price(rules, [pricing.Line("A", "A", 2, 1000)], points_to_burn=200,
                           codes=[code])
    assert (priced.voucher_discount, priced.points_discount, priced.total,
            priced.points_earned) == (300, 200, 1500, 15)
    with pytest.raises(pricing.PricingError) as refused:
        pricing.price(rules, [pricing.Line("A", "A", 1, 100)], codes=[
            pricing.OfflineCode(code="B", kind="amount_off", value=1, max_discount=None,
                                min_spend=500, item_sku=None, item_category=None)])
    assert refused.value.code == "voucher_minimum_spend"
