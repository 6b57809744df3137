from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from patron.campaigns import environment, results, service, simulation
from patron.campaigns.models import CampaignStatus
from patron.campaigns.schemas import (
    CampaignRead,
    CampaignWrite,
    InventoryRead,
    InventoryWrite,
    ResultsRead,
    SimulationRead,
    SimulationWrite,
    WeatherRead,
    WeatherWrite,
)
from patron.http import AUTHED, Caller, Db, NoBody, PageQuery, problems
from patron.kit.clock import utcnow
from patron.kit.pagination import Page, by_creation
from patron.kit.validation import Instant

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.post("", status_code=201, response_model=CampaignRead,
             responses=problems(*AUTHED, 422))
def create_campaign(data: CampaignWrite, db: Db, caller: Caller) -> CampaignRead:
    """A campaign (merchant key: its own; operator key: a merchant's or, without
    `merchant_id`, the coalition's). Checked whole before it is stored: a condition tree
    that names an unknown field, compares a field with a value of the wrong type or is
    malformed is 422 `invalid_condition`; an unknown or revoked offer, a store of another
    merchant or an empty validity window 422 `invalid_campaign`. Each problem's `loc`
    points at it; nothing is stored."""
    with db.session_scope() as session:
        return service.to_read(service.create_campaign(session, actor=caller, data=data))


@router.get("", response_model=Page[CampaignRead], responses=problems(*AUTHED))
def list_campaigns(db: Db, caller: Caller, paging: PageQuery) -> Page[CampaignRead]:
    """The merchant's campaigns (the operator: all), oldest first."""
    with db.read_scope() as session:
        return paging.page([service.to_read(c)
                            for c in service.list_campaigns(session, actor=caller)],
                           key=by_creation)


@router.get("/{campaign_id}", response_model=CampaignRead, responses=problems(*AUTHED))
def get_campaign(campaign_id: uuid.UUID, db: Db, caller: Caller) -> CampaignRead:
    with db.read_scope() as session:
        return service.to_read(service.visible_campaign(session, caller, campaign_id))


@router.post("/{campaign_id}/simulate", response_model=SimulationRead,
             responses=problems(*AUTHED, 422))
def simulate(campaign_id: uuid.UUID, data: SimulationWrite, db: Db,
             caller: Caller) -> SimulationRead:
    """Replay the identified purchases of the last `days` (default 30) through the
    campaign, as the checkout would, and report how many purchases and members would
    trigger, the control group's share, what the limits would stop, and the cost. Writes
    nothing. The members' values are today's and the weather is unknown (neither is kept
    per day): docs/campaigns.md."""
    with db.read_scope() as session:
        campaign = service.visible_campaign(session, caller, campaign_id)
        return simulation.simulate(session, campaign=campaign, days=data.days, now=utcnow())


@router.get("/{campaign_id}/results", response_model=ResultsRead,
            responses=problems(*AUTHED, 422))
def get_results(
    campaign_id: uuid.UUID, db: Db, caller: Caller,
    until: Annotated[Instant | None, Query(description=(
        "end of the uplift's measurement, with its offset (default: now; not in the "
        "future)"))] = None,
    days: Annotated[int | None, Query(ge=1, le=3660, description=(
        "measure each member's spend in the this many days after their first trigger, "
        "over the members whose window has closed by `until` (default: up to `until`)"))
                    ] = None,
) -> ResultsRead:
    """The campaign's results: triggers (the control group's included), outcomes given,
    vouchers issued and redeemed, the cost (points, discounts at the till, budget), and
    the uplift: spend per member after the first trigger, treatment minus control, with
    a 95 % Welch t interval. A figure that cannot be computed (no control group, fewer
    than 2 members in a group) is null and `uplift.note` says why. The method:
    docs/campaigns.md, "Results and uplift". Writes nothing."""
    with db.read_scope() as session:
        campaign = service.visible_campaign(session, caller, campaign_id)
        return results.results(session, campaign=campaign, now=utcnow(), until=until,
                               days=days)


def _set_status(db: Db, caller: Caller, campaign_id: uuid.UUID,
                status: CampaignStatus) -> CampaignRead:
    with db.session_scope() as session:
        return service.to_read(service.set_status(session, actor=caller,
                                                  campaign_id=campaign_id, status=status))


@router.post("/{campaign_id}/pause", response_model=CampaignRead,
             responses=problems(*AUTHED), dependencies=[NoBody])
def pause(campaign_id: uuid.UUID, db: Db, caller: Caller) -> CampaignRead:
    """Stop the campaign firing (its outcomes so far stay)."""
    return _set_status(db, caller, campaign_id, CampaignStatus.paused)


@router.post("/{campaign_id}/resume", response_model=CampaignRead,
             responses=problems(*AUTHED), dependencies=[NoBody])
def resume(campaign_id: uuid.UUID, db: Db, caller: Caller) -> CampaignRead:
    return _set_status(db, caller, campaign_id, CampaignStatus.active)


stores_router = APIRouter(prefix="/v1/stores", tags=["campaigns"])


@stores_router.put("/{store_id}/weather", response_model=WeatherRead,
                   responses=problems(*AUTHED, 422))
def put_weather(store_id: uuid.UUID, data: WeatherWrite, db: Db,
                caller: Caller) -> WeatherRead:
    """Report the store's weather (merchant key of the store, or operator), for campaign
    conditions on `env.weather` and `env.temperature_c`. An observation older than the
    one stored changes nothing; one more than 3 hours old at a checkout counts as
    unknown there."""
    with db.session_scope() as session:
        return environment.put_weather(session, actor=caller, store_id=store_id, data=data,
                                       now=utcnow())


@stores_router.get("/{store_id}/weather", response_model=WeatherRead,
                   responses=problems(*AUTHED))
def get_weather(store_id: uuid.UUID, db: Db, caller: Caller) -> WeatherRead:
    with db.read_scope() as session:
        return environment.get_weather(session, actor=caller, store_id=store_id)


@stores_router.put("/{store_id}/inventory", response_model=InventoryRead,
                   responses=problems(*AUTHED, 422))
def put_inventory(store_id: uuid.UUID, data: InventoryWrite, db: Db,
                  caller: Caller) -> InventoryRead:
    """Report the store's stock and overstock flags per SKU (up to 10,000 at once), for
    conditions on `inventory.stock[sku]` and `inventory.overstock[sku]`; `replace: true`
    makes the list the store's whole stock."""
    with db.session_scope() as session:
        return environment.put_inventory(session, actor=caller, store_id=store_id,
                                         data=data, now=utcnow())
