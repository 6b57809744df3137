"""Targeted messages (PRODUCT.md part 4): a merchant selects members with the campaign
condition language's member fields and sends them a message on one channel, with a
personal code of an offer each if it likes; its results are counted from its deliveries
and its codes.

The audience's rule is the campaigns' (``campaigns.conditions`` over
``campaigns.live.member_fields``, the very values a campaign sees); consent is
``members.consent``'s. Each recipient's message is an outbox event
(``message.targeted``) delivered like every other: consent checked again when it is sent,
quiet hours, the weekly cap.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.campaigns.conditions import InvalidCondition, compile_condition
from patron.campaigns.live import member_fields
from patron.errors import NotFound
from patron.kit.clock import utcnow
from patron.members import consent
from patron.members.models import Member, Membership, MemberStatus, Purpose
from patron.notify.messages import members_with_address
from patron.notify.models import Delivery, TargetedMessage, TargetedRecipient
from patron.notify.outbox import EventType, emit
from patron.notify.rules import DeliveryStatus
from patron.notify.schemas import AudiencePreview, MessageAudience, MessageRead, MessageWrite
from patron.programs.service import member_tier
from patron.tenancy.models import Merchant, Role
from patron.tenancy.service import Principal
from patron.vouchers.models import Voucher
from patron.vouchers.offers import visible_offer
from patron.vouchers.service import issue_personal

# One message reaches at most this many members (a larger audience: narrow it, or send
# it in parts).
MAX_AUDIENCE = 50_000


def _merchant(session: Session, actor: Principal) -> Merchant:
    actor.require(Role.merchant)
    merchant = session.get(Merchant, actor.merchant_id)
    assert merchant is not None
    return merchant


def _condition(audience: dict[str, Any]) -> Any:
    condition = compile_condition(audience, loc=("audience", "conditions"))
    foreign = sorted(name for name in condition.fields if not name.startswith("member."))
    if foreign:
        raise InvalidCondition(
            f"audience.conditions: an audience reads member fields only, not {foreign[0]}",
            errors=[{"loc": ["audience", "conditions"], "msg": f"not a member field: {name}",
                     "type": "not_a_member_field"} for name in foreign])
    return condition


def _members(session: Session, merchant_id: uuid.UUID) -> Iterator[uuid.UUID]:
    yield from session.scalars(
        select(Membership.member_id).join(Member, Member.id == Membership.member_id)
        .where(Membership.merchant_id == merchant_id,
               Member.status == MemberStatus.active.value)
        .order_by(Membership.member_id))


def select_audience(session: Session, *, merchant: Merchant, audience: dict[str, Any],
                    now: datetime) -> list[uuid.UUID]:
    """The merchant's active members whose values hold the audience's condition."""
    condition = _condition(audience)
    reads_tier = "member.tier" in condition.fields
    chosen = []
    for member_id in _members(session, merchant.id):
        tier = None
        if reads_tier:
            progress = member_tier(session, merchant_id=merchant.id, member_id=member_id,
                                   now=now)
            tier = progress.current.name if progress.current else None
        values = member_fields(session, member_id=member_id, merchant_id=merchant.id,
                               store_id=None, tier=tier, now=now)
        if condition.holds(values):
            chosen.append(member_id)
            if len(chosen) > MAX_AUDIENCE:
                raise InvalidCondition(f"the audience selects more than {MAX_AUDIENCE:,} "
                                       "members: narrow it", field="audience")
    return chosen


def _reachable(session: Session, *, merchant_id: uuid.UUID, channel: str,
               member_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Those with an address on the channel whom the merchant may send marketing on it."""
    with_address = members_with_address(session, [channel], member_ids, utcnow())[channel]
    verdicts = consent.verdicts(session, member_ids=with_address, merchant_id=merchant_id,
                                channel=channel, purpose=Purpose.marketing)
    return [member_id for member_id in member_ids
            if member_id in verdicts and verdicts[member_id].allowed]


def preview(session: Session, *, actor: Principal, data: MessageAudience) -> AudiencePreview:
    merchant = _merchant(session, actor)
    chosen = select_audience(session, merchant=merchant,
                             audience=data.audience.conditions, now=utcnow())
    reachable = _reachable(session, merchant_id=merchant.id, channel=data.channel,
                           member_ids=chosen)
    return AudiencePreview(selected=len(chosen), reachable=len(reachable))


