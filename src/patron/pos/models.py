"""POS transactions (purchases from tills and the web shop) and their lines.

``(terminal_id, receipt_no)`` is unique: it is what makes a retried commit a replay.
Every table carries ``merchant_id`` (the tenant key).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow


class Channel(StrEnum):
    store = "store"
    online = "online"


class PaymentMethod(StrEnum):
    cash = "cash"
    card = "card"
    mobile = "mobile"
    points = "points"
    other = "other"


def _in(values: type[StrEnum]) -> str:
    return ", ".join(f"'{value.value}'" for value in values)


class PosTransaction(Base):
    __tablename__ = "pos_transactions"
    __table_args__ = (
        Index("uq_pos_transactions_terminal_receipt", "terminal_id", "receipt_no",
              unique=True),
        Index("ix_pos_transactions_member_occurred", "member_id", "occurred_at"),
        CheckConstraint(f"channel IN ({_in(Channel)})", name="channel_known"),
        CheckConstraint(f"payment_method IS NULL OR payment_method IN ({_in(PaymentMethod)})",
                        name="payment_method_known"),
        CheckConstraint("subtotal >= 0 AND points_discount >= 0 AND total >= 0 "
                        "AND total = subtotal - points_discount", name="totals_consistent"),
        CheckConstraint("points_earned >= 0 AND points_burned >= 0", name="points_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    store_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("stores.id"), index=True)
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"))
    receipt_no: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[int] = mapped_column(BigInteger)
    points_discount: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    points_earned: Mapped[int] = mapped_column(BigInteger)
    points_burned: Mapped[int] = mapped_column(BigInteger)
    # The payment summary, when the till sends one (method and amount; never card data).
    payment_method: Mapped[str | None] = mapped_column(String(16))
    payment_amount: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # SHA-256 of the canonical request body: a replay must match it exactly.
    request_hash: Mapped[str] = mapped_column(String(64))
    # The exact answer given the first time; a replay returns these bytes again.
    response_json: Mapped[str | None] = mapped_column(Text)
    earn_entry_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("journal_entries.id"))
    burn_entry_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("journal_entries.id"))


class PosTransactionLine(Base):
    __tablename__ = "pos_transaction_lines"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price >= 0 AND amount >= 0 AND points_discount >= 0 "
                        "AND points_earned >= 0", name="values_non_negative"),
    )

    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_transactions.id"),
                                                      primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    sku: Mapped[str] = mapped_column(String(64))
    gtin: Mapped[str | None] = mapped_column(String(14))
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str | None] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    # This line's share of the points discount (largest remainder; shares sum to the total).
    points_discount: Mapped[int] = mapped_column(BigInteger)
    points_earned: Mapped[int] = mapped_column(BigInteger)
