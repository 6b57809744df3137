from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from patron.kit.validation import (
    Flag,
    Instant,
    Int32,
    audit_input_fields,
    country_code,
    currency_code,
    timezone_name,
)
from patron.tenancy.models import Role, StoreKind, TerminalKind

Currency = Annotated[str, Field(min_length=3, max_length=3, examples=["JPY"]),
                     AfterValidator(currency_code)]
Country = Annotated[str, Field(min_length=2, max_length=2, examples=["JP"]),
                    AfterValidator(country_code)]
TimeZone = Annotated[str, Field(min_length=1, max_length=64, examples=["Asia/Tokyo"]),
                     AfterValidator(timezone_name)]
Code = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
E164 = Annotated[str, Field(pattern=r"^\+[1-9][0-9]{6,14}$", examples=["+81312345678"])]


# Plain text in any language: letters of every script, punctuation and line breaks; no
# other control characters (a reader prints or speaks it as it is, never as markup).
ReceiptText = Annotated[str, Field(min_length=1,
                                   pattern=r"^[^\x00-\x09\x0b\x0c\x0e-\x1f\x7f]+$")]
QuestionnaireUrl = Annotated[str, Field(
    min_length=1, max_length=500, pattern=r"^https?://[^\s/?#@]+(?:[/?#][^\s]*)?$",
    description="An absolute http(s) link", examples=["https://example.jp/survey?s=ginza"])]


class ReceiptContent(BaseModel):
    """What a reader shows with a tap (docs/operations.md, "Receipt content")."""

    facility_info: str | None = Field(default=None, description=(
        "Facility information: opening hours, a notice; plain text, up to 1,000 characters"))
    questionnaire_url: str | None = Field(default=None, description=(
        "A link to a questionnaire (absolute http or https, up to 500 characters)"))
    consent_prompt: str | None = Field(default=None, description=(
        "A consent prompt shown to the member; plain text, up to 500 characters"))


class Strict(BaseModel):
    """A request body (or a part of one): unknown fields refused, and every datetime,
    boolean and integer field of one of kit.validation's bounded types (checked when the
    class is defined)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        audit_input_fields(cls)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul_character(cls, value: Any) -> Any:
        # PostgreSQL text cannot hold U+0000: refuse it here rather than fail at the INSERT.
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("must not contain the NUL character (U+0000)")
        return value


class Read(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ReceiptWrite(Strict):
    """Receipt content to set: a field sent replaces the stored one (null clears it), a
    field left out is kept. Plain text in any language, line breaks allowed."""

    facility_info: Annotated[ReceiptText, Field(max_length=1000)] | None = None
    questionnaire_url: QuestionnaireUrl | None = None
    consent_prompt: Annotated[ReceiptText, Field(max_length=500)] | None = None


class MerchantCreate(Strict):
    number: Int32 = Field(ge=1, le=99999, description=(
        "Unique 5-digit merchant number, 1 to 99999 (0 is the coalition's own prefix in "
        "voucher barcodes)"))
    name: Name
    currency: Currency
    timezone: TimeZone
    country: Country


class MerchantRead(Read):
    id: uuid.UUID
    number: int
    name: str
    currency: str
    timezone: str
    country: str
    created_at: datetime


class StoreCreate(Strict):
    code: Code
    name: Name
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    timezone: TimeZone | None = Field(default=None,
                                      description="Defaults to the merchant's time zone")
    kind: StoreKind = StoreKind.shop
    receipt: ReceiptWrite | None = Field(default=None, description=(
        "What this store's readers show with a tap (a reader's own content overrides it)"))


class StoreUpdate(Strict):
    receipt: ReceiptWrite | None = Field(default=None, description=(
        "What this store's readers show with a tap (a reader's own content overrides it)"))


class StoreRead(Read):
    id: uuid.UUID
    merchant_id: uuid.UUID
    code: str
    name: str
    address: str | None
    latitude: float | None
    longitude: float | None
    timezone: str
    kind: StoreKind
    receipt: ReceiptContent = Field(description="This store's own receipt content")
    created_at: datetime


class TerminalCreate(Strict):
    code: Code
    kind: TerminalKind = TerminalKind.pos
    points_per_tap: Int32 = Field(default=0, ge=0, le=1_000_000)
    require_pin: Flag = False
    call_number: E164 | None = Field(default=None,
                                     description="Number customers call to identify here")
    receipt: ReceiptWrite | None = Field(default=None, description=(
        "What this reader shows with a tap; each field set here overrides the store's"))


class TerminalUpdate(Strict):
    active: Flag | None = None
    points_per_tap: Int32 | None = Field(default=None, ge=0, le=1_000_000)
    require_pin: Flag | None = None
    call_number: E164 | None = None
    receipt: ReceiptWrite | None = Field(default=None, description=(
        "What this reader shows with a tap; each field set here overrides the store's"))


class TerminalRead(Read):
    id: uuid.UUID
    merchant_id: uuid.UUID
    store_id: uuid.UUID
    code: str
    kind: TerminalKind
    points_per_tap: int
    active: bool
    require_pin: bool
    call_number: str | None
    receipt: ReceiptContent = Field(description="This terminal's own receipt content "
                                                "(a field left null shows the store's)")
    created_at: datetime


class TerminalCreated(TerminalRead):
    api_key: str = Field(description="The terminal's API key; shown once, store it now")


class ApiKeyCreate(Strict):
    role: Role
    merchant_id: uuid.UUID | None = None
    terminal_id: uuid.UUID | None = None
    label: str | None = Field(default=None, max_length=200)
    expires_at: Instant | None = Field(default=None, description=(
        "When the key stops working (401 `key_expired`), in the future; absent: never"))


class ApiKeyRead(Read):
    id: uuid.UUID
    prefix: str
    role: Role
    merchant_id: uuid.UUID | None
    terminal_id: uuid.UUID | None
    label: str | None
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The secret key; shown once, store it now")
