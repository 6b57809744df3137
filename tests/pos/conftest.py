"""Shared set-up for the POS tests: programs, members with points, purchase bodies."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient

from patron.db import Database
from patron.kit.clock import utcnow
from patron.ledger import service as ledger
from patron.ledger.models import JournalEntry
from tests.conftest import Tenant, World, auth

JPY_PROGRAM = {"earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
               "category_multipliers_bp": {"coffee": 20000},
               "excluded_categories": ["tobacco"], "point_value_minor": 1, "min_burn": 100,
               "expiry_months": 12}
USD_PROGRAM = {"earn_points": 1, "earn_per_amount": 100, "rounding": "round_half_up",
               "category_multipliers_bp": {"Coffee": 15000},
               "excluded_categories": ["gift_card"], "point_value_minor": 1, "min_burn": 1,
               "expiry_months": None}


def put_program(client: TestClient, tenant: Tenant, program: dict[str, Any]) -> None:
    response = client.put(f"/v1/merchants/{tenant.merchant_id}/program",
                          headers=auth(tenant.merchant_key), json=program)
    assert response.status_code == 200, response.text


def enrol(client: TestClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/members", headers=auth(tenant.merchant_key), json=fields)
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


def give_points(database: Database, merchant_id: str, member_id: str, points: int) -> None:
    with database.session_scope() as session:
        ledger.earn(session, merchant_id=uuid.UUID(merchant_id),
                    member_id=uuid.UUID(member_id), points=points, expires_at=None,
                    idempotency_key=f"seed:{member_id}:{points}", source="test")


def entries(database: Database) -> int:
    with database.session_scope() as session:
        return int(session.scalar(select(func.count()).select_from(JournalEntry)) or 0)


def purchase(*, receipt_no: str = "R-0001", member: dict[str, Any] | None = None,
             lines: list[dict[str, Any]] | None = None, points_to_burn: int = 0,
             currency: str = "JPY", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "receipt_no": receipt_no, "occurred_at": utcnow().isoformat(), "currency": currency,
        "lines": lines or [{"sku": "BREAD", "name": "Bread", "category": "bakery",
                            "quantity": 1, "unit_price": 1234}],
        "points_to_burn": points_to_burn, "channel": "store",
        "payment": {"method": "cash", "amount": 0}}
    if member is not None:
        body["member"] = member
    body.update(extra)
    return body


JPY_BASKET = [
    {"sku": "CF-1", "gtin": "4006381333931", "name": "Coffee", "category": "Coffee",
     "quantity": 2, "unit_price": 350},
    {"sku": "TB-1", "name": "Cigarettes", "category": "tobacco", "quantity": 1,
     "unit_price": 600},
    {"sku": "BR-1", "name": "Bread", "category": "bakery", "quantity": 1, "unit_price": 1234},
]


@pytest.fixture
def jpy(client: TestClient, world: World, database: Database) -> dict[str, Any]:
    """Merchant A (JPY) with its program and a member holding 500 points."""
    put_program(client, world.a, JPY_PROGRAM)
    member = enrol(client, world.a, email="hanako@example.com")
    give_points(database, world.a.merchant_id, member["id"], 500)
    return member
