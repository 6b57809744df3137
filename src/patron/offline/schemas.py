from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

from patron.identity.schemas import MemberIdentification
from patron.kit.validation import Instant
from patron.offline.models import ExceptionKind, ExceptionStatus
from patron.pos.schemas import PurchaseWrite, WholeNumber
from patron.tenancy.schemas import Strict

MAX_BATCH_ENTRIES = 500
ALLOWANCE_VERSION = 1


# --- the package ------------------------------------------------------------------------

class ProgramRules(BaseModel):
    """What a register needs to compute earn and burn like the server does."""

    earn_points: int
    earn_per_amount: int
    rounding: str = Field(description="floor | round_half_up | ceil, once per transaction")
    point_value_minor: int
    min_burn: int
    category_multipliers_bp: dict[str, int] = Field(description="Normalised category "
                                                                "(case-folded) → basis points")
    excluded_categories: list[str]


class CoalitionRateRead(BaseModel):
    currency: str
    spend_per_mile: int
    mile_value_milli: int


class PackageRead(BaseModel):
    """Everything a register needs to price while the server cannot be reached."""

    merchant_id: uuid.UUID
    merchant_number: int
    store_id: uuid.UUID
    terminal_id: uuid.UUID
    currency: str
    currency_minor_units: int
    timezone: str = Field(description="The store's time zone (IANA)")
    program: ProgramRules
    coalition_rate: CoalitionRateRead | None
    public_key: str = Field(description="Ed25519 public key (raw 32 bytes, base64) that "
                                        "signs offline allowances")
    key_id: str
    server_time: datetime
    valid_until: datetime = Field(description="Download a fresh package before this")
    max_batch_entries: int


# --- allowances ---------------------------------------------------------------------------

class AllowanceWrite(Strict):
    member: MemberIdentification


class AllowanceCode(BaseModel):
    """A personal single-use code and what a register needs to price it offline."""

    code: str
    kind: str
    value: int | None
    max_discount: int | None
    min_spend: int | None
    item_sku: str | None
    item_category: str | None
    categories: list[str]
    valid_until: str | None


class AllowanceDocument(BaseModel):
    """The signed content. Times are ISO 8601 strings in UTC, money and points integers:
    its canonical JSON is the same bytes in every language."""

    v: int = ALLOWANCE_VERSION
    id: str
    key_id: str
    terminal_id: str
    merchant_id: str
    member_id: str
    member_number: str
    currency: str
    burn_limit: int = Field(description="Points the register may burn for this member, "
                                        "all its offline sales together")
    point_value_minor: int
    min_burn: int
    codes: list[AllowanceCode]
    issued_at: str
    expires_at: str


class AllowanceRead(BaseModel):
    allowance: AllowanceDocument
    signature: str = Field(description="Base64 Ed25519 signature over the canonical JSON of "
                                       "`allowance` (keys sorted, no spaces, UTF-8)")


# --- batches -------------------------------------------------------------------------------

class SignedAllowance(Strict):
    allowance: dict[str, Any] = Field(description="The allowance exactly as issued")
    signature: Annotated[str, Field(min_length=1, max_length=200)]


class ProvisionalDiscounts(Strict):
    points: WholeNumber = Field(default=0, description="Minor units taken off by points")
    vouchers: dict[Annotated[str, Field(min_length=1, max_length=64)], WholeNumber] = Field(
        default_factory=dict, description="Voucher code → minor units it took off")
    miles: WholeNumber = 0


class Provisional(Strict):
    """What the register computed offline and told the customer."""

    points_earned: WholeNumber = 0
    points_burned: WholeNumber = 0
    discounts: ProvisionalDiscounts = Field(default_factory=ProvisionalDiscounts)


class BatchEntry(Strict):
    seq: WholeNumber = Field(description="The register's queue position; strictly "
                                         "increasing within a batch")
    queued_at: Instant
    allowance: SignedAllowance | None = None
    transaction: PurchaseWrite
    provisional: Provisional = Field(default_factory=Provisional)


class BatchWrite(Strict):
    entries: list[BatchEntry]


class EntryStatus(StrEnum):
    committed = "committed"
    replayed = "replayed"
    committed_with_exception = "committed_with_exception"
    refused = "refused"


class Difference(BaseModel):
    figure: str = Field(description="points_earned | points_burned | points_discount | "
                                    "voucher_discount | miles_discount")
    provisional: int
    server: int


class EntryResult(BaseModel):
    seq: int
    receipt_no: str
    status: EntryStatus
    transaction: dict[str, Any] | None = Field(description="The committed transaction, as "
                                                           "`POST /v1/pos/transactions` "
                                                           "answers it")
    differences: list[Difference]
    exceptions: list[uuid.UUID]
    problem: dict[str, Any] | None = Field(default=None,
                                           description="Why a refused entry was refused")


class BatchApplied(BaseModel):
    """How the batch's entries were applied: committed as part of a set, or one by one
    through the online commit, counted by why (docs/offline.md, "Plain sales as a set")."""

    set_wise: int
    one_by_one: int
    one_by_one_because: dict[str, int]


class BatchRead(BaseModel):
    results: list[EntryResult]
    applied: BatchApplied


# --- exceptions ------------------------------------------------------------------------------

class ExceptionRead(BaseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID
    terminal_id: uuid.UUID
    receipt_no: str
    member_id: uuid.UUID | None
    allowance_id: uuid.UUID | None
    transaction_id: uuid.UUID | None
    kind: ExceptionKind
    code: str
    voucher_code: str | None
    facts: dict[str, Any]
    status: ExceptionStatus
    created_at: datetime
    resolved_at: datetime | None
    resolution_note: str | None


class ResolveWrite(Strict):
    note: Annotated[str, Field(max_length=10_000)]
