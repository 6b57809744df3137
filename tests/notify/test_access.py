"""Who may use the webhook, delivery and outbox routes: every route and every principal,
against merchant A's endpoint and delivery (docs/notify.md, "Who may"). A refusal changes
nothing."""

from __future__ import annotations

from typing import Any

import pytest
from bench.sinks import webhook_receiver
from fastapi.testclient import TestClient

from patron.config import get_settings
from patron.db import Database
from patron.notify.webpush import VapidKey
from patron.notify.worker import Deliverer
from patron.tenancy.models import Role
from patron.tenancy.service import issue_key
from tests.api.snapshot import changed_tables, snapshot
from tests.conftest import World, auth
from tests.template import restored

PRINCIPALS = ("operator", "merchant", "other_merchant", "pos", "reader", "other_pos",
              "sales_rep")

# route -> the status each principal gets, in the order of PRINCIPALS.
MATRIX: dict[str, tuple[int, ...]] = {
    "GET endpoint":        (200, 200, 404, 403, 403, 404, 404),
    "PATCH endpoint":      (200, 200, 404, 403, 403, 404, 404),
    "rotate secret":       (200, 200, 404, 403, 403, 404, 404),
    "endpoint deliveries": (200, 200, 404, 403, 403, 404, 404),
    "replay webhook":      (200, 200, 404, 403, 403, 404, 404),
    "replay delivery":     (200, 200, 404, 403, 403, 404, 404),
    "list endpoints":      (200, 200, 200, 403, 403, 403, 403),
    "create endpoint":     (201, 201, 201, 403, 403, 403, 403),
    "list deliveries":     (200, 200, 200, 403, 403, 403, 403),
    "list events":         (200, 200, 200, 403, 403, 403, 403),
    "event types":         (200, 200, 200, 200, 200, 200, 200),
    "GET settings":        (200, 200, 404, 403, 403, 404, 404),
    "PUT settings":        (200, 200, 404, 403, 403, 404, 404),
    "GET templates":       (200, 200, 404, 403, 403, 404, 404),
    "PUT template":        (200, 200, 404, 403, 403, 404, 404),
    "VAPID key":           (200, 200, 200, 200, 200, 200, 200),
}
WRITES = {"PATCH endpoint", "rotate secret", "replay webhook", "replay delivery",
          "create endpoint", "PUT settings", "PUT template"}


def _request(route: str, endpoint_id: str, delivery_id: str,
             merchant_id: str = "") -> tuple[str, str, Any]:
    return {
        "GET settings": ("GET", f"/v1/merchants/{merchant_id}/message-settings", None),
        "GET templates": ("GET", f"/v1/merchants/{merchant_id}/message-templates", None),
        "PUT template": ("PUT", f"/v1/merchants/{merchant_id}/message-templates",
                         {"event_type": "tier.changed", "channel": "email", "language": "en",
                          "body": "You are {{ tier }} now."}),
        "PUT settings": ("PUT", f"/v1/merchants/{merchant_id}/message-settings",
                         {"weekly_cap": 2, "quiet_hours": {"start": "22:00", "end": "07:00"}}),
        "GET endpoint": ("GET", f"/v1/webhook-endpoints/{endpoint_id}", None),
        "PATCH endpoint": ("PATCH", f"/v1/webhook-endpoints/{endpoint_id}",
                           {"description": "changed"}),
        "rotate secret": ("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret", None),
        "endpoint deliveries": ("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries",
                                None),
        "replay webhook": ("POST", f"/v1/webhook-deliveries/{delivery_id}/replay", None),
        "replay delivery": ("POST", f"/v1/deliveries/{delivery_id}/replay", None),
        "list endpoints": ("GET", "/v1/webhook-endpoints", None),
        "create endpoint": ("POST", "/v1/webhook-endpoints",
                            {"url": "https://hooks.example.com/x", "events": ["*"]}),
        "list deliveries": ("GET", "/v1/deliveries", None),
        "list events": ("GET", "/v1/events", None),
        "event types": ("GET", "/v1/event-types", None),
        "VAPID key": ("GET", "/v1/push/vapid-key", None),
    }[route]


@pytest.fixture
def setting(client: TestClient, database: Database, world: World) -> dict[str, Any]:
    """Built once per process, restored from its rows for later tests
    (``tests.template``)."""
    return restored(database, f"notify access {world.a.merchant_id}",
                    lambda: _build(client, database, world))


def _build(client: TestClient, database: Database, world: World) -> dict[str, Any]:
    with webhook_receiver() as receiver:
        endpoint = client.post("/v1/webhook-endpoints", headers=auth(world.a.merchant_key),
                               json={"url": receiver.url, "events": ["*"]}).json()
        member = client.post("/v1/members", headers=auth(world.a.merchant_key), json={})
        assert member.status_code == 201
        deliverer = Deliverer(database, get_settings())
        try:
            deliverer.run_once()
        finally:
            deliverer.close()
        deliveries = client.get(f"/v1/webhook-endpoints/{endpoint['id']}/deliveries",
                                headers=auth(world.a.merchant_key)).json()["deliveries"]
        with database.session_scope() as session:
            _, rep_key = issue_key(session, role=Role.sales_rep, label="rep")
        keys = {"operator": world.operator_key, "merchant": world.a.merchant_key,
                "other_merchant": world.b.merchant_key, "pos": world.a.pos_key,
                "reader": world.a.reader_key, "other_pos": world.b.pos_key,
                "sales_rep": rep_key}
    return {"endpoint_id": endpoint["id"], "delivery_id": deliveries[0]["id"],
            "merchant_id": world.a.merchant_id, "keys": keys}


CASES = [pytest.param(route, principal, status, id=f"{route} as {principal}")
         for route, statuses in MATRIX.items()
         for principal, status in zip(PRINCIPALS, statuses, strict=True)]


@pytest.mark.parametrize(("route", "principal", "status"), CASES)
def test_who_may_use_each_route(client: TestClient, database: Database,
                                setting: dict[str, Any], route: str, principal: str,
                                status: int, monkeypatch: pytest.MonkeyPatch) -> None:
    method, path, body = _request(route, setting["endpoint_id"], setting["delivery_id"],
                                  setting["merchant_id"])
    before = snapshot(database)
    if route == "VAPID key":  # a deployment that sends push
        monkeypatch.setenv("PATRON_VAPID_PRIVATE_KEY", VapidKey.generate().private_text)
    get_settings.cache_clear()
    try:
        response = client.request(method, path, json=body,
                                  headers=auth(setting["keys"][principal]))
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert changed_tables(before, snapshot(database)) == []
    elif route in WRITES:
        assert changed_tables(before, snapshot(database)) != []


def test_lists_show_only_the_callers_own_merchant(client: TestClient, world: World,
                                                  setting: dict[str, Any]) -> None:
    keys = setting["keys"]
    for route in ("list endpoints", "list deliveries", "list events"):
        method, path, _ = _request(route, "", "")
        own = client.request(method, path, headers=auth(keys["merchant"])).json()
        other = client.request(method, path, headers=auth(keys["other_merchant"])).json()
        everyone = client.request(method, path, headers=auth(keys["operator"])).json()
        field = {"list endpoints": "items", "list deliveries": "deliveries",
                 "list events": "events"}[route]
        assert own[field], route
        assert {item["merchant_id"] for item in own[field]} == {world.a.merchant_id}, route
        assert world.a.merchant_id not in {item["merchant_id"] for item in other[field]}
        assert {item["id"] for item in own[field]} <= {item["id"] for item in everyone[field]}
