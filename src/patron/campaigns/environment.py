"""What a store's checkout conditions read about the world: its local time, public
holidays, weather and stock (``conditions.FIELDS``, groups ``env`` and ``inventory``).

Weather and stock are reported to Patron (``PUT /v1/stores/{id}/weather`` and
``/inventory``); public holidays come from the ``holidays`` package by the merchant's
country. Weather observed more than ``WEATHER_FRESH`` before the checkout is unknown: a
campaign for rainy days must not fire on yesterday's rain.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from patron.campaigns.models import StoreStock, StoreWeather
from patron.campaigns.schemas import InventoryRead, InventoryWrite, WeatherRead, WeatherWrite
from patron.db import insert_for_dialect, table_of
from patron.errors import InvalidInput, NotFound
from patron.tenancy.models import Role, Store
from patron.tenancy.service import Principal

WEATHER_FRESH = timedelta(hours=3)


# How far ahead of the server's clock an observation may be dated (the sender's clock
# running fast); beyond it the observation is refused, since a stored weather is replaced
# only by one observed later and a date in the future would freeze it.
WEATHER_MAX_AHEAD = timedelta(minutes=5)


class StoreNotFound(NotFound):
    title = "No such store"


class ObservedInFuture(InvalidInput):
    code = "observed_at_in_future"
    title = "The observation is dated more than 5 minutes in the future"


def _store(session: Session, actor: Principal, store_id: uuid.UUID) -> Store:
    """A store of the caller's merchant (the operator: any), then the role."""
    store = session.get(Store, store_id)
    if store is None or not actor.holds(store.merchant_id):
        raise StoreNotFound("no such store")
    actor.require(Role.operator, Role.merchant)
    return store


def put_weather(session: Session, *, actor: Principal, store_id: uuid.UUID,
                data: WeatherWrite, now: datetime, source: str = "api") -> WeatherRead:
    store = _store(session, actor, store_id)
    return record_weather(session, store_id=store.id, data=data, now=now, source=source)


def record_weather(session: Session, *, store_id: uuid.UUID, data: WeatherWrite,
                   now: datetime, source: str) -> WeatherRead:
    """Keep the store's weather unless what is stored was observed later."""
    if data.observed_at is not None and data.observed_at > now + WEATHER_MAX_AHEAD:
        raise ObservedInFuture("observed_at is more than 5 minutes ahead of the server's "
                               "clock; send the time it was observed, with its UTC offset",
                               field="observed_at")
    row = {"store_id": store_id, "condition": data.condition.value,
           "temperature_c": data.temperature_c, "observed_at": data.observed_at or now,
           "source": source, "updated_at": now}
    upsert = insert_for_dialect(session.get_bind().dialect.name, table_of(StoreWeather))
    columns = upsert.table.c
    session.execute(upsert.values(**row).on_conflict_do_update(
        index_elements=["store_id"],
        set_={name: upsert.excluded[name] for name in row if name != "store_id"},
        where=columns.observed_at <= upsert.excluded.observed_at))
    stored = session.get(StoreWeather, store_id, populate_existing=True)
    assert stored is not None
    return WeatherRead.model_validate(stored, from_attributes=True)


def get_weather(session: Session, *, actor: Principal, store_id: uuid.UUID) -> WeatherRead:
    store = _store(session, actor, store_id)
    weather = session.get(StoreWeather, store.id)
    if weather is None:
        raise NotFound("no weather has been reported for this store")
    return WeatherRead.model_validate(weather, from_attributes=True)


def put_inventory(session: Session, *, actor: Principal, store_id: uuid.UUID,
                  data: InventoryWrite, now: datetime) -> InventoryRead:
    store = _store(session, actor, store_id)
    items = {item.sku: item for item in data.items}  # the last of a SKU listed twice
    if data.replace:
        session.execute(delete(StoreStock).where(StoreStock.store_id == store.id,
                                                 StoreStock.sku.not_in(list(items))))
    if items:
        upsert = insert_for_dialect(session.get_bind().dialect.name, table_of(StoreStock))
        session.execute(upsert.on_conflict_do_update(
            index_elements=["store_id", "sku"],
            set_={"quantity": upsert.excluded.quantity,
                  "overstock": upsert.excluded.overstock,
                  "updated_at": upsert.excluded.updated_at}),
            [{"store_id": store.id, "sku": sku, "quantity": item.quantity,
              "overstock": item.overstock, "updated_at": now}
             for sku, item in sorted(items.items())])
    skus, overstocked = session.execute(
        select(func.count(), func.count().filter(StoreStock.overstock))
        .where(StoreStock.store_id == store.id)).one()
    return InventoryRead(store_id=store.id, skus=skus, overstocked=overstocked)


@lru_cache(maxsize=1)
def _known_countries() -> frozenset[str]:
    import holidays  # here: the server's start does not pay for it

    return frozenset(holidays.list_supported_countries())


@lru_cache(maxsize=256)
def _holidays(country: str, year: int) -> Collection[date]:
    """The country's public holidays of the year; none for a country the package does
    not know."""
    if country not in _known_countries():
        return frozenset()
    import holidays

    return frozenset(holidays.country_holidays(country, years=year))


def environment_fields(*, store_id: uuid.UUID | None, timezone: str, country: str,
                       now: datetime, weather: StoreWeather | None) -> dict[str, Any]:
    """``env.*`` at ``now`` for a store (without one — a birthday, a schedule — in the
    merchant's time zone, the store and its weather unknown)."""
    local = now.astimezone(ZoneInfo(timezone))
    fresh = weather is not None and now - weather.observed_at <= WEATHER_FRESH
    return {"env.hour": local.hour, "env.weekday": local.isoweekday(),
            "env.store_id": str(store_id) if store_id is not None else None,
            "env.region": None,
            "env.holiday": local.date() in _holidays(country, local.year),
            "env.weather": weather.condition if fresh and weather else None,
            "env.temperature_c": weather.temperature_c if fresh and weather else None}


def inventory_fields(session: Session, *, store_id: uuid.UUID,
                     skus: Collection[str]) -> dict[str, Any]:
    """``inventory.*`` for the SKUs the active campaigns ask about (only those are read)."""
    stock: dict[str, int] = {}
    overstock: dict[str, bool] = {}
    if skus:
        for sku, quantity, flagged in session.execute(
                select(StoreStock.sku, StoreStock.quantity, StoreStock.overstock)
                .where(StoreStock.store_id == store_id, StoreStock.sku.in_(sorted(skus)))):
            stock[sku] = quantity
            overstock[sku] = flagged
    return {"inventory.stock": stock, "inventory.overstock": overstock}
