"""Members (one person across the coalition), their memberships and consent history.

Phone and e-mail are held only as AES-GCM ciphertext plus a keyed HMAC for lookups.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db import Base, UTCDateTime
from patron.kit.clock import utcnow


class MemberStatus(StrEnum):
    active = "active"
    withdrawn = "withdrawn"
    erased = "erased"


class Channel(StrEnum):
    sms = "sms"
    email = "email"
    push = "push"


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        Index("uq_members_merchant_customer_no", "merchant_id", "customer_no", unique=True),
        Index("uq_members_merchant_external_ref", "merchant_id", "external_ref", unique=True),
        # One active member per phone / e-mail across the coalition; a withdrawn member's
        # hash is kept (so the refusal can say "withdrawn") without blocking re-enrolment.
        Index("uq_members_active_phone", "phone_hash", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
        Index("uq_members_active_email", "email_hash", unique=True,
              sqlite_where=text("status = 'active'"), postgresql_where=text("status = 'active'")),
        Index("ix_members_phone_hash", "phone_hash"),
        Index("ix_members_email_hash", "email_hash"),
        CheckConstraint("customer_no >= 1 AND customer_no <= 9999999", name="customer_no_7"),
        CheckConstraint("pin_failures >= 0", name="pin_failures_non_negative"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    enrolled_store_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("stores.id"))
    customer_no: Mapped[int] = mapped_column(Integer)
    member_number: Mapped[str] = mapped_column(String(14), unique=True)
    # The member's id in the merchant's previous system (the history import), unique per
    # merchant; never shown to another merchant.
    external_ref: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=MemberStatus.active.value)
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    email_hash: Mapped[str | None] = mapped_column(String(64))
    email_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    birth_year: Mapped[int | None] = mapped_column(Integer)
    # The month alone (1-12): what a birthday campaign needs, without the day.
    birth_month: Mapped[int | None] = mapped_column(Integer)
    gender: Mapped[str | None] = mapped_column(String(16))
    postcode: Mapped[str | None] = mapped_column(String(16))
    region: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(16))
    consent_sms: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_email: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_push: Mapped[bool] = mapped_column(Boolean, default=False)
    pin_hash: Mapped[str | None] = mapped_column(String(200))
    pin_failures: Mapped[int] = mapped_column(Integer, default=0)
    pin_locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Membership(Base):
    """A member's relationship with one merchant; it is what lets that merchant see them."""

    __tablename__ = "memberships"
    __table_args__ = (Index("uq_memberships_member_merchant", "member_id", "merchant_id",
                            unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(32))


class ConsentEvent(Base):
    """Append-only record of every marketing-consent change."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdentifierKind(StrEnum):
    phone = "phone"
    email = "email"
    device = "device"


class MemberIdentifier(Base):
    """Every phone, e-mail and wallet device a member has had, by keyed hash only: what
    the referral program's self-referral check compares (docs/referrals.md). Cards need no
    such record: a card's hash is never reused (``cards.uid_hash`` is unique for good).
    Erasure deletes a member's rows."""

    __tablename__ = "member_identifiers"
    __table_args__ = (Index("ix_member_identifiers_kind_hash", "kind", "hash"),)

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MemberVerification(Base):
    """A one-time code sent to the member's current phone or e-mail, so that a till can
    prove the member is present before it changes what identifies them. The code is kept
    only as a keyed hash; it works once, for a few minutes, for a few attempts."""

    __tablename__ = "member_verifications"

    # The member's enrolling merchant first: the tenant key (DESIGN.md, "Scale path").
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    requested_by_merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"))
    channel: Mapped[str] = mapped_column(String(8))
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    consumed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DataExport(Base):
    """One export of a member's personal data: who took it, when (docs/privacy.md)."""

    __tablename__ = "data_exports"
    __table_args__ = (Index("ix_data_exports_exported_at", "exported_at"),)

    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    actor_role: Mapped[str] = mapped_column(String(16))
    actor_key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    actor_merchant_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    exported_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
