from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, model_validator

from patron.kit.validation import NO_CONTROL_CHARACTERS, Flag, Int32, language_tag
from patron.members.models import Channel, Purpose
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
    """Whether a merchant (or the coalition) may send the member marketing, per channel."""

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
    consents: ConsentState = Field(description=(
        "Whether the key's merchant (an operator key: the coalition) may send the member "
        "marketing, per channel (`GET …/consents` has every scope and the history)"))
    has_pin: bool
    created_at: datetime
    withdrawn_at: datetime | None
    erased_at: datetime | None


PolicyVersion = Annotated[str, Field(min_length=1, max_length=32,
                                     pattern=r"^[\x21-\x7e]+$", examples=["2026-01"])]
Evidence = Annotated[str, Field(min_length=1, max_length=500, pattern=NO_CONTROL_CHARACTERS,
                                examples=["203.0.113.7"])]
# The coalition's own scope, or a merchant's by its id.
Scope = Literal["coalition"] | uuid.UUID

# The two forms of a consent change, by their fields (``proof`` and ``source`` go with
# either).
FLAG_FIELDS = ("sms", "email", "push")
LEDGER_FIELDS = ("channel", "purpose", "granted", "scope", "policy_version", "evidence")


class ConsentChange(Strict):
    """A consent change, in one of two forms:

    - the per-channel flags `sms`, `email`, `push` (true, false, or null for no change):
      *marketing* consent in the scope of the key's merchant (an operator key: the
      coalition's). A flag equal to that scope's current state records nothing;
    - one change: `channel`, `purpose` and `granted`, with an optional `scope` (the
      coalition's, `"coalition"`, or a merchant's id; by default the key's merchant, for an
      operator key the coalition), `policy_version` and `evidence`. Always recorded.

    A merchant's keys record in their own merchant's scope only; the operator in any."""

    sms: Flag | None = None
    email: Flag | None = None
    push: Flag | None = None
    channel: Channel | None = None
    purpose: Purpose | None = None
    granted: Flag | None = None
    scope: Scope | None = Field(default=None, description=(
        "`coalition`, or a merchant's id; by default the key's merchant (an operator key: "
        "the coalition)"))
    source: Source = Field(default="api", description=(
        "Where the change came from: `register`, `wallet`, `import`, `api`, "
        "`unsubscribe_link`, `stop_reply`, …"))
    policy_version: PolicyVersion | None = Field(default=None, description=(
        "The version of the privacy policy agreed to or withdrawn from"))
    evidence: Evidence | None = Field(default=None, description=(
        "What proves the change: the client's address, the message an unsubscribe came "
        "from; kept until the member is erased"))
    proof: MemberProof | None = proof_field()

    @model_validator(mode="after")
    def _one_form(self) -> ConsentChange:
        flags = [name for name in FLAG_FIELDS if name in self.model_fields_set]
        change = [name for name in LEDGER_FIELDS if name in self.model_fields_set]
        if flags and change:
            raise ValueError(
                f"give either the flags `sms`, `email`, `push` or one change as `channel`, "
                f"`purpose` and `granted`, not both: this body has {_listed(flags)} and "
                f"{_listed(change)}")
        if change:
            missing = [name for name in ("channel", "purpose", "granted")
                       if getattr(self, name) is None]
            if missing:
                raise ValueError(f"a change needs `channel`, `purpose` and `granted`: give "
                                 f"{_listed(missing)}")
        elif all(getattr(self, name) is None for name in FLAG_FIELDS):
            raise ValueError("nothing to record: give `channel`, `purpose` and `granted`, or "
                             "at least one of the flags `sms`, `email`, `push` as true or "
                             "false")
        return self

    def is_flags(self) -> bool:
        return self.channel is None


def _listed(names: list[str]) -> str:
    return ", ".join(f"`{name}`" for name in names)


class ConsentStateRead(BaseModel):
    """A member's current consent in one scope x channel x purpose: the last change."""

    scope: Literal["coalition", "merchant"]
    merchant_id: uuid.UUID | None = Field(description="The merchant of a merchant's scope")
    channel: str
    purpose: str
    granted: bool
    source: str
    policy_version: str | None
    since: datetime


class ConsentEventRead(Read):
    """One change in the member's consent ledger."""

    id: int
    scope: Literal["coalition", "merchant"]
    merchant_id: uuid.UUID | None = Field(description="The merchant of a merchant's scope")
    channel: str
    purpose: str
    granted: bool
    source: str
    policy_version: str | None
    evidence: str | None = Field(description=(
        "Shown to the operator, and to a merchant's keys for their own scope"))
    occurred_at: datetime


class ConsentHistory(BaseModel):
    current: ConsentState = Field(description=(
        "Whether the key's merchant (an operator key: the coalition) may send the member "
        "marketing, per channel"))
    states: list[ConsentStateRead] = Field(description=(
        "The current consent per scope, channel and purpose: the coalition's and the "
        "key's merchant's (an operator key: every merchant's)"))
    history: list[ConsentEventRead] = Field(description=(
        "Every change in those scopes, oldest first"))


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
