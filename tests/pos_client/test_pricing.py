"""Local pricing equals the server's on plain baskets (no tiers, no vouchers): the same
points earned, discount and total, for every rounding rule and category rule."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


# --- vouchers: the SDK's provisional receipt equals the server's quote -----------------------

MUFFIN_PROGRAM = PROGRAMS[0]  # 1 point per 100 yen, coffee x2, floor
LATTE = {"sku": "LAT", "name": "Latte", "category": "coffee", "quantity": 2, "unit_price": 550}
MUFFIN = {"sku": "MUF", "name": "Muffin", "category": "bakery", "quantity": 1,
          "unit_price": 400}


def _codes(client: TestClient, world: World, member: dict[str, Any],
           offers: list[dict[str, Any]]) -> list[str]:
    codes = []
    for terms in offers:
        offer = client.post("/v1/offers", headers=auth(world.a.merchant_key), json=terms)
        assert offer.status_code == 201, offer.text
        issued = client.post(f"/v1/offers/{offer.json()['id']}/codes",
                             headers=auth(world.a.merchant_key),
                             json={"count": 1, "member_id": member["id"]})
        assert issued.status_code == 201, issued.text
        codes.extend(issued.json()["codes"])
    return codes


def _allowance_codes(client: TestClient, world: World,
                     member: dict[str, Any]) -> dict[str, pricing.OfflineCode]:
    signed = client.post("/v1/pos/offline/allowances", headers=auth(world.a.pos_key),
                         json={"member": {"member_id": member["id"]}})
    assert signed.status_code == 201, signed.text
    return {pricing.normalise_code(entry["code"]): pricing.OfflineCode.from_allowance(entry)
            for entry in signed.json()["allowance"]["codes"]}


def _local(rules: pricing.Rules, lines: list[dict[str, Any]], burn: int,
           codes: list[pricing.OfflineCode]) -> pricing.Priced:
    return pricing.price(rules, [pricing.Line(
        sku=line["sku"], name=line["name"], quantity=line["quantity"],
        unit_price=line["unit_price"], category=line.get("category")) for line in lines],
        points_to_burn=burn, codes=codes)


def _figures(priced: pricing.Priced) -> tuple[int, ...]:
    return (priced.subtotal, priced.voucher_discount, priced.points_discount, priced.total,
            priced.points_burned, priced.points_earned)


def _quoted(quote: dict[str, Any]) -> tuple[int, ...]:
    return (quote["subtotal"], quote["voucher_discount"], quote["points_discount"],
            quote["total"], quote["points_burned"], quote["points_earned"])


def test_a_free_item_comes_off_its_own_line_offline_as_on_the_server(
        client: TestClient, world: World) -> None:
    """Latte (coffee, earning x2) twice and a muffin with a free-muffin code: the muffin's
    line is free and the lattes earn in full. The register used to spread the 400 yen
    over both lines, so part of it came off the lattes: 19 points against the server's
    22."""
    put_program(client, world.a, MUFFIN_PROGRAM)
    member = enrol(client, world.a, email="muffin@example.com")
    (code,) = _codes(client, world, member, [{"name": "Free muffin", "kind": "free_item",
                                               "item_sku": "MUF"}])
    package = client.get("/v1/pos/offline/package", headers=auth(world.a.pos_key)).json()
    offline = _allowance_codes(client, world, member)[pricing.normalise_code(code)]
    local = _local(pricing.Rules.from_package(package), [LATTE, MUFFIN], 0, [offline])
    quote = client.post("/v1/pos/quote", headers=auth(world.a.pos_key), json=purchase(
        member={"member_id": member["id"]}, lines=[LATTE, MUFFIN],
        vouchers=[{"code": code}]))
    assert quote.status_code == 200, quote.text
    assert _figures(local) == _quoted(quote.json()) == (1500, 400, 0, 1100, 0, 22)
    assert local.voucher_discounts == {code: 400}


ITEMS: list[dict[str, Any]] = [
    {"sku": "LAT", "name": "Latte", "category": "Coffee ", "unit_price": 550},
    {"sku": "ESP", "name": "Espresso", "category": "coffee", "unit_price": 0},
    {"sku": "MUF", "name": "Muffin", "category": "bakery", "unit_price": 400},
    {"sku": "CRO", "name": "Croissant", "category": "Bakery", "unit_price": 333},
    {"sku": "CIG", "name": "Cigarettes", "category": "tobacco", "unit_price": 600},
    {"sku": "GFT", "name": "Gift card", "category": "gift_card", "unit_price": 5000},
    {"sku": "TOY", "name": "Toy", "category": "toys", "unit_price": 1234},
    {"sku": "BAG", "name": "Bag", "unit_price": 99},
]
OFFERS: list[dict[str, Any]] = [
    {"name": "Free muffin", "kind": "free_item", "item_sku": "MUF"},
    {"name": "Free pastry", "kind": "free_item", "item_category": "bakery"},
    {"name": "300 off", "kind": "amount_off", "value": 300},
    {"name": "500 off coffee", "kind": "amount_off", "value": 500, "categories": ["coffee"]},
    {"name": "15 % off", "kind": "percent_off", "value": 15, "max_discount": 700},
    {"name": "30 % off pastries", "kind": "percent_off", "value": 30,
     "categories": ["bakery"]},
    {"name": "1000 off over 3000", "kind": "amount_off", "value": 1000, "min_spend": 3000},
    {"name": "50 bonus points", "kind": "bonus_points", "value": 50},
    {"name": "Double points", "kind": "points_multiplier", "value": 20000},
]
baskets_with_codes = st.tuples(
    st.lists(st.tuples(st.sampled_from(range(len(ITEMS))), st.integers(1, 3)),
             min_size=1, max_size=6),
    st.sampled_from([0, 0, 0, 1, 50, 100, 150, 333, 1000, 5000]),
    st.lists(st.sampled_from(range(len(OFFERS))), unique=True, min_size=1, max_size=3)
    | st.just([]))


@pytest.mark.parametrize("program_index", range(len(PROGRAMS)))
def test_the_sdks_provisional_pricing_equals_the_servers_quote(
        client: TestClient, world: World, database: Database, program_index: int) -> None:
    """Random baskets, burns and personal codes of every kind the register prices: the
    SDK's figures are the quote's, or both refuse with the same code."""
    put_program(client, world.a, PROGRAMS[program_index])
    member = enrol(client, world.a, email="differential@example.com")
    give_points(database, world.a.merchant_id, member["id"], 100_000)
    codes = _codes(client, world, member, OFFERS)
    package = client.get("/v1/pos/offline/package", headers=auth(world.a.pos_key)).json()
    rules = pricing.Rules.from_package(package)
    offline = _allowance_codes(client, world, member)
    assert len(offline) == len(OFFERS)
    seen: Counter[str] = Counter()

    @settings(max_examples=200, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(case=baskets_with_codes)
    def compare(case: tuple[list[tuple[int, int]], int, list[int]]) -> None:
        items, burn, chosen = case
        lines = [{**ITEMS[item], "quantity": quantity} for item, quantity in items]
        used = [codes[index] for index in chosen]
        quote = client.post("/v1/pos/quote", headers=auth(world.a.pos_key), json=purchase(
            member={"member_id": member["id"]}, lines=lines, points_to_burn=burn,
            vouchers=[{"code": code} for code in used]))
        try:
            local = _local(rules, lines, burn,
                           [offline[pricing.normalise_code(code)] for code in used])
        except pricing.PricingError as exc:
            assert quote.status_code in (409, 422), (quote.text, exc.code)
            assert quote.json()["code"] == exc.code, (lines, burn, chosen)
            seen[exc.code] += 1
            return
        assert quote.status_code == 200, (quote.text, lines, burn, chosen)
        assert _figures(local) == _quoted(quote.json()), (lines, burn, chosen)
        assert {pricing.normalise_code(code): discount
                for code, discount in local.voucher_discounts.items()} == {
            pricing.normalise_code(applied["code"]): applied["discount"]
            for applied in quote.json()["vouchers"]}
        seen["priced" if used else "priced without codes"] += 1

    compare()
    assert seen["priced"] >= 30 and seen["priced without codes"] >= 10, seen


def test_the_sdk_imports_nothing_server_side() -> None:
    """The register prices with ``patron.basket``, which imports only the standard
    library: importing the SDK loads no server module, no ORM and no web framework."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, patron.pos_client, patron.pos_client.pricing; "
                               "print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True, text=True, check=True).stdout.split()
    ours = {name for name in loaded if name == "patron" or name.startswith("patron.")}
    assert ours == {"patron", "patron.basket"} | {
        name for name in ours if name.startswith("patron.pos_client")}
    assert not {"sqlalchemy", "fastapi", "pydantic", "starlette"} & set(loaded)
