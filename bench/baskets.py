"""Realistic purchases for the checkout benchmark, the same for HTTP and the raw baseline.

A purchase is 5 to 30 lines from a 600-product grocery catalogue (most with a GTIN, some
quantities above 1); 10 % are anonymous, 30 % come from identified members who burn
100 to 1,000 points, the rest from identified members who only earn. Members are drawn
uniformly from all members, so with a million of them almost every purchase touches rows
that are not in any cache, as in a real shop.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from stdnum import ean

ANONYMOUS_SHARE = 0.10
BURN_SHARE = 0.30
MIN_LINES, MAX_LINES = 5, 30
MIN_BURN, MAX_BURN = 100, 1_000
PRODUCTS = 600
BASKET_POOL = 2_048

# (category, lowest price, highest price, share of the catalogue), prices in yen.
CATEGORIES = (
    ("coffee", 280, 680, 6), ("bakery", 120, 480, 10), ("dairy", 150, 520, 10),
    ("produce", 80, 600, 16), ("snacks", 100, 380, 14), ("drinks", 110, 320, 12),
    ("household", 200, 1_500, 10), ("deli", 300, 980, 10), ("frozen", 200, 800, 8),
    ("tobacco", 520, 700, 2), ("gift card", 1_000, 5_000, 2),
)


class Kind(StrEnum):
    anonymous = "anonymous"
    earn = "earn"
    burn = "burn"


@dataclass(frozen=True, slots=True)
class Product:
    sku: str
    gtin: str | None
    name: str
    category: str
    unit_price: int


@dataclass(frozen=True, slots=True)
class Line:
    product: Product
    quantity: int

    @property
    def amount(self) -> int:
        return self.quantity * self.product.unit_price


@dataclass(frozen=True, slots=True)
class Basket:
    lines: tuple[Line, ...]
    subtotal: int
    # The JSON array of the lines, made once: the load generator only splices it in.
    lines_json: str


@dataclass(frozen=True, slots=True)
class Purchase:
    kind: Kind
    customer_no: int | None
    points_to_burn: int
    basket: Basket


def catalogue(rng: random.Random) -> list[Product]:
    weights = [share for *_, share in CATEGORIES]
    products = []
    for number in range(1, PRODUCTS + 1):
        category, low, high, _ = rng.choices(CATEGORIES, weights)[0]
        gtin = None
        if rng.random() < 0.8:
            body = f"49{rng.randrange(10**10):010d}"
            gtin = body + ean.calc_check_digit(body)
        price = rng.randint(low, high) // 10 * 10
        products.append(Product(sku=f"SKU-{number:05d}", gtin=gtin,
                                name=f"{category.title()} item {number}", category=category,
                                unit_price=price))
    return products


def _line_json(line: Line) -> dict[str, object]:
    product = line.product
    body: dict[str, object] = {"sku": product.sku, "name": product.name,
                               "category": product.category, "quantity": line.quantity,
                               "unit_price": product.unit_price}
    if product.gtin is not None:
        body["gtin"] = product.gtin
    return body


def make_basket(rng: random.Random, products: list[Product]) -> Basket:
    chosen = rng.sample(products, rng.randint(MIN_LINES, MAX_LINES))
    lines = tuple(Line(product, rng.choices((1, 2, 3), (80, 15, 5))[0]) for product in chosen)
    return Basket(lines=lines, subtotal=sum(line.amount for line in lines),
                  lines_json=json.dumps([_line_json(line) for line in lines],
                                        separators=(",", ":")))


class PurchaseMaker:
    """Draws purchases: a pool of baskets made once, members and the mix drawn each time."""

    def __init__(self, *, members: int, seed: int, pool: int = BASKET_POOL) -> None:
        if members < 1:
            raise ValueError("the benchmark needs at least one member")
        self.members = members
        self.rng = random.Random(seed)
        products = catalogue(random.Random(seed))
        self.baskets = [make_basket(self.rng, products) for _ in range(pool)]

    def next(self) -> Purchase:
        rng = self.rng
        basket = rng.choice(self.baskets)
        draw = rng.random()
        if draw < ANONYMOUS_SHARE:
            return Purchase(Kind.anonymous, None, 0, basket)
        customer_no = rng.randint(1, self.members)
        if draw < ANONYMOUS_SHARE + BURN_SHARE:
            points = min(rng.randint(MIN_BURN, MAX_BURN), basket.subtotal)
            return Purchase(Kind.burn, customer_no, points, basket)
        return Purchase(Kind.earn, customer_no, 0, basket)


def request_body(purchase: Purchase, *, receipt_no: str, barcode: str | None,
                 currency: str, occurred_at: datetime | None = None) -> bytes:
    """The ``POST /v1/pos/transactions`` body a till sends for this purchase."""
    moment = (occurred_at or datetime.now(UTC)).isoformat(timespec="milliseconds")
    member = f'"member":{{"barcode":"{barcode}"}},' if barcode is not None else ""
    paid = purchase.basket.subtotal - purchase.points_to_burn
    return (f'{{"receipt_no":"{receipt_no}","occurred_at":"{moment}","currency":"{currency}",'
            f'{member}"lines":{purchase.basket.lines_json},'
            f'"points_to_burn":{purchase.points_to_burn},"channel":"store",'
            f'"payment":{{"method":"card","amount":{paid}}}}}').encode()
