"""The stores' environment for campaign conditions (``patron.campaigns.environment``):
weather and stock reported over the API, local time, holidays."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select
from starlette.testclient import TestClient

from patron.campaigns.conditions import compile_condition
from patron.campaigns.environment import environment_fields, inventory_fields
from patron.campaigns.models import StoreStock, StoreWeather
from patron.db import Database
from tests.conftest import World, auth

RAINY = {"field": "env.weather", "op": "eq", "value": "rain"}


def _weather(client: TestClient, world: World, key: str | None = None,
             **body: object) -> httpx.Response:
    return client.put(f"/v1/stores/{world.a.store_id}/weather",
                      headers=auth(key or world.a.merchant_key), json=body)


def test_weather_is_reported_and_only_a_newer_observation_replaces_it(
        client: TestClient, world: World) -> None:
    at = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)
    first = _weather(client, world, condition="rain", temperature_c=9.5,
                     observed_at=at.isoformat())
    assert first.status_code == 200, first.text
    older = _weather(client, world, condition="sunny",
                     observed_at=(at - timedelta(hours=1)).isoformat())
    assert older.json()["condition"] == "rain"
    newer = _weather(client, world, condition="snow", temperature_c=-1.0,
                     observed_at=(at + timedelta(hours=1)).isoformat())
    assert newer.json()["condition"] == "snow"
    read = client.get(f"/v1/stores/{world.a.store_id}/weather",
                      headers=auth(world.a.merchant_key))
    assert read.json()["temperature_c"] == -1.0 and read.json()["source"] == "api"


def test_bad_weather_reports_are_refused_and_change_nothing(
        client: TestClient, world: World, database: Database) -> None:
    for body in ({"condition": "hail-of-frogs"}, {"condition": "rain", "temperature_c": 99},
                 {"condition": "rain", "wind": 3}, {}):
        refused = _weather(client, world, **body)
        assert refused.status_code == 422, body
    assert _weather(client, world, world.b.merchant_key,
                    condition="rain").status_code == 404
    assert _weather(client, world, world.a.pos_key,
                    condition="rain").status_code == 403
    missing = client.put(f"/v1/stores/{uuid.uuid4()}/weather",
                         headers=auth(world.operator_key), json={"condition": "rain"})
    assert missing.status_code == 404
    with database.session_scope() as session:
        assert session.scalars(select(StoreWeather)).all() == []


def test_stock_is_reported_in_part_or_whole(client: TestClient, world: World,
                                            database: Database) -> None:
    path = f"/v1/stores/{world.a.store_id}/inventory"
    first = client.put(path, headers=auth(world.a.merchant_key), json={"items": [
        {"sku": "CR-1", "quantity": 40, "overstock": True},
        {"sku": "CF-1", "quantity": 3}]})
    assert first.json() == {"store_id": world.a.store_id, "skus": 2, "overstocked": 1}
    part = client.put(path, headers=auth(world.a.merchant_key), json={"items": [
        {"sku": "CR-1", "quantity": 2, "overstock": False}]})
    assert part.json()["skus"] == 2 and part.json()["overstocked"] == 0
    whole = client.put(path, headers=auth(world.a.merchant_key), json={
        "replace": True, "items": [{"sku": "BR-1", "quantity": 9, "overstock": True}]})
    assert whole.json() == {"store_id": world.a.store_id, "skus": 1, "overstocked": 1}
    refused = client.put(path, headers=auth(world.a.merchant_key), json={
        "items": [{"sku": "X", "quantity": -1}]})
    assert refused.status_code == 422
    with database.session_scope() as session:
        rows = session.scalars(select(StoreStock)).all()
        assert [(row.sku, row.quantity, row.overstock) for row in rows] == [
            ("BR-1", 9, True)]
        fields = inventory_fields(session, store_id=uuid.UUID(world.a.store_id),
                                  skus={"BR-1", "CR-1"})
    assert fields == {"inventory.stock": {"BR-1": 9}, "inventory.overstock": {"BR-1": True}}


def _weather_row(condition: str, observed_at: datetime) -> StoreWeather:
    return StoreWeather(store_id=uuid.uuid4(), condition=condition, temperature_c=8.0,
                        observed_at=observed_at, source="test", updated_at=observed_at)


def test_the_environment_in_store_local_time_with_holidays_and_fresh_weather() -> None:
    store = uuid.uuid4()
    # 2026-01-01 00:30 UTC is 09:30 on New Year's Day in Tokyo, a Thursday.
    now = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    fields = environment_fields(store_id=store, timezone="Asia/Tokyo", country="JP",
                                now=now, weather=_weather_row("rain", now - timedelta(hours=1)))
    assert (fields["env.hour"], fields["env.weekday"], fields["env.holiday"]) == (9, 4, True)
    assert fields["env.weather"] == "rain" and fields["env.temperature_c"] == 8.0
    assert compile_condition(RAINY).holds(fields)
    # The same instant in New York is still New Year's Eve: no holiday there.
    there = environment_fields(store_id=store, timezone="America/New_York", country="US",
                               now=now, weather=None)
    assert (there["env.hour"], there["env.holiday"], there["env.weather"]) == (19, False, None)
    stale = environment_fields(store_id=store, timezone="Asia/Tokyo", country="JP", now=now,
                               weather=_weather_row("rain", now - timedelta(hours=4)))
    assert stale["env.weather"] is None and not compile_condition(RAINY).holds(stale)
    unknown_country = environment_fields(store_id=store, timezone="UTC", country="ZZ",
                                         now=now, weather=None)
    assert unknown_country["env.holiday"] is False
