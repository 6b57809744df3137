"""Consent to messages: the ledger's one writer and the one decision (docs/privacy.md,
"Consent").

A member grants or withdraws consent per scope (one merchant, or the coalition) x channel
(sms, email, push) x purpose (marketing, transactional). Every change is a row of the
append-only ledger (``ConsentEvent``) and, in the same transaction, one upsert of the
current state (``CurrentConsent``), which therefore always equals the replay of the ledger.

Whether a message may go is decided by one SQL expression, ``consent_reason``: the single
member's answer (``allows``, which the delivery worker calls), the set-wise audience
(``allowed_members``) and the campaigns' ``member.consents`` all evaluate it, so the rule is
stated once:

- a member who has withdrawn or been erased gets nothing (``member_inactive``);
- a transactional message needs no marketing consent (``transactional``);
- otherwise the merchant-scoped state decides for that merchant (``granted`` /
  ``revoked``); without one, the coalition-scoped state (``granted_by_coalition`` /
  ``revoked``); with neither, no (``no_marketing_consent``).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, insert, literal, select, update
from sqlalchemy.orm import Session

from patron.db import insert_for
from patron.kit.clock import utcnow
from patron.members.models import (
    COALITION_SCOPE,
    Channel,
    ConsentEvent,
    CurrentConsent,
    Member,
    MemberStatus,
    Purpose,
    consent_scope,
)


class ConsentReason(StrEnum):
    transactional = "transactional"
    granted = "granted"
    granted_by_coalition = "granted_by_coalition"
    no_marketing_consent = "no_marketing_consent"
    revoked = "revoked"
    member_inactive = "member_inactive"
    # ``allows`` for an id that names no member.
    no_such_member = "no_such_member"


# The reasons that let a message go; every other reason stops it.
ALLOWING = frozenset({ConsentReason.transactional, ConsentReason.granted,
                      ConsentReason.granted_by_coalition})


@dataclass(frozen=True)
class ConsentVerdict:
    allowed: bool
    reason: str


def verdict_of(reason: str) -> ConsentVerdict:
    return ConsentVerdict(allowed=reason in ALLOWING, reason=reason)


# --- the rule --------------------------------------------------------------------------

MerchantRef = uuid.UUID | ColumnElement[Any] | None


def consent_reason(*, merchant_id: MerchantRef, channel: Channel | str,
                   purpose: Purpose | str) -> ColumnElement[str]:
    """The reason (a ``ConsentReason`` value) a message of ``purpose`` on ``channel`` from
    ``merchant_id`` may or may not go to the member of the enclosing query's ``members``
    row. ``merchant_id`` may be a SQL expression (a bound parameter of a statement built
    once); None asks for the coalition's own scope alone (the operator's view)."""
    channel, purpose = Channel(channel), Purpose(purpose)
    inactive = Member.status != MemberStatus.active.value
    if purpose == Purpose.transactional:
        return case((inactive, literal(ConsentReason.member_inactive.value)),
                    else_=literal(ConsentReason.transactional.value))
    coalition = CurrentConsent.scope == COALITION_SCOPE
    scopes = coalition if merchant_id is None else (
        (CurrentConsent.merchant_id == merchant_id) | coalition)
    # The deciding state: the merchant's own when there is one, else the coalition's.
    deciding = (
        select(case((CurrentConsent.granted.is_(False),
                     literal(ConsentReason.revoked.value)),
                    (coalition, literal(ConsentReason.granted_by_coalition.value)),
                    else_=literal(ConsentReason.granted.value)))
        .where(CurrentConsent.member_id == Member.id,
               CurrentConsent.channel == channel.value,
               CurrentConsent.purpose == Purpose.marketing.value, scopes)
        .order_by(case((coalition, 1), else_=0))
        .limit(1)
        .correlate(Member)
        .scalar_subquery())
    return case((inactive, literal(ConsentReason.member_inactive.value)),
                else_=func.coalesce(deciding,
                                    literal(ConsentReason.no_marketing_consent.value)))


def allows(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID, channel: str,
           purpose: str) -> ConsentVerdict:
    """Whether ``merchant_id`` may send the member a message of ``purpose`` on
    ``channel`` now, and why (``ConsentReason``)."""
    reason = session.scalar(select(consent_reason(merchant_id=merchant_id, channel=channel,
                                                  purpose=purpose))
                            .where(Member.id == member_id))
    return verdict_of(reason if reason is not None else ConsentReason.no_such_member)


def verdicts(session: Session, *, member_ids: Collection[uuid.UUID], merchant_id: uuid.UUID,
             channel: str, purpose: str) -> dict[uuid.UUID, ConsentVerdict]:
    """``allows`` for many members at once, in one statement (the delivery worker's
    batch); a member id that names no member is left out."""
    if not member_ids:
        return {}
    rows = session.execute(select(Member.id, consent_reason(
        merchant_id=merchant_id, channel=channel, purpose=purpose))
        .where(Member.id.in_(list(member_ids))))
    return {member_id: verdict_of(reason) for member_id, reason in rows}


def allowed_members(session: Session, *, merchant_id: uuid.UUID, channel: str, purpose: str,
                    member_ids: Collection[uuid.UUID] | None = None
                    ) -> Select[uuid.UUID]:
    """The ids of the members (of ``member_ids``, or of all) whom ``merchant_id`` may send a
    message of ``purpose`` on ``channel``: ``allows`` for many, as a statement to run, join
    or count. Who is in an audience at all (a membership, a segment) is the caller's."""
    del session  # the statement is the caller's to run; the session keeps the form of allows
    query = select(Member.id).where(consent_reason(
        merchant_id=merchant_id, channel=channel, purpose=purpose).in_(
            [reason.value for reason in ALLOWING]))
    if member_ids is not None:
        query = query.where(Member.id.in_(list(member_ids)))
    return query


