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

from patron.db import Base, UTCDateTime, sql_in
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


class PosTransaction(Base):
    __tablename__ = "pos_transactions"
    __table_args__ = (
        Index("uq_pos_transactions_terminal_receipt", "terminal_id", "receipt_no",
              unique=True),
        Index("ix_pos_transactions_member_occurred", "member_id", "occurred_at"),
        CheckConstraint(f"channel IN ({sql_in(Channel)})", name="channel_known"),
        CheckConstraint(f"payment_method IS NULL OR payment_method IN ({sql_in(PaymentMethod)})",
                        name="payment_method_known"),
        CheckConstraint("subtotal >= 0 AND voucher_discount >= 0 AND points_discount >= 0 "
                        "AND miles_discount >= 0 AND total >= 0 AND total = subtotal - "
                        "voucher_discount - points_discount - miles_discount",
                        name="totals_add_up"),
        CheckConstraint("points_earned >= 0 AND points_burned >= 0", name="points_non_negative"),
        CheckConstraint("miles_earned >= 0 AND miles_burned >= 0", name="miles_non_negative"),
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
    # Vouchers come off first, then points, then miles (docs/pos.md).
    voucher_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    points_discount: Mapped[int] = mapped_column(BigInteger)
    miles_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger)
    points_earned: Mapped[int] = mapped_column(BigInteger)
    points_burned: Mapped[int] = mapped_column(BigInteger)
    miles_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    miles_burned: Mapped[int] = mapped_column(BigInteger, default=0)
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
    miles_earn_entry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("journal_entries.id"))
    miles_burn_entry_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("journal_entries.id"))


class PosTransactionLine(Base):
    __tablename__ = "pos_transaction_lines"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("unit_price >= 0 AND amount >= 0 AND points_discount >= 0 "
                        "AND points_earned >= 0", name="values_non_negative"),
        CheckConstraint("points_burned >= 0 AND miles_discount >= 0 AND miles_earned >= 0 "
                        "AND miles_burned >= 0", name="shares_non_negative"),
        CheckConstraint("voucher_discount >= 0", name="voucher_discount_non_negative"),
        CheckConstraint("returned_quantity >= 0 AND returned_quantity <= quantity",
                        name="returned_quantity_in_range"),
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
    # What the vouchers took off this line (each voucher's discount split over the lines
    # it applies to).
    voucher_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    # This line's share of the points discount (largest remainder; shares sum to the total).
    points_discount: Mapped[int] = mapped_column(BigInteger)
    points_earned: Mapped[int] = mapped_column(BigInteger)
    # The line's shares of the points and miles spent and of the miles earned (largest
    # remainder, like the discount): what a return of this line gives back or takes back.
    points_burned: Mapped[int] = mapped_column(BigInteger, default=0)
    miles_discount: Mapped[int] = mapped_column(BigInteger, default=0)
    miles_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    miles_burned: Mapped[int] = mapped_column(BigInteger, default=0)
    # Units returned so far; changed only by a conditional UPDATE, so that concurrent
    # returns can never return more than was bought.
    returned_quantity: Mapped[int] = mapped_column(BigInteger, default=0)


class PosReturn(Base):
    """Goods brought back from one purchase. ``(transaction_id, return_no)`` is unique: it
    makes a retried return a replay."""

    __tablename__ = "pos_returns"
    __table_args__ = (
        Index("uq_pos_returns_transaction_return_no", "transaction_id", "return_no",
              unique=True),
        CheckConstraint("refund_amount >= 0 AND points_clawed_back >= 0 "
                        "AND points_restored >= 0 AND miles_clawed_back >= 0 "
                        "AND miles_uncollected >= 0 AND miles_restored >= 0",
                        name="values_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    transaction_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_transactions.id"))
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    terminal_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("terminals.id"))
    return_no: Mapped[str] = mapped_column(String(64))
    member_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("members.id"))
    # What goes back to the customer in money: the returned units' amounts less their
    # shares of the points and miles discounts.
    refund_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    points_clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)
    points_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    miles_clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)
    # Miles the member had already spent: not taken back (see docs/pos.md).
    miles_uncollected: Mapped[int] = mapped_column(BigInteger, default=0)
    miles_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    request_hash: Mapped[str] = mapped_column(String(64))
    response_json: Mapped[str | None] = mapped_column(Text)


class PosReturnLine(Base):
    __tablename__ = "pos_return_lines"
    __table_args__ = (
        CheckConstraint("quantity >= 1", name="quantity_positive"),
        CheckConstraint("refund_amount >= 0 AND points_clawed_back >= 0 "
                        "AND points_restored >= 0 AND miles_clawed_back >= 0 "
                        "AND miles_restored >= 0", name="values_non_negative"),
    )

    return_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("pos_returns.id"),
                                                 primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    quantity: Mapped[int] = mapped_column(BigInteger)
    refund_amount: Mapped[int] = mapped_column(BigInteger)
    points_clawed_back: Mapped[int] = mapped_column(BigInteger)
    points_restored: Mapped[int] = mapped_column(BigInteger)
    # Miles this line asks back; the return as a whole may collect fewer (uncollected).
    miles_clawed_back: Mapped[int] = mapped_column(BigInteger)
    miles_restored: Mapped[int] = mapped_column(BigInteger)
