"""Member messages: which events reach a member, on which channels, for which purpose,
and what each message says.

``plan`` (called by the worker's dispatch, inside its transaction) makes a delivery per
channel the member has an address for. Whether it may go is decided when it is sent
(``MemberChannel.prepare``): the member's consent for that merchant, channel and purpose
(``members.consent.allows``, the one rule), so a withdrawal between the two holds. A
message that may not go is ``suppressed`` with the reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from babel.dates import format_date
from babel.numbers import format_decimal
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.kit.crypto import decrypt
from patron.kit.i18n import BABEL_LOCALES
from patron.members import consent
from patron.members.access import CODE_LIFETIME, VERIFICATION_CODE
from patron.members.models import Member, Membership, Purpose
from patron.members.pii import decrypt_email, decrypt_phone
from patron.notify import rules, templates
from patron.notify.models import (
    MemberQuietHours,
    MessageSend,
    MessageSettings,
    MessageTemplate,
    OutboxEvent,
    PushSubscription,
)
from patron.notify.outbox import EventType
from patron.notify.rules import DeliveryChannel, DeliveryStatus
from patron.notify.worker import Due, Hold, Send, Skip, new_delivery
from patron.tenancy.models import Merchant, Store

log = logging.getLogger("patron.notify")
T = TypeVar("T")

# The events a member is sent, and their purpose: a one-time code is the member's own
# business (no marketing consent needed); everything else promotes and needs opt-in.
MESSAGE_EVENTS: dict[str, Purpose] = {
    EventType.member_enrolled: Purpose.marketing,
    EventType.campaign_outcome: Purpose.marketing,
    EventType.benefit_issued: Purpose.marketing,
    EventType.referral_rewarded: Purpose.marketing,
    EventType.points_expiring: Purpose.marketing,
    EventType.tier_changed: Purpose.marketing,
    EventType.verification_code: Purpose.transactional,
    EventType.targeted_message: Purpose.marketing,
}
# Events that go on the one channel their payload names, not on every channel.
ONE_CHANNEL = frozenset({EventType.verification_code.value, EventType.targeted_message.value})
# A message that could not be made in time is not sent late: an offer a day old, or a
# one-time code past its life, says the wrong thing.
MAX_AGE = timedelta(hours=24)
MAX_AGE_OF = {EventType.verification_code.value: CODE_LIFETIME}
MEMBER_CHANNELS = (DeliveryChannel.email, DeliveryChannel.sms, DeliveryChannel.push)


def members_with_address(session: Session, channels: Collection[str],
                         member_ids: Collection[uuid.UUID], now: datetime
                         ) -> dict[str, set[uuid.UUID]]:
    """Per channel, those of ``member_ids`` a message can reach on it: an e-mail address,
    a phone number, or a live push subscription (consent is decided apart). One read of
    the members for e-mail and SMS together, one of the subscriptions for push."""
    found: dict[str, set[uuid.UUID]] = {channel: set() for channel in channels}
    if not member_ids:
        return found
    if DeliveryChannel.email in found or DeliveryChannel.sms in found:
        for member_id, email_hash, phone_hash in session.execute(
                select(Member.id, Member.email_hash, Member.phone_hash)
                .where(Member.id.in_(member_ids))):
            for channel, address in ((DeliveryChannel.email, email_hash),
                                     (DeliveryChannel.sms, phone_hash)):
                if address is not None and channel in found:
                    found[channel].add(member_id)
    if DeliveryChannel.push in found:
        found[DeliveryChannel.push] = set(session.scalars(
            select(PushSubscription.member_id).distinct().where(
                PushSubscription.member_id.in_(member_ids), push_live(now))))
    return found


def push_live(now: datetime) -> Any:
    """The condition of a push subscription that can be pushed to."""
    return (PushSubscription.gone_at.is_(None)
            & or_(PushSubscription.expires_at.is_(None), PushSubscription.expires_at > now))


def _says_something(event: OutboxEvent) -> bool:
    if event.type == EventType.campaign_outcome:
        return any(event.payload.get(key) for key in ("voucher", "points", "message"))
    if event.type == EventType.referral_rewarded:
        return bool(event.payload.get("points") or event.payload.get("voucher"))
    return True


class MemberMessages:
    """The deliveries of member messages (the worker's ``MemberMessages``) on the
    channels this deployment has (a channel without settings makes no deliveries)."""

    def __init__(self, channels: Sequence[str]) -> None:
        self.channels = [channel for channel in MEMBER_CHANNELS if channel in channels]

    def plan(self, session: Session, events: Sequence[OutboxEvent], now: datetime
             ) -> list[dict[str, Any]]:
        wanted = [event for event in events if event.type in MESSAGE_EVENTS
                  and event.member_id is not None and _says_something(event)]
        if not wanted:
            return []
        member_ids = {event.member_id for event in wanted if event.member_id is not None}
        reachable = members_with_address(session, self.channels, member_ids, now)
        rows = []
        for event in wanted:
            channels = [channel for channel in self.channels
                        if event.member_id in reachable[channel]]
            if event.type in ONE_CHANNEL:
                channels = [channel for channel in channels
                            if channel == event.payload.get("channel")]
            age = now - event.occurred_at
            stale = age > MAX_AGE_OF.get(event.type, MAX_AGE)
            for channel in channels:
                rows.append(new_delivery(
                    event, channel, None, now, purpose=MESSAGE_EVENTS[event.type].value,
                    status=DeliveryStatus.suppressed if stale else DeliveryStatus.pending,
                    reason=f"stale: made {age} after the event" if stale else None))
        return rows


# --- what a message says ---------------------------------------------------------------

def _date(value: str | None, language: str) -> str | None:
    if not value:
        return None
    return format_date(date.fromisoformat(value[:10]), format="medium",
                       locale=BABEL_LOCALES[language])


def _number(value: int, language: str) -> str:
    return format_decimal(value, locale=BABEL_LOCALES[language])


def wallet_link(code: str) -> str:
    """Where the member's phone shows a voucher (the member wallet)."""
    return f"{get_settings().public_base_url}/wallet/vouchers/{code}"


def message_values(event: OutboxEvent, *, member: Member, merchant: Merchant,
                   language: str) -> dict[str, Any]:
    """What the templates of the event see, formatted for the language."""
    payload = event.payload
    voucher = payload.get("voucher") or {}
    code = voucher.get("code") or payload.get("code")
    values: dict[str, Any] = {
        "merchant": merchant.name, "member_number": member.member_number,
        "campaign": payload.get("name"), "message": payload.get("message"),
        "code": code, "barcode": voucher.get("barcode"), "offer": voucher.get("offer"),
        "valid_until": _date(voucher.get("valid_until") or payload.get("valid_until"),
                             language),
        "link": wallet_link(code) if code else None,
        "points": _number(payload["points"], language) if payload.get("points") else None,
        "role": payload.get("role"), "tier": payload.get("to"),
        "last_day": _date(payload.get("last_day"), language),
        "minutes": CODE_LIFETIME // timedelta(minutes=1), "threshold": None,
        "subject": payload.get("subject"), "text": payload.get("text"),
    }
    if event.type == EventType.benefit_issued and payload.get("measure"):
        values["threshold"] = templates.phrase(
            language, f"measure_{payload['measure']}",
            {"count": _number(int(payload.get("threshold") or 0), language)})
    if event.type == EventType.verification_code:
        sealed = base64.b64decode(payload["code_encrypted"])
        values["code"] = decrypt(get_settings().encryption_key, sealed,
                                 context=VERIFICATION_CODE)
        values["link"] = None
    return values


# --- unsubscribe links -----------------------------------------------------------------

@dataclass(frozen=True)
class Unsubscribe:
    member_id: uuid.UUID
    merchant_id: uuid.UUID
    channel: str
    delivery_id: uuid.UUID


def _signature(text: str) -> str:
    digest = hmac.new(get_settings().derived_key("unsubscribe"), text.encode(),
                      hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def unsubscribe_token(link: Unsubscribe) -> str:
    """A token that names the member, the merchant, the channel and the message, signed:
    whoever holds the message may stop that merchant's marketing on that channel, and
    nothing else."""
    text = ".".join((link.member_id.hex, link.merchant_id.hex, link.channel,
                     link.delivery_id.hex))
    return f"{text}.{_signature(text)}"


def read_unsubscribe_token(token: str) -> Unsubscribe | None:
    parts = token.split(".")
    if len(parts) != 5 or len(token) > 200:
        return None
    text, signature = ".".join(parts[:4]), parts[4]
    if not hmac.compare_digest(signature, _signature(text)):
        return None
    try:
        return Unsubscribe(member_id=uuid.UUID(hex=parts[0]), merchant_id=uuid.UUID(hex=parts[1]),
                           channel=DeliveryChannel(parts[2]).value,
                           delivery_id=uuid.UUID(hex=parts[3]))
    except ValueError:
        return None


def unsubscribe_url(link: Unsubscribe) -> str:
    return f"{get_settings().public_base_url}/unsubscribe/{unsubscribe_token(link)}"


# --- the channels' shared half ---------------------------------------------------------

@dataclass(frozen=True)
class Outgoing:
    """One member message, ready for its channel."""

    due: Due
    # The channel's address: an e-mail address, a phone number, push subscriptions.
    address: Any
    language: str
    merchant: Merchant
    values: dict[str, Any]
    settings: MessageSettings | None
    # The merchant's own template of this event, channel and language, if it has one.
    override: templates.Override | None = None


def _quiet_hours(event: OutboxEvent, merchant: Merchant, settings: MessageSettings | None,
                 own: MemberQuietHours | None,
                 store_zones: dict[uuid.UUID, str]) -> rules.QuietHours | None:
    """The member's own quiet hours, else the merchant's in the store's time zone (the
    event's store, else the merchant's zone)."""
    if own is not None:
        return rules.QuietHours(own.start_minute, own.end_minute, own.timezone)
    if (settings is None or settings.quiet_start_minute is None
            or settings.quiet_end_minute is None):
        return None
    store_id = event.payload.get("store_id")
    zone = store_zones.get(uuid.UUID(store_id)) if store_id else None
    return rules.QuietHours(settings.quiet_start_minute, settings.quiet_end_minute,
                            zone or merchant.timezone)


def take_cap_slot(session: Session, item: Due, cap: int, now: datetime) -> bool:
    """Whether the merchant may send the member one more marketing message this week (a
    slot taken when it may). Serialised per member and merchant by the membership's row
    lock, so concurrent senders never take more slots than the cap; a delivery sent again
    (a retry) keeps the slot it took."""
    assert item.member_id is not None
    if session.get(MessageSend, (item.merchant_id, item.id)) is not None:
        return True
    session.execute(select(Membership.id).where(Membership.member_id == item.member_id,
                                                Membership.merchant_id == item.merchant_id)
                    .with_for_update())
    sent = session.scalar(select(func.count()).select_from(MessageSend).where(
        MessageSend.merchant_id == item.merchant_id,
        MessageSend.member_id == item.member_id,
        MessageSend.sent_at > now - rules.CAP_WINDOW)) or 0
    if sent >= cap:
        return False
    session.add(MessageSend(merchant_id=item.merchant_id, delivery_id=item.id,
                            member_id=item.member_id, sent_at=now))
    session.flush()
    return True


class MemberChannel(ABC):
    """Reads, consent and rendering shared by e-mail, SMS and push; a channel adds
    ``build`` (the message) and its sender, and may say where its addresses are."""

    name: str

    def prepare(self, session: Session, due: Sequence[Due], now: datetime
                ) -> dict[uuid.UUID, Send | Skip | Hold]:
        events = {event.id: event for event in session.scalars(
            select(OutboxEvent).where(OutboxEvent.id.in_({item.event_id for item in due})))}
        members = {member.id: member for member in session.scalars(
            select(Member).where(Member.id.in_({item.member_id for item in due
                                                if item.member_id is not None})))}
        merchant_ids = {item.merchant_id for item in due}
        merchants = {merchant.id: merchant for merchant in session.scalars(
            select(Merchant).where(Merchant.id.in_(merchant_ids)))}
        settings = {row.merchant_id: row for row in session.scalars(
            select(MessageSettings).where(MessageSettings.merchant_id.in_(merchant_ids)))}
        overrides = {(row.merchant_id, row.event_type, row.language):
                     templates.Override(row.subject, row.body)
                     for row in session.scalars(select(MessageTemplate).where(
                         MessageTemplate.merchant_id.in_(merchant_ids),
                         MessageTemplate.channel == self.name,
                         MessageTemplate.event_type.in_({item.event_type for item in due})))}
        own_hours = {row.member_id: row for row in session.scalars(
            select(MemberQuietHours).where(MemberQuietHours.member_id.in_(members)))}
        store_ids = {uuid.UUID(event.payload["store_id"]) for event in events.values()
                     if event.payload.get("store_id")}
        store_zones: dict[uuid.UUID, str] = {
            store_id: zone for store_id, zone in session.execute(
                select(Store.id, Store.timezone).where(Store.id.in_(store_ids)))}
        verdicts = self._verdicts(session, due)
        addresses = self.addresses(session, members.values(), now)
        prepared: dict[uuid.UUID, Send | Skip | Hold] = {}
        for item in due:
            member = members.get(item.member_id) if item.member_id else None
            if member is None:
                prepared[item.id] = Skip(DeliveryStatus.suppressed, "no_such_member")
                continue
            verdict = verdicts[item.id]
            if not verdict.allowed:
                prepared[item.id] = Skip(DeliveryStatus.suppressed, verdict.reason)
                continue
            address = addresses.get(member.id)
            if not address:
                prepared[item.id] = Skip(DeliveryStatus.suppressed, "no_address")
                continue
            merchant = merchants[item.merchant_id]
            event = events[item.event_id]
            if item.purpose != Purpose.transactional:
                # Quiet hours and the cap are marketing's; a one-time code goes at once.
                quiet = _quiet_hours(event, merchant, settings.get(merchant.id),
                                     own_hours.get(member.id), store_zones)
                until = rules.quiet_until(now, quiet) if quiet is not None else None
                if until is not None:
                    prepared[item.id] = Hold(until, f"quiet_hours: held until "
                                                    f"{until.isoformat()}")
                    continue
                cap = settings[merchant.id].weekly_cap if merchant.id in settings else None
                if cap is not None and not take_cap_slot(session, item, cap, now):
                    prepared[item.id] = Skip(DeliveryStatus.suppressed,
                                             f"frequency_cap: {cap} a week")
                    continue
            language = templates.language_for(member.language, merchant.country)
            values = message_values(event, member=member, merchant=merchant,
                                    language=language)
            prepared[item.id] = self.build(Outgoing(
                due=item, address=address, language=language, merchant=merchant,
                values=values, settings=settings.get(merchant.id),
                override=overrides.get((merchant.id, item.event_type, language))))
        return prepared

    def _verdicts(self, session: Session, due: Sequence[Due]
                  ) -> dict[uuid.UUID, consent.ConsentVerdict]:
        """The consent verdict of each delivery: one statement per merchant and purpose."""
        groups: dict[tuple[uuid.UUID, str], list[Due]] = {}
        for item in due:
            if item.member_id is not None:
                purpose = item.purpose or Purpose.marketing.value
                groups.setdefault((item.merchant_id, purpose), []).append(item)
        found: dict[uuid.UUID, consent.ConsentVerdict] = {}
        for (merchant_id, purpose), items in groups.items():
            by_member = consent.verdicts(
                session, member_ids={item.member_id for item in items if item.member_id},
                merchant_id=merchant_id, channel=self.name, purpose=purpose)
            for item in items:
                assert item.member_id is not None
                if item.member_id in by_member:
                    found[item.id] = by_member[item.member_id]
        return found

    def addresses(self, session: Session, members: Collection[Member], now: datetime
                  ) -> dict[uuid.UUID, Any]:
        """Each member's address on this channel (left out: none)."""
        decrypted = decrypt_email if self.name == DeliveryChannel.email else decrypt_phone
        return {member.id: address for member in members
                if (address := decrypted(member)) is not None}

    def render(self, outgoing: Outgoing, make: Callable[[templates.Override | None], T]) -> T:
        """``make`` with the merchant's own template; one that fails on real values is
        logged and the built-in one is used (the member still gets the message)."""
        try:
            return make(outgoing.override)
        except Exception:
            if outgoing.override is None:
                raise
            log.exception("merchant %s's %s template of %s failed; the built-in one is sent",
                          outgoing.merchant.id, self.name, outgoing.due.event_type)
            return make(None)

    @abstractmethod
    def build(self, outgoing: Outgoing) -> Send:
        """The message for its channel, and the call that sends it."""
