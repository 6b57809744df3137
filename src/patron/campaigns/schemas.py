from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from patron.campaigns.models import CampaignStatus, Trigger, WeatherCondition
from patron.kit.validation import Flag, Instant, Int64
from patron.tenancy.schemas import Strict


class IssueVoucher(Strict):
    type: Literal["issue_voucher"]
    offer_id: uuid.UUID = Field(description="the offer whose personal code the member gets")


class BonusPoints(Strict):
    type: Literal["bonus_points"]
    points: Annotated[Int64, Field(ge=1, le=1_000_000)]


class PointsMultiplier(Strict):
    type: Literal["points_multiplier"]
    multiplier_bp: Annotated[Int64, Field(ge=10_001, le=100_000, description=(
        "the purchase's points times this / 10,000 (20000 = x2)"))]


class Message(Strict):
    type: Literal["message"]
    text: Annotated[str, Field(min_length=1, max_length=500)]


Action = Annotated[IssueVoucher | BonusPoints | PointsMultiplier | Message,
                   Field(discriminator="type")]


class PerMember(Strict):
    count: Annotated[Int64, Field(ge=1, le=10_000)]
    period_days: Annotated[Int64, Field(ge=1, le=3_660)]


class Schedule(Strict):
    """When a schedule campaign runs, in the merchant's time zone."""

    weekdays: Annotated[list[Annotated[Int64, Field(ge=1, le=7)]],
                        Field(min_length=1, max_length=7)] = Field(
        description="ISO weekdays, 1 = Monday")
    hour: Annotated[Int64, Field(ge=0, le=23)] = Field(
        description="the hour it runs in (0-23)")


