from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from patron.identity.schemas import MemberIdentification
from patron.kit.validation import Flag, Instant, Int32
from patron.pos.models import Channel
from patron.pos.schemas import LineWrite, Text64, WholeNumber
from patron.tenancy.schemas import Strict
from patron.vouchers.models import OfferKind, RedemptionStatus

ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$",
                                 examples=["07:00"])]
CodeText = Annotated[str, Field(min_length=1, max_length=64,
                                description="A voucher code as printed (any case, hyphens "
                                            "allowed) or its numeric barcode form",
                                examples=["7K3Q-DRX2-M9T4-WC"])]
MAX_CODES_AT_ONCE = 1000


class OfferWrite(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    description: Annotated[str, Field(max_length=1000)] | None = None
    kind: OfferKind
    value: WholeNumber = Field(default=0, description=(
        "amount_off: minor units; percent_off: percent 1-100; points_multiplier: basis "
        "points (20000 = x2); bonus_points: points; free_item and ticket: 0"))
    merchant_id: uuid.UUID | None = Field(default=None, description=(
        "The owning merchant (a merchant key: its own, or absent); absent with an operator "
        "key: a coalition offer, redeemable at every merchant"))
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = Field(
        default=None, description="For amount_off and budget: a merchant offer takes the "
                                  "merchant's currency; a coalition offer must name one")
    max_discount: WholeNumber | None = Field(default=None, description="percent_off: the "
                                                                       "most it takes off")
    item_sku: Text64 | None = Field(default=None, description="free_item: the SKU given")
    item_category: Text64 | None = Field(default=None, description="free_item: or any item "
                                                                   "of this category")
    min_spend: WholeNumber = Field(default=0, description="Basket subtotal needed, minor "
                                                          "units")
    categories: Annotated[list[Text64], Field(max_length=100)] = Field(
        default_factory=list, description="Discount only these categories' lines (empty: all)")
    store_ids: Annotated[list[uuid.UUID], Field(max_length=1000)] = Field(
        default_factory=list, description="Valid only in these stores (empty: all)")
    channels: Annotated[list[Channel], Field(max_length=2)] = Field(default_factory=list)
    weekdays: Annotated[list[WholeNumber], Field(max_length=7)] = Field(
        default_factory=list, description="ISO weekdays, 1 = Monday (store-local; empty: all)")
    from_time: ClockTime | None = Field(default=None, description="Store-local HH:MM")
    until_time: ClockTime | None = Field(default=None, description="Store-local HH:MM "
                                                                   "(may wrap past midnight)")
    valid_from: Instant | None = None
    valid_until: Instant | None = None
    valid_days: Int32 | None = Field(default=None, description="Each code is valid for "
                                                                     "N days from its issue")
    per_member_limit: Int32 | None = None
    max_redemptions: WholeNumber | None = Field(default=None, description="Total redemptions "
                                                                          "of all its codes")
    budget: WholeNumber | None = Field(default=None, description="The most all redemptions "
                                                                 "may take off, minor units")
    stackable: Flag = Field(default=True, description="False: exclusive, used alone")


class OfferRead(BaseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID | None
    name: str
    description: str | None
    kind: OfferKind
    value: int
    currency: str | None
    max_discount: int | None
    item_sku: str | None
    item_category: str | None
    min_spend: int
    categories: list[str]
    store_ids: list[uuid.UUID]
    channels: list[str]
    weekdays: list[int]
    from_time: str | None
    until_time: str | None
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    per_member_limit: int | None
    max_redemptions: int | None
    redemptions_count: int
    budget: int | None
    budget_used: int
    stackable: bool
    created_at: datetime
    revoked_at: datetime | None


class CodesWrite(Strict):
    count: WholeNumber = Field(description=f"1 to {MAX_CODES_AT_ONCE} answered at once; more "
                                           "(up to 10,000,000) runs as a batch job")
    member_id: uuid.UUID | None = Field(default=None, description="Personal codes into this "
                                                                  "member's wallet (single use)")
    max_redemptions: WholeNumber | None = Field(default=None, description="Uses per bearer "
                                                                          "code (default 1)")


class CodesRead(BaseModel):
    offer_id: uuid.UUID
    codes: list[str] = Field(description="Display forms; empty when a batch job runs")
    batch_id: uuid.UUID | None = None


class BatchRead(BaseModel):
    id: uuid.UUID
    offer_id: uuid.UUID
    requested: int
    generated: int
    status: str
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class VoucherRead(BaseModel):
    code: str = Field(description="Display form with its check character")
    barcode: str = Field(description="Numeric form: merchant number + coupon number + check "
                                     "digits (Code 128)")
    offer: OfferRead
    member_id: uuid.UUID | None
    max_redemptions: int
    redemptions_count: int
    valid_from: datetime | None
    valid_until: datetime | None
    issued_at: datetime
    revoked_at: datetime | None
    status: str = Field(description="active, used, revoked or expired")


class RevokeWrite(Strict):
    reason: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class Basket(Strict):
    """The basket a code is checked against (validate, reserve, stand-alone redeem)."""

    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None
    lines: Annotated[list[LineWrite], Field(min_length=1, max_length=500)] | None = None
    channel: Channel | None = Field(default=None, description=(
        "Optional: the terminal's kind decides (`online` for the web shop's terminal, "
        "`store` for every other); a channel that contradicts it is 422 "
        "`channel_not_terminals`"))
    occurred_at: Instant | None = Field(default=None, description="Default: now")


class ValidateWrite(Basket):
    code: CodeText
    member: MemberIdentification | None = None


class ValidationRead(BaseModel):
    code: str
    valid: bool
    reason: str | None = Field(description="The refusal's code when not valid "
                                           "(voucher_expired, voucher_wrong_store, ...)")
    detail: str | None
    discount: int | None = Field(description="Minor units off this basket")
    bonus_points: int | None
    offer_id: uuid.UUID | None
    kind: OfferKind | None
    valid_until: datetime | None


class RedeemWrite(Basket):
    member: MemberIdentification | None = None
    receipt_no: Text64 | None = None


class ReserveWrite(Basket):
    member: MemberIdentification | None = None
    ttl_seconds: WholeNumber = Field(default=300, description="1 to 1800 seconds")


class RedemptionRead(BaseModel):
    id: uuid.UUID
    code: str
    offer_id: uuid.UUID
    kind: OfferKind
    status: RedemptionStatus
    discount: int
    bonus_points: int
    currency: str
    member_id: uuid.UUID | None
    store_id: uuid.UUID
    terminal_id: uuid.UUID
    transaction_id: uuid.UUID | None
    expires_at: datetime | None = Field(description="When a hold ends unless used")
    created_at: datetime
