"""Members (one person across the coalition), their memberships and their consent ledger.

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

from patron.db import Base, UTCDateTime, sql_in
from patron.kit.clock import utcnow


class MemberStatus(StrEnum):
    active = "active"
    withdrawn = "withdrawn"
    erased = "erased"


class Channel(StrEnum):
    sms = "sms"
    email = "email"
    push = "push"


class Purpose(StrEnum):
    # Offers, campaigns, newsletters: sent only with the member's consent.
    marketing = "marketing"
    # What the member's own business needs (a receipt, a one-time code, a balance notice).
    transactional = "transactional"


# The scope key of consent recorded for the whole coalition (the operator's); a merchant's
# scope key is its id as text (``consent_scope``).
COALITION_SCOPE = "coalition"


def consent_scope(merchant_id: uuid.UUID | None) -> str:
    """The scope key of consent recorded for ``merchant_id`` (None: the coalition)."""
    return COALITION_SCOPE if merchant_id is None else str(merchant_id)


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
    """The consent ledger, append-only: every grant and withdrawal of a member's consent for
    a scope (a merchant; NULL: the coalition) x channel x purpose, in ``id`` order. Erasure
    clears ``evidence`` (it may quote an address), nothing else changes a row."""

    __tablename__ = "consent_events"
    __table_args__ = (
        CheckConstraint(f"channel IN ({sql_in(Channel)})", name="channel"),
        CheckConstraint(f"purpose IN ({sql_in(Purpose)})", name="purpose"),
    )

    # Autoincrement: the order of the ledger, which the current state follows.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    channel: Mapped[str] = mapped_column(String(8))
    purpose: Mapped[str] = mapped_column(String(16))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    # The version of the privacy policy the member agreed to or withdrew from.
    policy_version: Mapped[str | None] = mapped_column(String(32))
    # What proves the change: the client's address, the message an unsubscribe came from.
    evidence: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CurrentConsent(Base):
    """The current state of each member x scope x channel x purpose: the latest row of the
    consent ledger for it (``event_id``), written in the transaction of that row
    (``patron.members.consent.record``); it always equals the replay of the ledger.

    The scope is a key column that is never NULL (``COALITION_SCOPE`` or the merchant's id
    as text), because unique keys treat NULLs as distinct; it is the tenant key in the
    primary key (DESIGN.md, "Scale path"), and ``merchant_id`` carries the merchant."""

    __tablename__ = "consent_states"
    __table_args__ = (
        CheckConstraint(f"channel IN ({sql_in(Channel)})", name="channel"),
        CheckConstraint(f"purpose IN ({sql_in(Purpose)})", name="purpose"),
        CheckConstraint(f"(merchant_id IS NULL AND scope = '{COALITION_SCOPE}') OR "
                        f"(merchant_id IS NOT NULL AND scope <> '{COALITION_SCOPE}')",
                        name="scope_of_merchant"),
    )

    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), primary_key=True)
    scope: Mapped[str] = mapped_column(String(36), primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    purpose: Mapped[str] = mapped_column(String(16), primary_key=True)
    merchant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("merchants.id"),
                                                          index=True)
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32))
    policy_version: Mapped[str | None] = mapped_column(String(32))
    # When the deciding ledger row happened.
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    event_id: Mapped[int] = mapped_column(ForeignKey("consent_events.id"))


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


class MemberDevice(Base):
    """A browser or phone where the member's wallet is signed in: bound at enrolment on
    the join page, or added by a one-time code sent to the member's e-mail or phone
    (docs/web.md, "The member's wallet"). The cookie holds a random token; the table its
    SHA-256 only. Erasure deletes a member's rows; signing out revokes one."""

    __tablename__ = "member_devices"

    # The member's enrolling merchant first: the tenant key (DESIGN.md, "Scale path").
    merchant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("merchants.id"),
                                                   primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    member_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("members.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # How the device was bound: "join" or "code".
    source: Mapped[str] = mapped_column(String(16))
    # What the browser said it is (a shortened User-Agent), for the member's device list.
    label: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