class CampaignWrite(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    trigger: Trigger
    merchant_id: uuid.UUID | None = Field(default=None, description=(
        "the owning merchant (a merchant key: its own, or absent); absent with an "
        "operator key: a coalition campaign, at every merchant"))
    store_ids: Annotated[list[uuid.UUID], Field(max_length=1000)] = Field(
        default_factory=list, description="only in these stores (empty: all)")
    conditions: dict[str, Any] = Field(default_factory=lambda: {"all": []}, description=(
        "the condition tree (docs/campaigns.md): {\"all\": [...]}, {\"any\": [...]}, "
        "{\"not\": ...}, {\"field\", \"op\", \"value\"[, \"key\"]}"))
    actions: Annotated[list[Action], Field(min_length=1, max_length=10)]
    per_member: PerMember | None = Field(default=None, description=(
        "at most count outcomes per member in any period_days"))
    max_outcomes: Annotated[Int64, Field(ge=1)] | None = Field(
        default=None, description="the budget: outcomes in all, whatever the member")
    priority: Annotated[Int64, Field(ge=0, le=1000)] = Field(
        default=0, description="higher first")
    exclusive: Flag = Field(default=False, description=(
        "when it fires, no campaign of lower priority does in the same checkout"))
    control_share_bp: Annotated[Int64, Field(ge=0, le=5000)] = Field(
        default=0, description="the share of members held out (basis points, 1000 = 10 %)")
    valid_from: Instant | None = None
    valid_until: Instant | None = None
    status: CampaignStatus = CampaignStatus.active
    schedule: Schedule | None = Field(default=None, description=(
        "a schedule campaign's days and hour (required for it, refused for the others)"))


class CampaignRead(BaseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID | None
    name: str
    trigger: Trigger
    status: CampaignStatus
    store_ids: list[uuid.UUID]
    conditions: dict[str, Any]
    actions: list[Action]
    per_member: PerMember | None
    max_outcomes: int | None
    outcomes_count: int
    priority: int
    exclusive: bool
    control_share_bp: int
    valid_from: datetime | None
    valid_until: datetime | None
    schedule: Schedule | None
    created_at: datetime


class WeatherWrite(Strict):
    condition: WeatherCondition
    temperature_c: Annotated[float, Field(ge=-90, le=60, allow_inf_nan=False)] | None = None
    observed_at: Instant | None = Field(default=None, description=(
        "when it was observed (default: now); weather older than 3 hours at a checkout "
        "counts as unknown"))


class WeatherRead(BaseModel):
    store_id: uuid.UUID
    condition: WeatherCondition
    temperature_c: float | None
    observed_at: datetime
    source: str
    updated_at: datetime


class StockItem(Strict):
    sku: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[Int64, Field(ge=0)]
    overstock: Flag = False


class InventoryWrite(Strict):
    items: Annotated[list[StockItem], Field(max_length=10_000)]
    replace: Flag = Field(default=False, description=(
        "true: these items are the store's whole stock (SKUs not listed are removed); "
        "false: only these SKUs change"))


class InventoryRead(BaseModel):
    store_id: uuid.UUID
    skus: int = Field(description="SKUs the store has stock figures for, after this change")
    overstocked: int


class SimulationWrite(Strict):
    days: Annotated[Int64, Field(ge=1, le=366)] = Field(
        default=30, description="replay the identified purchases of the last this many days")


class SimulationCost(BaseModel):
    vouchers: int = Field(description="codes the campaign would have issued")
    amount_off_minor: int = Field(description="their face value, for amount-off offers")
    points: int = Field(description="bonus points and multiplied points")


class SimulationRead(BaseModel):
    campaign_id: uuid.UUID
    days: int
    since: datetime
    until: datetime
    transactions_evaluated: int
    truncated: bool = Field(description="more purchases than the simulation reads (100,000)")
    transactions_triggered: int = Field(description="purchases whose condition held")
    members_triggered: int
    transactions_held_out: int = Field(description="of those, the control group's")
    members_held_out: int
    stopped_by_limits: int = Field(description="triggered, but the per-member limit or "
                                               "the budget left would have refused it")
    outcomes: int
    cost: SimulationCost


class TriggerGroup(BaseModel):
    triggers: int = Field(description="recorded triggers of this group (outcome rows)")
    members: int


class ResultsTriggers(BaseModel):
    triggers: int = Field(description="times the condition held and an outcome was "
                                      "recorded, the control group's included")
    members: int
    treatment: TriggerGroup = Field(description="outcomes given (not held out)")
    control: TriggerGroup = Field(description="held out: recorded, nothing given")


class ResultsOutcomes(BaseModel):
    issued: int = Field(description="outcomes given (not held out)")
    vouchers_issued: int
    vouchers_redeemed: int = Field(description="of those codes, the ones with a use in "
                                               "status `redeemed` (not reserved, released "
                                               "or reversed by a return)")
    redemption_rate: float | None = Field(description="vouchers_redeemed / vouchers_issued; "
                                                      "null when none was issued")


class CurrencyAmount(BaseModel):
    currency: str
    amount_minor: int


class ResultsBudget(BaseModel):
    max_outcomes: int | None = Field(description="the budget in outcomes (null: none)")
    used: int
    left: int | None


class ResultsCost(BaseModel):
    points: int = Field(description="bonus and multiplied points given")
    discounts: list[CurrencyAmount] = Field(description=(
        "what the campaign's codes took off at the till (redeemed uses), per currency: "
        "the merchant's for a merchant's campaign"))
    budget: ResultsBudget


class SpendGroup(BaseModel):
    members: int
    mean_spend_minor: float | None = Field(description="mean spend per member in the "
                                                       "window (minor units)")
    sd_spend_minor: float | None = Field(description="sample standard deviation (n - 1)")


class UpliftExcluded(BaseModel):
    in_both_groups: int = Field(description="members with outcomes both given and held "
                                            "out (the control share changed)")
    window_open: int = Field(description="with `days`: members whose window ends after "
                                         "`until`; without: first triggered at `until` "
                                         "or later")
    after_budget_spent: int = Field(description="control members first triggered after "
                                                "the last outcome given, once the budget "
                                                "ran out")


class ResultsUplift(BaseModel):
    until: datetime = Field(description="the end of the measurement")
    days: int | None = Field(description="the window's length after each member's first "
                                         "trigger; null: up to `until`")
    currency: str | None
    treatment: SpendGroup
    control: SpendGroup
    difference_minor: float | None = Field(description="treatment mean - control mean")
    relative: float | None = Field(description="difference / control mean")
    ci95_low_minor: float | None = Field(description="Welch's t interval, 95 %")
    ci95_high_minor: float | None
    degrees_of_freedom: float | None = Field(description="Welch-Satterthwaite")
    p_value: float | None = Field(description="two-sided Welch t-test of no difference")
    excluded: UpliftExcluded
    note: str | None = Field(description="why a figure is null, when one is")


class ResultsRead(BaseModel):
    campaign_id: uuid.UUID
    as_of: datetime
    triggers: ResultsTriggers
    outcomes: ResultsOutcomes
    cost: ResultsCost
    uplift: ResultsUplift
