from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field

from patron.security.models import SecurityEventKind


class SecurityEventRead(BaseModel):
    id: int
    merchant_id: uuid.UUID
    kind: SecurityEventKind = Field(
        description="What was attempted: voucher_validation, voucher_reservation, "
                    "voucher_redemption, voucher_lookup, pos_quote, pos_commit, "
                    "offline_forgery (a tampered or foreign offline allowance), referral (an "
                    "enrolment refused or flagged by the referral checks), identification "
                    "(no member for what a till gave)")
    terminal_id: uuid.UUID | None
    client_address: str | None = Field(description="The caller's network address")
    member_id: uuid.UUID | None = Field(description="The member the attempt named, if any")
    code_prefix: str | None = Field(description="The first symbols of the code tried (never "
                                                "the whole code)")
    code_digest: str | None = Field(description="A keyed digest of the code tried: the same "
                                                "digest is the same code")
    refusal: str = Field(description="The refusal's error code (voucher_not_found, "
                                     "voucher_expired, ...)")
    detail: str | None
    counted: bool = Field(description="Whether it counts towards a failure limit: what "
                                      "could be guessing (an unknown, malformed or another "
                                      "merchant's code; no member found) does, a business "
                                      "refusal (minimum spend, expired, ...) does not")
    occurred_at: datetime


class SecurityEventPage(BaseModel):
    events: list[SecurityEventRead] = Field(description="Newest first")
    next_cursor: int | None = Field(description="Pass as `cursor` for the next (older) page; "
                                                "null on the last page")
