"""Shared set-up for the offline tests: allowances and batch entries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.testclient import TestClient

from patron.kit.clock import utcnow
from tests.conftest import Tenant, auth


def allowance(client: TestClient, key: str, member: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/pos/offline/allowances", headers=auth(key),
                           json={"member": member})
    assert response.status_code == 201, response.text
    signed: dict[str, Any] = response.json()
    return signed


def sale(receipt_no: str, *, member: dict[str, Any] | None = None, points_to_burn: int = 0,
         occurred_at: datetime | None = None, currency: str = "JPY",
         lines: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receipt_no": receipt_no, "occurred_at": (occurred_at or utcnow()).isoformat(),
        "currency": currency, "points_to_burn": points_to_burn, "channel": "store",
        "lines": lines or [{"sku": "BR-1", "name": "Bread", "category": "bakery",
                            "quantity": 1, "unit_price": 1234}]}
    if member is not None:
        body["member"] = member
    body.update(extra)
    return body


def entry(seq: int, transaction: dict[str, Any], *, signed: dict[str, Any] | None = None,
          provisional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"seq": seq, "queued_at": utcnow().isoformat(), "allowance": signed,
            "transaction": transaction,
            "provisional": provisional or {"points_earned": 0, "points_burned": 0,
                                           "discounts": {"points": 0}}}


def replay(client: TestClient, tenant_key: str, entries: list[dict[str, Any]]) -> Any:
    return client.post("/v1/pos/offline/batches", headers=auth(tenant_key),
                       json={"entries": entries})


def second_till(client: TestClient, op_key: str, tenant: Tenant) -> str:
    """Another POS terminal of the tenant's store; its key."""
    response = client.post(f"/v1/stores/{tenant.store_id}/terminals", headers=auth(op_key),
                           json={"code": "pos-9", "kind": "pos"})
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key
