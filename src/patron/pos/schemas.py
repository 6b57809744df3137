from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from patron.identity.schemas import MemberIdentification
from patron.kit.validation import Instant, Int64
from patron.pos.models import Channel, PaymentMethod
from patron.tenancy.schemas import Strict

MAX_LINES = 500

# Ranges (quantity >= 1, prices and points >= 0) are checked by the service so that each
# refusal has its own code (`invalid_quantity`, `invalid_price`, `invalid_burn`, ...);
# strict: a float, a numeric string or a boolean is refused, never converted (rule 4).
WholeNumber = Int64  # a BIGINT column's range; the service checks the business range
Text64 = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$")]


class LineWrite(Strict):
    sku: Text64
    gtin: Annotated[str, Field(min_length=1, max_length=32,
                               description="GTIN-8/12/13/14, validated with its check "
                                           "digit (`invalid_gtin`)",
                               examples=["4006381333931"])] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)]
    category: Text64 | None = None
    quantity: WholeNumber = Field(description="1 or more (`invalid_quantity`)", examples=[1])
    unit_price: WholeNumber = Field(description="Minor units of the currency, 0 or more "
                                                "(`invalid_price`)", examples=[1200])


class Payment(Strict):
    """How the customer paid: method and amount only — never card data."""

    method: PaymentMethod
    amount: WholeNumber = Field(description="Minor units, 0 or more "
                                            "(`invalid_payment_amount`)")


class VoucherUse(Strict):
    code: Annotated[str, Field(min_length=1, max_length=64,
                               description="The code as printed or its numeric barcode form",
                               examples=["7K3Q-DRX2-M9T4-WC"])]
    reservation_id: uuid.UUID | None = Field(default=None, description="This register's "
                                                                       "hold on the code")


class AppliedVoucher(BaseModel):
    code: str = Field(description="Display form")
    offer_id: uuid.UUID
    name: str
    kind: str
    discount: int = Field(description="Minor units this code took off")
    bonus_points: int = Field(description="Points this code added to the earn")


class IssuedBenefitRead(BaseModel):
    """A benefit this purchase earned: a personal single-use code now in the member's
    wallet (docs/vouchers.md, "Threshold benefits")."""

    code: str = Field(description="Display form")
    offer_id: uuid.UUID
    name: str = Field(description="The offer's name")
    rule_id: uuid.UUID
    crossing: int = Field(description="Which crossing of the rule's threshold (1 = first)")
    valid_until: datetime | None


class PurchaseWrite(Strict):
    receipt_no: Text64 = Field(description="Unique per terminal: a second commit with the "
                                           "same number is a replay")
    occurred_at: Instant = Field(description="When billing completed, with its offset; "
                                                   "at most 5 minutes ahead, 30 days back")
    currency: Annotated[str, Field(min_length=3, max_length=3, examples=["JPY"],
                                   description="ISO 4217; must be the merchant's currency")]
    member: MemberIdentification | None = None
    lines: Annotated[list[LineWrite], Field(min_length=1, max_length=MAX_LINES)]
    points_to_burn: WholeNumber = Field(default=0, description="Points to take as a "
                                                               "discount, 0 or more")
    miles_to_burn: WholeNumber = Field(default=0, description="Coalition miles to take as a "
                                                              "discount (after the points), "
                                                              "0 or more (`invalid_miles`)")
    miles: WholeNumber | None = Field(default=None, description="Miles the merchant computed "
                                                                "itself for this purchase; "
                                                                "absent: the operator's rate")
    channel: Channel | None = Field(default=None, description=(
        "Optional: the terminal's kind decides (the web shop's `online` terminal sells "
        "`online`, every other terminal `store`); a channel that contradicts it is 422 "
        "`channel_not_terminals`"))
    payment: Payment | None = None
    vouchers: Annotated[list[VoucherUse], Field(max_length=10)] = Field(
        default_factory=list, description="Codes used on this purchase, applied in order "
                                          "before points and miles")


class LineRead(BaseModel):
    line_no: int
    sku: str
    gtin: str | None
    name: str
    category: str | None
    quantity: int
    unit_price: int
    amount: int = Field(description="quantity x unit_price, minor units")
    voucher_discount: int = Field(description="What the vouchers took off this line")
    points_discount: int = Field(description="This line's share of the points discount")
    miles_discount: int = Field(description="This line's share of the miles discount")
    points_earned: int = Field(description="This line's share of the points earned")
    points_burned: int = Field(description="This line's share of the points spent")
    miles_earned: int = Field(description="This line's share of the miles earned")
    miles_burned: int = Field(description="This line's share of the miles spent")


