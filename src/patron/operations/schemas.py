from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from patron.kit.validation import Instant, Int64
from patron.members.schemas import CardUid, Pin
from patron.operations.models import EventType
from patron.tenancy.schemas import ReceiptContent, Strict

MAX_BATCH = 1000
MAX_SEQ = 2**63 - 1


class EventIn(Strict):
    type: EventType
    occurred_at: Instant = Field(description="When it happened, with its UTC offset")
    seq: Annotated[Int64, Field(ge=0, le=MAX_SEQ)] | None = Field(
        default=None, description="The terminal's own sequence number; an event whose "
                                  "(terminal, seq) is already stored is skipped as a duplicate")
    detail: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None, description="A short code (e.g. an error code); never personal data")


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventBatchResult(BaseModel):
    accepted: int = Field(description="Events stored by this request")
    duplicates: int = Field(description="Events skipped because their seq was already stored")


class EventRead(BaseModel):
    id: int
    terminal_id: uuid.UUID
    type: EventType
    occurred_at: datetime
    received_at: datetime
    seq: int | None
    detail: str | None


class EventPage(BaseModel):
    events: list[EventRead]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next page; "
                                                "null on the last page")


class TapIn(Strict):
    card_uid: CardUid
    occurred_at: Instant | None = Field(default=None,
                                              description="Defaults to the time received")
    tap_id: Annotated[str, Field(min_length=1, max_length=64,
                                 pattern=r"^[A-Za-z0-9_.:-]+$")] | None = Field(
        default=None, description="Idempotency: a tap resent with the same tap_id is "
                                  "answered with the first visit and nothing is added")
    pin: Pin | None = Field(default=None, description="Member PIN, when the reader needs one")


class TapCampaign(BaseModel):
    """A campaign that fired on this visit, and what it gave."""

    campaign_id: uuid.UUID
    name: str
    points: int = Field(description="Bonus points this campaign gave (0: none)")
    message: str | None = Field(description="The campaign's message to the member")
    voucher: dict[str, object] | None = Field(description=(
        "A personal code it put into the member's wallet: `code`, `barcode`, `offer_id`, "
        "`offer`, `valid_until`"))


class TapResult(BaseModel):
    visit_id: uuid.UUID
    member_id: uuid.UUID
    points_granted: int = Field(description="The reader's points for this tap")
    reason: Literal["interval", "no_points_per_tap"] | None = Field(
        default=None, description="Why the reader granted no points")
    campaign_points: int = Field(description="The campaigns' bonus points for this visit "
                                             "(the sum of `campaigns[].points`)")
    points_total: int = Field(description="points_granted + campaign_points: everything "
                                          "this visit added to the balance")
    campaigns: list[TapCampaign] = Field(description=(
        "Each campaign that fired on this visit, highest priority first"))
    balance: int = Field(description="The member's points at this merchant now")
    receipt: ReceiptContent = Field(description=(
        "What the reader shows: each field the reader's own, else its store's"))
    occurred_at: datetime


class Visitor(BaseModel):
    """What a facility is shown of a visiting member (docs/privacy.md, "Visits")."""

    member_id: uuid.UUID
    member_number: str


class VisitRead(BaseModel):
    visit_id: uuid.UUID
    terminal_id: uuid.UUID
    occurred_at: datetime
    points_granted: int
    reason: str | None
    member: Visitor


class VisitPage(BaseModel):
    visits: list[VisitRead] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) "
                                                "page; null on the last page")
