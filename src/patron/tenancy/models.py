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
    LargeBinary,
    String,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime, sql_in
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
    # A member signed in on their wallet (a browser session, never an API key).
    member = "member"


class StaffRole(StrEnum):
    """A person's role in the web app (docs/tenancy.md, "People"): the coalition's
    operator staff; a merchant's owner, managers and cashiers; sales representatives."""

    operator = "operator"
    owner = "owner"
    manager = "manager"
    cashier = "cashier"
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


class StaffUser(Base):
    """A person who signs in to the web app: the operator's staff (no merchant), a
    merchant's owner, managers and cashiers (a cashier may be bound to one store), and
    sales representatives (the coalition's, or one merchant's). The e-mail is the sign-in
    name, kept as a keyed hash for the lookup and encrypted for display; the password is
    an argon2id hash, the TOTP secret encrypted."""

    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint(f"role IN ({sql_in(StaffRole)})", name="role"),
        CheckConstraint("(role = 'operator' AND merchant_id IS NULL) OR role = 'sales_rep' "
                        "OR (role <> 'operator' AND merchant_id IS NOT NULL)",
                        name="merchant_of_role"),
        CheckConstraint("failed_logins >= 0", name="failed_logins_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    role: Mapped[str] = mapped_column(String(16))
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email_enc: Mapped[bytes] = mapped_column(LargeBinary)
    name: Mapped[str] = mapped_column(String(200))
    # None until the person accepts their invitation and chooses a password.
    password_hash: Mapped[str | None] = mapped_column(String(200))
    totp_secret_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    # The start of the last time step whose code was accepted: a code works once.
    totp_last_step: Mapped[datetime | None] = mapped_column(UTCDateTime)
    language: Mapped[str | None] = mapped_column(String(16))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffInvitation(Base):
    """An invitation to choose a password, sent by e-mail: a one-time link whose token is
    kept only as its SHA-256."""

    __tablename__ = "staff_invitations"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id"), index=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class StaffSession(Base):
    """A signed-in browser of a staff user. The cookie holds a random token; the table its
    SHA-256 only, so a database read gives no session away. A session of a user with TOTP
    is not signed in until the code passes (``second_factor_at``)."""

    __tablename__ = "staff_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    staff_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("staff_users.id"), index=True)
    # The register a cashier works at in this browser (chosen after signing in).
    terminal_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("terminals.id"))
    second_factor_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
