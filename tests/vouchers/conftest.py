"""Shared set-up for the voucher tests: offers, codes, purchase bodies."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from patron.kit.clock import utcnow
from tests.conftest import Tenant, World, auth
from tests.pos.conftest import enrol


def make_offer(client: TestClient, key: str, **terms: Any) -> dict[str, Any]:
    body = {"name": "Offer", "kind": "amount_off", **terms}
    if body["kind"] == "amount_off":
        body.setdefault("value", 100)
    response = client.post("/v1/offers", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    offer: dict[str, Any] = response.json()
    return offer


def make_codes(client: TestClient, key: str, offer_id: str, count: int = 1,
               **extra: Any) -> list[str]:
    response = client.post(f"/v1/offers/{offer_id}/codes", headers=auth(key),
                           json={"count": count, **extra})
    assert response.status_code == 201, response.text
    codes: list[str] = response.json()["codes"]
    assert len(codes) == count
    return codes


def basket(*, receipt_no: str = "V-0001", vouchers: list[dict[str, Any]] | None = None,
           lines: list[dict[str, Any]] | None = None, currency: str = "JPY",
           member: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receipt_no": receipt_no, "occurred_at": utcnow().isoformat(), "currency": currency,
        "lines": lines or [{"sku": "CF-1", "name": "Coffee", "category": "coffee",
                            "quantity": 2, "unit_price": 400},
                           {"sku": "BR-1", "name": "Bread", "category": "bakery",
                            "quantity": 1, "unit_price": 1200}],
        "vouchers": vouchers or []}
    if member is not None:
        body["member"] = member
    body.update(extra)
    return body


@pytest.fixture
def member_a(client: TestClient, world: World) -> dict[str, Any]:
    return enrol(client, world.a)


def redeem(client: TestClient, tenant: Tenant, code: str, **body: Any) -> Any:
    return client.post(f"/v1/vouchers/{code}/redeem", headers=auth(tenant.pos_key), json=body)
