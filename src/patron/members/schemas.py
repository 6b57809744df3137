from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from patron.kit.validation import NO_CONTROL_CHARACTERS, Flag, Int32, language_tag
from patron.tenancy.schemas import Read, Strict

# The member's id in the merchant's previous system (history import): unique per merchant.
EXTERNAL_REF_LIMITS: dict[str, Any] = {"min_length": 1, "max_length": 64,
                                       "pattern": NO_CONTROL_CHARACTERS}
ExternalRef = Annotated[str, Field(**EXTERNAL_REF_LIMITS)]

Language = Annotated[str, Field(min_length=2, max_length=16, examples=["ja"]),
                     AfterValidator(language_tag)]
Email = Annotated[str, Field(max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                             examples=["hana@example.com"])]
Pin = Annotated[str, Field(pattern=r"^[0-9]{4,8}$", description="4 to 8 digits")]
PhoneText = Annotated[str, Field(min_length=3, max_length=32, examples=["090-1234-5678"],
                                 description="Any common national or international format")]
CardUid = Annotated[str, Field(min_length=4, max_length=64, examples=["04:A2:24:6A:B3:5C:80"],
                               description="Card UID in hex; separators and case ignored")]
Source = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z_]+$",
                              examples=["pos"])]


VerificationChannel = Literal["sms", "email"]


class MemberProof(Strict):
    """The member, present at the till, proves it: their PIN, or the one-time code sent to
    their phone or e-mail (``POST /v1/members/{id}/verification-codes``)."""

    pin: Pin | None = None
    verification_id: uuid.UUID | None = None
    code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")

    @model_validator(mode="after")
    def _one_way(self) -> MemberProof:
        by_code = self.verification_id is not None or self.code is not None
        if (self.pin is None) == (not by_code) or (
                by_code and (self.verification_id is None or self.code is None)):
            raise ValueError("give either `pin`, or both `verification_id` and `code`")
        return self


def proof_field() -> Any:
    return Field(default=None, description=(
        "Needed when a terminal key makes the change: the member's PIN or a one-time code. "
        "The enrolling merchant's merchant key and the operator need none."))


class Gender(StrEnum):
    female = "female"
    male = "male"
    other = "other"
    undisclosed = "undisclosed"


class Consents(Strict):
    sms: Flag | None = None
    email: Flag | None = None
    push: Flag | None = None


class MemberCreate(Strict):
    merchant_id: uuid.UUID | None = Field(
        default=None, description="Required with an operator key; implied by other keys")
    phone: PhoneText | None = None
    email: Email | None = None
    card_uid: CardUid | None = None
    birth_year: Int32 | None = Field(default=None, ge=1900, le=2100)
    birth_month: Int32 | None = Field(default=None, ge=1, le=12,
                                    description="1-12; birthday campaigns run in this month")
    gender: Gender | None = None
    postcode: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9 -]+$")
    region: str | None = Field(default=None, max_length=64)
    language: Language | None = None
    consents: Consents | None = None
    pin: Pin | None = None
    source: Source = "api"
    referral_code: str | None = Field(
        default=None, min_length=1, max_length=32,
        description="Another member's referral code: this member is then their referee "
                    "(`unknown_referral_code`, `no_referral_program`, `self_referral`)")
    device_id: str | None = Field(
        default=None, min_length=8, max_length=128, pattern=r"^[\x21-\x7e]+$",
        description="The wallet app's installation id; kept only as a keyed hash, for the "
                    "referral program's self-referral check")


class MemberUpdate(Strict):
    phone: PhoneText | None = None
    email: Email | None = None
    birth_year: Int32 | None = Field(default=None, ge=1900, le=2100)
    birth_month: Int32 | None = Field(default=None, ge=1, le=12,
                                    description="1-12; birthday campaigns run in this month")
    gender: Gender | None = None
    postcode: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9 -]+$")
    region: str | None = Field(default=None, max_length=64)
    language: Language | None = None
    proof: MemberProof | None = proof_field()


class ConsentState(BaseModel):
    sms: bool
    email: bool
    push: bool


class MemberRead(BaseModel):
    id: uuid.UUID
    member_number: str
    merchant_id: uuid.UUID
    external_ref: str | None = Field(
        description="The member's id in the merchant's previous system (history import); "
                    "shown to the enrolling merchant and the operator only")
    status: str
    phone_masked: str | None
    email_masked: str | None
    birth_year: int | None
    birth_month: int | None
    gender: str | None
    postcode: str | None
    region: str | None
    language: str | None
    consents: ConsentState
    has_pin: bool
    created_at: datetime
    withdrawn_at: datetime | None
    erased_at: datetime | None


class ConsentChange(Strict):
    sms: Flag | None = None
    email: Flag | None = None
    push: Flag | None = None
    source: Source = "api"
    proof: MemberProof | None = proof_field()


class ConsentEventRead(Read):
    channel: str
    granted: bool
    source: str
    merchant_id: uuid.UUID
    occurred_at: datetime


class ConsentHistory(BaseModel):
    current: ConsentState
    history: list[ConsentEventRead]


class PinSet(Strict):
    pin: Pin | None = Field(description="The new PIN, or null to remove it")
    proof: MemberProof | None = proof_field()


class VerificationCodeRequest(Strict):
    channel: VerificationChannel = Field(description="Where the code goes: the member's "
                                         "current phone (`sms`) or e-mail (`email`)")


class VerificationCodeRead(BaseModel):
    verification_id: uuid.UUID
    channel: str
    sent_to: str = Field(description="The phone or e-mail, masked")
    expires_at: datetime


class DataExportRead(Read):
    id: uuid.UUID
    member_id: uuid.UUID
    merchant_id: uuid.UUID = Field(description="The member's enrolling merchant")
    actor_role: str
    actor_key_id: uuid.UUID | None
    actor_merchant_id: uuid.UUID | None
    exported_at: datetime


class DataExportPage(BaseModel):
    items: list[DataExportRead]
    next_cursor: str | None


class WithdrawRequest(Strict):
    reason: str | None = Field(default=None, max_length=200)
