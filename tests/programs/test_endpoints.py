"""GET / PUT /v1/merchants/{id}/program over HTTP: roles, tenancy, bad input."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import World, auth

PROGRAM: dict[str, Any] = {
    "earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
    "category_multipliers_bp": {"coffee": 20_000}, "excluded_categories": ["tobacco"],
    "point_value_minor": 1, "min_burn": 100, "expiry_months": 12,
    "tiers": [{"name": "Blue", "threshold_points": 0},
              {"name": "Silver", "threshold_points": 1000, "earn_multiplier_bp": 12_500}],
}


def url(merchant_id: str) -> str:
    return f"/v1/merchants/{merchant_id}/program"


def read(client: TestClient, world: World, merchant_id: str | None = None) -> dict[str, Any]:
    response = client.get(url(merchant_id or world.a.merchant_id),
                          headers=auth(world.operator_key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_default_program_is_shown_until_one_is_put(client: TestClient, world: World) -> None:
    jpy = read(client, world)
    usd = read(client, world, world.b.merchant_id)
    assert jpy == {
        "merchant_id": world.a.merchant_id, "currency": "JPY", "currency_minor_units": 0,
        "configured": False, "earn_points": 1, "earn_per_amount": 100, "rounding": "floor",
        "category_multipliers_bp": {}, "excluded_categories": [], "point_value_minor": 1,
        "min_burn": 1, "expiry_months": None, "tiers": [], "updated_at": None}
    assert (usd["currency"], usd["currency_minor_units"], usd["configured"]) == ("USD", 2, False)


def test_merchant_puts_its_own_program(client: TestClient, world: World) -> None:
    response = client.put(url(world.a.merchant_id), headers=auth(world.a.merchant_key),
                          json=PROGRAM)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["configured"] is True and body["updated_at"] is not None
    assert body["tiers"] == [
        {"name": "Blue", "threshold_points": 0, "earn_multiplier_bp": 10_000},
        {"name": "Silver", "threshold_points": 1000, "earn_multiplier_bp": 12_500}]
    assert read(client, world) == body
    # the merchant's terminals read it (the till needs the rules); the other merchant sees
    # its own default
    till = client.get(url(world.a.merchant_id), headers=auth(world.a.pos_key))
    assert till.status_code == 200 and till.json() == body
    assert read(client, world, world.b.merchant_id)["configured"] is False


def test_operator_puts_any_merchants_program(client: TestClient, world: World) -> None:
    response = client.put(url(world.b.merchant_id), headers=auth(world.operator_key),
                          json={**PROGRAM, "earn_per_amount": 1, "tiers": []})
    assert response.status_code == 200, response.text
    assert read(client, world, world.b.merchant_id)["earn_per_amount"] == 1


def test_another_merchant_gets_404_and_nothing_changes(client: TestClient, world: World) -> None:
    client.put(url(world.a.merchant_id), headers=auth(world.a.merchant_key), json=PROGRAM)
    before = read(client, world)
    for method in ("get", "put"):
        response = client.request(method, url(world.a.merchant_id),
                                  headers=auth(world.b.merchant_key),
                                  json={**PROGRAM, "earn_points": 50})
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"
    assert client.get(url(world.b.merchant_id),
                      headers=auth(world.a.pos_key)).status_code == 404
    assert read(client, world) == before


def test_terminal_may_not_change_the_program(client: TestClient, world: World) -> None:
    response = client.put(url(world.a.merchant_id), headers=auth(world.a.pos_key), json=PROGRAM)
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
    assert read(client, world)["configured"] is False


def test_unknown_merchant_and_missing_key(client: TestClient, world: World) -> None:
    missing = url(str(uuid.uuid4()))
    assert client.get(missing, headers=auth(world.operator_key)).status_code == 404
    assert client.put(missing, headers=auth(world.operator_key),
                      json=PROGRAM).status_code == 404
    response = client.put(url(world.a.merchant_id), json=PROGRAM)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def with_change(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(PROGRAM)
    target: Any = body
    for part in path[:-1]:
        target = target[part]
    if value is DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


DELETE = object()

BAD_INPUT = [
    # (change, code, field or errors loc)
    (("earn_points",), -1, "validation_failed", ["body", "earn_points"]),
    (("earn_per_amount",), 0, "validation_failed", ["body", "earn_per_amount"]),
    (("earn_per_amount",), -100, "validation_failed", ["body", "earn_per_amount"]),
    (("earn_points",), 1.5, "validation_failed", ["body", "earn_points"]),
    (("earn_points",), 1.0, "validation_failed", ["body", "earn_points"]),
    (("earn_per_amount",), "100", "validation_failed", ["body", "earn_per_amount"]),
    (("point_value_minor",), 0, "validation_failed", ["body", "point_value_minor"]),
    (("point_value_minor",), 0.5, "validation_failed", ["body", "point_value_minor"]),
    (("min_burn",), 0, "validation_failed", ["body", "min_burn"]),
    (("min_burn",), True, "validation_failed", ["body", "min_burn"]),
    (("expiry_months",), -1, "validation_failed", ["body", "expiry_months"]),
    (("expiry_months",), 121, "validation_failed", ["body", "expiry_months"]),
    (("expiry_months",), DELETE, "validation_failed", ["body", "expiry_months"]),
    (("rounding",), "bankers", "validation_failed", ["body", "rounding"]),
    (("category_multipliers_bp", "coffee"), 2.0, "validation_failed",
     ["body", "category_multipliers_bp", "coffee"]),
    (("category_multipliers_bp", "coffee"), 0, "validation_failed",
     ["body", "category_multipliers_bp", "coffee"]),
    (("category_multipliers_bp", "coffee"), 1_000_001, "validation_failed",
     ["body", "category_multipliers_bp", "coffee"]),
    (("tiers", 1, "earn_multiplier_bp"), 1.25, "validation_failed",
     ["body", "tiers", 1, "earn_multiplier_bp"]),
    (("tiers", 1, "threshold_points"), -5, "validation_failed",
     ["body", "tiers", 1, "threshold_points"]),
    (("tiers", 1, "colour"), "silver", "validation_failed", ["body", "tiers", 1, "colour"]),
    (("miles_per_amount",), 5, "validation_failed", ["body", "miles_per_amount"]),
    (("excluded_categories",), [""], "validation_failed", ["body", "excluded_categories", 0]),
    (("tiers", 0, "threshold_points"), 10, "base_tier_threshold_not_zero",
     "tiers[0].threshold_points"),
    (("tiers", 1, "threshold_points"), 0, "tiers_not_increasing", "tiers[1].threshold_points"),
    (("tiers", 1, "name"), "BLUE", "duplicate_tier_name", "tiers[1].name"),
    (("excluded_categories",), ["Coffee"], "category_multiplied_and_excluded",
     "excluded_categories[0]"),
    (("excluded_categories",), ["gift", "gift"], "duplicate_category",
     "excluded_categories[1]"),
]


@pytest.mark.parametrize(("path", "value", "code", "where"), BAD_INPUT)
def test_bad_input_is_422_and_changes_nothing(client: TestClient, world: World,
                                              path: tuple[str | int, ...], value: Any, code: str,
                                              where: Any) -> None:
    client.put(url(world.a.merchant_id), headers=auth(world.a.merchant_key), json=PROGRAM)
    before = read(client, world)
    response = client.put(url(world.a.merchant_id), headers=auth(world.a.merchant_key),
                          json=with_change(path, value))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == code
    if isinstance(where, str):
        assert problem["field"] == where
    else:
        assert where in [error["loc"] for error in problem["errors"]]
    assert read(client, world) == before


def test_bad_input_on_the_first_put_leaves_the_default(client: TestClient, world: World) -> None:
    response = client.put(url(world.a.merchant_id), headers=auth(world.a.merchant_key),
                          json=with_change(("tiers", 1, "threshold_points"), 0))
    assert response.status_code == 422
    assert read(client, world)["configured"] is False


def test_openapi_documents_the_program_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    operations = paths["/v1/merchants/{merchant_id}/program"]
    for method in ("get", "put"):
        statuses = set(operations[method]["responses"])
        assert {"200", "401", "403", "404", "422"} <= statuses
    assert operations["put"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProgramWrite"}