def send(session: Session, *, actor: Principal, data: MessageWrite) -> MessageRead:
    """Select, then make one event per reachable member (with its personal code)."""
    merchant = _merchant(session, actor)
    offer = visible_offer(session, actor, data.offer_id) if data.offer_id else None
    if offer is not None and offer.revoked_at is not None:
        raise InvalidCondition("the offer is revoked", field="offer_id")
    now = utcnow()
    chosen = select_audience(session, merchant=merchant, audience=data.audience.conditions,
                             now=now)
    reachable = _reachable(session, merchant_id=merchant.id, channel=data.channel,
                           member_ids=chosen)
    message = TargetedMessage(merchant_id=merchant.id, id=uuid.uuid4(), channel=data.channel,
                              audience=data.audience.conditions, subject=data.subject,
                              text=data.text, offer_id=offer.id if offer else None,
                              selected=len(chosen), created_at=now)
    session.add(message)
    session.flush()
    for member_id in reachable:
        voucher_id, voucher = (None, None)
        if offer is not None:
            voucher_id, voucher = issue_personal(session, offer=offer, member_id=member_id,
                                                 merchant_number=merchant.number,
                                                 source="message", now=now)
        event = emit(session, type=EventType.targeted_message, merchant_id=merchant.id,
                     member_id=member_id, occurred_at=now, payload={
                         "message_id": str(message.id), "member_id": str(member_id),
                         "channel": data.channel, "subject": data.subject,
                         "text": data.text, **({"voucher": voucher} if voucher else {})})
        session.add(TargetedRecipient(merchant_id=merchant.id, message_id=message.id,
                                      member_id=member_id, event_id=event.id,
                                      voucher_id=voucher_id))
    session.flush()
    return _read(session, message)


@dataclass(frozen=True)
class MessageListed:
    """A targeted message in a list: what it said, when, and to how many."""

    id: uuid.UUID
    merchant_id: uuid.UUID
    channel: str
    subject: str | None
    text: str
    created_at: datetime
    selected: int
    sent: int  # messages made (the reachable members)


def list_messages(session: Session, *, actor: Principal,
                  limit: int = 100) -> list[MessageListed]:
    """The merchant's targeted messages, newest first (the operator: every merchant's);
    each one's figures are ``get_message``'s."""
    actor.require(Role.operator, Role.merchant)
    sent = (select(func.count()).select_from(TargetedRecipient)
            .where(TargetedRecipient.merchant_id == TargetedMessage.merchant_id,
                   TargetedRecipient.message_id == TargetedMessage.id)
            .correlate(TargetedMessage).scalar_subquery())
    statement = select(TargetedMessage, sent)
    if actor.role != Role.operator:
        statement = statement.where(TargetedMessage.merchant_id == actor.merchant_id)
    rows = session.execute(statement.order_by(TargetedMessage.created_at.desc(),
                                              TargetedMessage.id.desc()).limit(limit))
    return [MessageListed(id=message.id, merchant_id=message.merchant_id,
                          channel=message.channel, subject=message.subject, text=message.text,
                          created_at=message.created_at, selected=message.selected,
                          sent=int(count or 0))
            for message, count in rows]


def get_message(session: Session, *, actor: Principal, message_id: uuid.UUID) -> MessageRead:
    message = session.scalar(select(TargetedMessage).where(TargetedMessage.id == message_id))
    if message is None or not actor.holds(message.merchant_id):
        raise NotFound("no such message")
    actor.require(Role.operator, Role.merchant)
    return _read(session, message)


def _read(session: Session, message: TargetedMessage) -> MessageRead:
    recipients = select(TargetedRecipient.event_id).where(
        TargetedRecipient.merchant_id == message.merchant_id,
        TargetedRecipient.message_id == message.id)
    by_status: dict[str, int] = {status: count for status, count in session.execute(
        select(Delivery.status, func.count()).where(
            Delivery.merchant_id == message.merchant_id,
            Delivery.event_id.in_(recipients))
        .group_by(Delivery.status))}
    sent, opened, clicked = session.execute(
        select(func.count(), func.count(TargetedRecipient.opened_at),
               func.count(TargetedRecipient.clicked_at))
        .where(TargetedRecipient.merchant_id == message.merchant_id,
               TargetedRecipient.message_id == message.id)).one()
    redemptions = session.scalar(
        select(func.coalesce(func.sum(Voucher.redemptions_count), 0)).where(
            Voucher.id.in_(select(TargetedRecipient.voucher_id).where(
                TargetedRecipient.merchant_id == message.merchant_id,
                TargetedRecipient.message_id == message.id)))) or 0
    return MessageRead(
        id=message.id, merchant_id=message.merchant_id, channel=message.channel,
        audience=message.audience, subject=message.subject, text=message.text,
        offer_id=message.offer_id, created_at=message.created_at, selected=message.selected,
        sent=sent, delivered=by_status.get(DeliveryStatus.delivered.value, 0),
        failed=by_status.get(DeliveryStatus.failed.value, 0),
        suppressed=by_status.get(DeliveryStatus.suppressed.value, 0),
        pending=by_status.get(DeliveryStatus.pending.value, 0),
        opened=opened if message.channel == "email" else None,
        clicked=clicked if message.channel == "email" else None,
        redemptions=int(redemptions))
