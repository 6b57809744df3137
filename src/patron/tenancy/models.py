"""Operator → merchants → stores → terminals, and the API keys that act for them."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow


class StoreKind(StrEnum):
    shop = "shop"
    facility = "facility"
    ad_board = "ad_board"
    web = "web"


class TerminalKind(StrEnum):
    pos = "pos"
    reader = "reader"
    kiosk = "kiosk"
    online = "online"


class Role(StrEnum):
    operator = "operator"
    merchant = "merchant"
    terminal = "terminal"
    sales_rep = "sales_rep"


class Operator(Base):
    """The coalition: one per deployment."""

    __tablename__ = "operators"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Merchant(Base):
    __tablename__ = "merchants"
    __table_args__ = (
        CheckConstraint("number >= 0 AND number <= 99999", name="number_5_digits"),
        CheckConstraint("next_customer_no >= 1", name="next_customer_no_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    number: Mapped[int] = mapped_column(Integer, unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))
    # The next 7-digit customer number; bumped by one atomic UPDATE per enrolment, inside
    # the enrolling transaction, so numbers are consecutive and never reused or skipped.
    next_customer_no: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


RECEIPT_FIELDS = ("facility_info", "questionnaire_url", "consent_prompt")


class ReceiptColumns:
    """What a reader shows with a tap (PRODUCT.md part 5): facility information, a
    questionnaire link, a consent prompt; plain text, any language. Set on a store and on
    a reader; the reader's own value of a field overrides the store's
    (``tenancy.service.receipt_for``)."""

    receipt_facility_info: Mapped[str | None] = mapped_column(String(1000))
    receipt_questionnaire_url: Mapped[str | None] = mapped_column(String(500))
    receipt_consent_prompt: Mapped[str | None] = mapped_column(String(500))

    @property
    def receipt(self) -> dict[str, str | None]:
        """This row's own receipt content, field by field (None: not set here)."""
        return {name: getattr(self, f"receipt_{name}") for name in RECEIPT_FIELDS}


class Store(ReceiptColumns, Base):
    __tablename__ = "stores"
    __table_args__ = (
        Index("uq_stores_merchant_code", "merchant_id", "code", unique=True),
        CheckConstraint("latitude IS NULL OR (latitude >= -90 AND latitude <= 90)",
                        name="latitude_range"),
        CheckConstraint("longitude IS NULL OR (longitude >= -180 AND longitude <= 180)",
                        name="longitude_range"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    timezone: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16), default=StoreKind.shop.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Terminal(ReceiptColumns, Base):
    __tablename__ = "terminals"
    __table_args__ = (
        Index("uq_terminals_store_code", "store_id", "code", unique=True),
        CheckConstraint("points_per_tap >= 0", name="points_per_tap_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16), default=TerminalKind.pos.value)
    points_per_tap: Mapped[int] = mapped_column(Integer, default=0)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    require_pin: Mapped[bool] = mapped_column(Boolean, default=False)
    # The number customers call to identify themselves at this register (caller ID), E.164.
    call_number: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # SHA-256 of the whole key; the key itself is shown once and never stored.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(16))
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    terminal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("terminals.id"), index=True)
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # After this instant the key is refused (401 key_expired); none: it does not expire.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