class QuoteRead(BaseModel):
    """What a commit of the same body would do now (nothing is written)."""

    receipt_no: str
    member_id: uuid.UUID | None
    currency: str
    subtotal: int
    voucher_discount: int
    points_discount: int
    miles_discount: int
    total: int = Field(description="What the customer pays: subtotal - voucher_discount - "
                                   "points_discount - miles_discount")
    points_earned: int
    points_burned: int
    miles_earned: int
    miles_burned: int
    balance_before: int | None
    balance_after: int | None
    miles_balance_before: int | None
    miles_balance_after: int | None
    max_burnable: int | None = Field(description="The most points this basket could burn")
    lines: list[LineRead]
    vouchers: list[AppliedVoucher]
    offers: list[dict[str, object]] = Field(description=(
        "The campaigns' offers this basket would earn now (docs/campaigns.md)"))
    campaign_checks: list[dict[str, object]] = Field(default_factory=list, description=(
        "With explain=true: each active campaign, whether it would fire and why, with "
        "every condition's verdict and the value it saw"))
    explanation: list[str]


class TransactionRead(BaseModel):
    id: uuid.UUID
    receipt_no: str
    member_id: uuid.UUID | None
    channel: Channel
    currency: str
    subtotal: int
    voucher_discount: int
    points_discount: int
    miles_discount: int
    total: int = Field(description="What the customer pays: subtotal - voucher_discount - "
                                   "points_discount - miles_discount")
    points_earned: int
    points_burned: int
    miles_earned: int
    miles_burned: int
    balance_after: int | None = Field(description="The member's points here after this "
                                                  "purchase; null when anonymous")
    miles_balance_after: int | None = Field(description="The member's coalition miles after "
                                                        "this purchase; null when anonymous")
    lines: list[LineRead]
    vouchers: list[AppliedVoucher]
    offers: list[dict[str, object]] = Field(description=(
        "What the campaigns gave the member with this purchase: a voucher (its code and "
        "barcode number), bonus points, a message (docs/campaigns.md)"))
    benefits: list[IssuedBenefitRead] = Field(default_factory=list, description=(
        "Benefit vouchers this purchase put into the member's wallet (thresholds crossed, "
        "stamp cards completed)"))
    occurred_at: datetime
    campaign_checks: list[dict[str, object]] | None = Field(default=None, exclude=True,
                                                            description=(
        "Only with explain=true on the commit that decided the offers: each active "
        "campaign's verdict and why (docs/campaigns.md); not kept with the receipt"))
    created_at: datetime


class ReturnLineWrite(Strict):
    line_no: WholeNumber = Field(description="The purchase's line number (from 1)")
    quantity: WholeNumber = Field(description="Units brought back, 1 or more "
                                              "(`invalid_quantity`)")


class ReturnWrite(Strict):
    return_no: Text64 = Field(description="Unique per purchase: a second return with the "
                                          "same number is a replay")
    occurred_at: Instant = Field(description="When the goods came back, with its "
                                                   "offset; at most 5 minutes ahead")
    lines: Annotated[list[ReturnLineWrite], Field(min_length=1, max_length=MAX_LINES)] | None = (
        Field(default=None, description="The lines and units brought back; absent: "
                                        "everything not returned yet"))


class ReturnLineRead(BaseModel):
    line_no: int
    quantity: int
    refund_amount: int = Field(description="What these units cost the customer: their amount "
                                           "less their shares of the discounts")
    points_clawed_back: int
    points_restored: int
    miles_clawed_back: int
    miles_restored: int


class ReturnRead(BaseModel):
    id: uuid.UUID
    transaction_id: uuid.UUID
    return_no: str
    member_id: uuid.UUID | None
    currency: str
    refund_amount: int
    vouchers_returned: list[str] = Field(description="Codes given back to be used again: "
                                                     "when the purchase is returned in full")
    benefits_revoked: list[str] = Field(default_factory=list, description=(
        "Unused benefit codes revoked because this return took the member's count back "
        "below the threshold they were issued for"))
    referral_clawed_back: uuid.UUID | None = Field(default=None, description=(
        "The referral this purchase qualified, whose rewards this return took back (it left "
        "the purchase below the program's minimum, or returned it in full)"))
    points_clawed_back: int = Field(description="Points the purchase earned, taken back")
    points_restored: int = Field(description="Points the purchase spent, given back")
    miles_clawed_back: int
    miles_uncollected: int = Field(description="Miles to take back that the member had "
                                               "already spent (not taken: miles never go "
                                               "below zero)")
    miles_restored: int
    balance_after: int | None = Field(description="Points at this merchant after the return "
                                                  "(below zero: owed, see docs/ledger.md)")
    miles_balance_after: int | None
    lines: list[ReturnLineRead]
    occurred_at: datetime
    created_at: datetime