def marketing_channels(session: Session, *, member_id: uuid.UUID,
                       merchant_id: uuid.UUID | None) -> dict[Channel, bool]:
    """Per channel, whether ``merchant_id`` may send the member marketing (None: what the
    coalition's own scope says): the ``{sms, email, push}`` of the member's reads."""
    reasons = session.execute(select(*(
        consent_reason(merchant_id=merchant_id, channel=channel,
                       purpose=Purpose.marketing).label(channel.value)
        for channel in Channel)).where(Member.id == member_id)).one()
    return {channel: getattr(reasons, channel.value) in ALLOWING for channel in Channel}


# --- the ledger ------------------------------------------------------------------------

def record(session: Session, *, member_id: uuid.UUID, merchant_id: uuid.UUID | None,
           channel: str, purpose: str, granted: bool, source: str,
           policy_version: str | None = None, evidence: str | None = None,
           now: datetime | None = None) -> None:
    """Append a grant or withdrawal to the ledger (``merchant_id`` None: the coalition's
    scope) and make it the current state, in the caller's transaction: a withdrawal holds
    from the next decision on. Flushes only."""
    channel, purpose = Channel(channel).value, Purpose(purpose).value
    occurred_at = now or utcnow()
    event_id = session.execute(
        insert(ConsentEvent).values(
            member_id=member_id, merchant_id=merchant_id, channel=channel, purpose=purpose,
            granted=granted, source=source, policy_version=policy_version, evidence=evidence,
            occurred_at=occurred_at)
        .returning(ConsentEvent.id)).scalar_one()
    upsert = insert_for(session, CurrentConsent).values(
        member_id=member_id, scope=consent_scope(merchant_id), channel=channel,
        purpose=purpose, merchant_id=merchant_id, granted=granted, source=source,
        policy_version=policy_version, since=occurred_at, event_id=event_id)
    # One statement, no read first. Two concurrent changes of one key each append a row;
    # whichever upserts second overwrites only with the later row (a larger id), so the
    # state is the ledger's last row however their transactions interleave.
    session.execute(upsert.on_conflict_do_update(
        index_elements=[CurrentConsent.member_id, CurrentConsent.scope,
                        CurrentConsent.channel, CurrentConsent.purpose],
        set_={"granted": upsert.excluded.granted, "source": upsert.excluded.source,
              "policy_version": upsert.excluded.policy_version,
              "since": upsert.excluded.since, "event_id": upsert.excluded.event_id},
        where=CurrentConsent.event_id < upsert.excluded.event_id))


# A member's states in reading order: the coalition's scope first.
_coalition_first = case((CurrentConsent.scope == COALITION_SCOPE, 0), else_=1)


def revoke_marketing(session: Session, *, member_id: uuid.UUID, source: str,
                     now: datetime | None = None) -> int:
    """Withdraw every marketing consent the member has granted, in every scope and on every
    channel (withdrawal, erasure); the number of withdrawals recorded."""
    granted = session.execute(
        select(CurrentConsent.merchant_id, CurrentConsent.channel)
        .where(CurrentConsent.member_id == member_id,
               CurrentConsent.purpose == Purpose.marketing.value,
               CurrentConsent.granted.is_(True))
        .order_by(_coalition_first, CurrentConsent.scope, CurrentConsent.channel)).all()
    occurred_at = now or utcnow()
    # A grant committed after this read would stand in the ledger, but the member's status
    # (which the caller has just changed) already stops every message.
    for merchant_id, channel in granted:
        record(session, member_id=member_id, merchant_id=merchant_id, channel=channel,
               purpose=Purpose.marketing, granted=False, source=source, now=occurred_at)
    return len(granted)


def forget_evidence(session: Session, *, member_id: uuid.UUID) -> None:
    """Erasure: the ledger keeps scope, channel, purpose, grant, source, policy version and
    time; the evidence (an address, a message id) may identify the person and goes."""
    session.execute(update(ConsentEvent).where(ConsentEvent.member_id == member_id,
                                               ConsentEvent.evidence.is_not(None))
                    .values(evidence=None))


def current(session: Session, *, member_id: uuid.UUID) -> list[CurrentConsent]:
    """The member's current consent in every scope, channel and purpose: the coalition's
    scope first, then the merchants'."""
    return list(session.scalars(
        select(CurrentConsent).where(CurrentConsent.member_id == member_id)
        .order_by(_coalition_first, CurrentConsent.scope, CurrentConsent.channel,
                  CurrentConsent.purpose)
        .execution_options(populate_existing=True)))


def history(session: Session, *, member_id: uuid.UUID) -> list[ConsentEvent]:
    """The member's ledger, oldest first."""
    return list(session.scalars(select(ConsentEvent).where(ConsentEvent.member_id == member_id)
                                .order_by(ConsentEvent.id)))

