from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from patron.kit.validation import Int64
from patron.tenancy.schemas import Strict

WholeNumber = Int64  # a BIGINT column's range; the service checks the business range


class RateWrite(Strict):
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["JPY"])]
    spend_per_mile: WholeNumber = Field(description="Minor units of spend that earn one "
                                                    "mile (100 with JPY: 1 mile per 100 yen)",
                                        examples=[100])
    mile_value_milli: WholeNumber = Field(description="One mile's value in thousandths of a "
                                                      "minor unit (1000 with JPY = 1 yen)",
                                          examples=[1000])


class RatesWrite(Strict):
    rates: Annotated[list[RateWrite], Field(max_length=200)]


class RateRead(BaseModel):
    currency: str
    spend_per_mile: int
    mile_value_milli: int
    updated_at: datetime


class RatesRead(BaseModel):
    rates: list[RateRead]


class MerchantSettlement(BaseModel):
    merchant_id: uuid.UUID
    merchant_name: str
    currency: str
    miles_issued: int = Field(description="Miles this merchant's purchases gave members, "
                                          "less those taken back by returns: owed by the "
                                          "merchant to the coalition")
    miles_redeemed: int = Field(description="Miles members spent here, less those given "
                                            "back by returns: owed by the coalition to the "
                                            "merchant")
    net_miles: int = Field(description="miles_redeemed - miles_issued: above zero the "
                                       "coalition pays the merchant, below zero the "
                                       "merchant pays the coalition")
    mile_value_milli: int | None = Field(description="The rate used (null: no rate for "
                                                     "this currency, no money figures)")
    issued_value: int | None
    redeemed_value: int | None
    net_value: int | None = Field(description="redeemed_value - issued_value, minor units "
                                              "of the merchant's currency")


class CoalitionSettlement(BaseModel):
    miles_issued: int
    miles_redeemed: int
    net_miles: int = Field(description="miles_issued - miles_redeemed: the change in miles "
                                       "members hold, funded by the issuers")


class SettlementRead(BaseModel):
    period: str
    starts_at: datetime
    ends_at: datetime
    merchants: list[MerchantSettlement]
    coalition: CoalitionSettlement | None = Field(
        description="The coalition's own line (operator keys only); with it, every net "
                    "in miles sums to zero")
