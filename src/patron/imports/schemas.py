"""The history import's rows (one CSV row each, docs/imports.md) and its summary."""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from patron.members.schemas import CardUid, Email, ExternalRef, Gender, Language, PhoneText

Text64 = Annotated[str, Field(min_length=1, max_length=64)]


class _Row(BaseModel):
    """A CSV row: every value arrives as text (an empty cell is absent) and is converted
    by its field's type."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MemberRow(_Row):
    external_ref: ExternalRef
    phone: PhoneText | None = None
    email: Email | None = None
    card_uid: CardUid | None = None
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    gender: Gender | None = None
    postal_code: str | None = Field(default=None, max_length=16, pattern=r"^[A-Za-z0-9 -]+$")
    language: Language | None = None
    enrolled_at: AwareDatetime | None = None
    points_balance: int | None = Field(default=None, ge=0, le=1_000_000_000)


class PurchaseRow(_Row):
    external_ref: ExternalRef
    receipt_no: Text64
    occurred_at: AwareDatetime
    amount: Decimal = Field(ge=0, le=Decimal("1000000000000"))
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    store_code: Annotated[str, Field(min_length=1, max_length=40)] | None = None
    sku: Text64 | None = None
    category: Text64 | None = None
    quantity: int = Field(default=1, ge=1, le=1_000_000)


MEMBER_COLUMNS = tuple(MemberRow.model_fields)
PURCHASE_COLUMNS = tuple(PurchaseRow.model_fields)


class PointsPolicy(StrEnum):
    """What imported purchases earn: nothing (the default; import an opening balance per
    member instead) or the points the program gives today's sales, dated when they
    happened."""

    none = "none"
    as_earned = "as-earned"


class RefusedRow(BaseModel):
    line: int = Field(description="The row's line in the file (the header is line 1)")
    key: str | None = Field(description="The row's external_ref, or its receipt_no")
    code: str = Field(description="The error code (docs/errors.md)")
    reason: str = Field(description="What is wrong and what to fix")


class ImportKind(StrEnum):
    members = "members"
    purchases = "purchases"


class ImportSummary(BaseModel):
    kind: ImportKind
    rows: int = Field(description="Data rows read (the header not counted)")
    imported: int = Field(description="Members, or purchases, added by this run")
    already_there: int = Field(description="Members, or purchases, an earlier run added: "
                                           "an import run twice adds nothing")
    refused: int = Field(description="Members, or purchases, refused (each of its rows is "
                                     "listed)")
    refused_rows: list[RefusedRow] = Field(
        description=f"The rows refused, with their line numbers and why (at most "
                    f"{10_000:,} here; the command line writes all to a CSV file)")
    refused_rows_truncated: bool = Field(
        description="Whether more rows were refused than are listed")
