from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from patron.pos.schemas import Text64, WholeNumber
from patron.tenancy.schemas import Strict
from patron.vouchers.benefits.rules import Measure, Mode


class BenefitRuleWrite(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200, examples=["10th coffee free"])]
    measure: Measure = Field(description=(
        "What counts: `points` earned at the merchant, coalition `miles` earned anywhere "
        "(operator key), `purchases` at the merchant (a stamp per purchase), `items` "
        "bought at the merchant (a stamp per unit)"))
    mode: Mode = Field(description="`once`: one benefit when the count first reaches the "
                                   "threshold; `every`: one at each multiple of it")
    threshold: WholeNumber = Field(description="1 to 10^12 (`invalid_benefit_threshold`)",
                                   examples=[9])
    offer_id: uuid.UUID = Field(description="The offer whose personal single-use code is "
                                            "put into the member's wallet")
    merchant_id: uuid.UUID | None = Field(default=None, description=(
        "Operator key: the merchant whose purchases count (not for miles rules); a "
        "merchant key: its own, or absent"))
    sku: Text64 | None = Field(default=None, description="purchases / items: count only "
                                                         "lines of this SKU")
    category: Text64 | None = Field(default=None, description="purchases / items: or only "
                                                              "lines of this category")


class BenefitRuleRead(BaseModel):
    id: uuid.UUID
    merchant_id: uuid.UUID | None = Field(description="null: a coalition (miles) rule")
    name: str
    measure: Measure
    mode: Mode
    threshold: int
    offer_id: uuid.UUID
    sku: str | None
    category: str | None
    active: bool
    issued: int = Field(description="Benefits issued by this rule and not revoked")
    created_at: datetime
    deactivated_at: datetime | None


class BenefitProgressRead(BaseModel):
    """A member's place on one active benefit rule: a stamp card's "7 of 10"."""

    rule_id: uuid.UUID
    merchant_id: uuid.UUID | None = Field(description="null: a coalition (miles) rule")
    merchant_name: str | None
    name: str
    measure: Measure
    mode: Mode
    threshold: int
    count: int = Field(description="What the member has counted towards it so far, in all")
    filled: int = Field(description="On the current card: `count` mod `threshold` for "
                                    "`every`, `count` up to `threshold` for `once`")
    completed: int = Field(description="Cards completed (benefits earned by this rule)")
    offer_name: str = Field(description="What a completed card gives")
    created_at: datetime = Field(description="When the rule was made (the list's order)")
