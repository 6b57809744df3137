"""Calls the deliveries' tests share."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import auth


def enrol(client: TestClient, key: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/members", headers=auth(key), json=fields)
    assert response.status_code == 201, response.text
    member: dict[str, Any] = response.json()
    return member


def member_deliveries(client: TestClient, key: str, member_id: str,
                      channel: str) -> list[dict[str, Any]]:
    response = client.get("/v1/deliveries", headers=auth(key),
                          params={"member_id": member_id, "channel": channel})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["deliveries"]
    return items
