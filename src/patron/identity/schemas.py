from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, Field, model_validator

from patron.members.schemas import CardUid, MemberProof, PhoneText, Pin, proof_field
from patron.tenancy.schemas import Read, Strict

IDENTIFIERS = ("barcode", "qr", "card_uid", "phone", "image")
MEMBER_IDENTIFIERS = ("member_id", "barcode", "qr", "card_uid", "phone")


class Method(StrEnum):
    barcode = "barcode"
    qr = "qr"
    card_uid = "card_uid"
    phone = "phone"
    image = "image"
    caller_id = "caller_id"


class MemberIdentification(Strict):
    """Exactly one way to say who the customer is (as `POST /v1/identify` takes them, or
    the member's id when the till already knows it)."""

    member_id: uuid.UUID | None = None
    barcode: Annotated[str, Field(min_length=1, max_length=64,
                                  examples=["12345000000184"])] | None = None
    qr: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    card_uid: CardUid | None = None
    phone: PhoneText | None = None
    pin: Pin | None = Field(default=None, description="Member PIN where the terminal "
                                                      "requires one (never stored)")

    @model_validator(mode="after")
    def _exactly_one(self) -> MemberIdentification:
        given = [name for name in MEMBER_IDENTIFIERS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of: " + ", ".join(MEMBER_IDENTIFIERS))
        return self


class IdentifyRequest(Strict):
    barcode: Annotated[str, Field(min_length=1, max_length=64,
                                  examples=["12345000000184"])] | None = None
    qr: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    card_uid: CardUid | None = None
    phone: PhoneText | None = None
    image: Annotated[str, Field(min_length=8, max_length=1_048_576,
                                description="PNG or JPEG, base64 (a data: URL is fine)")
                     ] | None = None
    pin: Pin | None = Field(default=None, description="Member PIN for step-up verification")

    @model_validator(mode="after")
    def _exactly_one(self) -> IdentifyRequest:
        given = [name for name in IDENTIFIERS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of: " + ", ".join(IDENTIFIERS))
        return self

    @property
    def method(self) -> Method:
        return next(Method(name) for name in IDENTIFIERS if getattr(self, name) is not None)


class IdentifyResult(BaseModel):
    member_id: uuid.UUID
    member_number: str
    merchant_id: uuid.UUID = Field(description="The merchant where the member enrolled")
    method: Method
    known_here: bool = Field(description="The member already has a membership with the "
                                         "caller's merchant")
    pin_verified: bool


class QrTokenRead(BaseModel):
    token: str
    expires_at: datetime
    refresh_seconds: int


class CardAdd(Strict):
    uid: CardUid
    proof: MemberProof | None = proof_field()


class CardBlock(Strict):
    reason: str | None = Field(default=None, max_length=200)
    proof: MemberProof | None = proof_field()


class CardReplace(Strict):
    uid: CardUid
    reason: str | None = Field(default=None, max_length=200)
    proof: MemberProof | None = proof_field()


class CardRead(Read):
    id: uuid.UUID
    member_id: uuid.UUID
    uid_last4: str
    status: str
    block_reason: str | None
    blocked_at: datetime | None
    replaced_by_id: uuid.UUID | None
    created_at: datetime


class CallerIdWaitRead(Read):
    id: uuid.UUID
    terminal_id: uuid.UUID
    call_number: str
    status: str
    member_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
