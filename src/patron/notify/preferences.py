"""A merchant's message settings (sender, quiet hours, weekly cap) and a member's own
quiet hours: who may read and change them, and their shapes (docs/notify.md)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from patron.errors import Forbidden, NotFound
from patron.kit.clock import utcnow
from patron.members.access import member_for
from patron.notify.models import MemberQuietHours, MessageSettings
from patron.notify.schemas import (
    MemberQuietHoursRead,
    MemberQuietHoursWrite,
    MessageSettingsRead,
    MessageSettingsWrite,
    QuietWindow,
)
from patron.tenancy.models import Role
from patron.tenancy.rules import MemberAction
from patron.tenancy.service import Principal, get_merchant


def _minute(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _window(start: int | None, end: int | None) -> QuietWindow | None:
    if start is None or end is None:
        return None
    return QuietWindow(start=_clock(start), end=_clock(end))


def _merchant(session: Session, actor: Principal, merchant_id: uuid.UUID) -> uuid.UUID:
    # Another tenant's merchant is not found; the role is asked of its own keys only.
    if not actor.holds(merchant_id):
        raise NotFound("no such merchant")
    merchant = get_merchant(session, actor=actor, merchant_id=merchant_id)
    if actor.role not in (Role.operator, Role.merchant):
        raise Forbidden("message settings are the operator's and the merchant's keys'")
    return merchant.id


def _read(merchant_id: uuid.UUID, row: MessageSettings | None) -> MessageSettingsRead:
    if row is None:
        return MessageSettingsRead(merchant_id=merchant_id, sender_name=None, reply_to=None,
                                   quiet_hours=None, weekly_cap=None, updated_at=None)
    return MessageSettingsRead(
        merchant_id=merchant_id, sender_name=row.sender_name, reply_to=row.reply_to,
        quiet_hours=_window(row.quiet_start_minute, row.quiet_end_minute),
        weekly_cap=row.weekly_cap, updated_at=row.updated_at)


def message_settings(session: Session, *, actor: Principal,
                     merchant_id: uuid.UUID) -> MessageSettingsRead:
    merchant_id = _merchant(session, actor, merchant_id)
    return _read(merchant_id, session.get(MessageSettings, merchant_id))


def change_message_settings(session: Session, *, actor: Principal, merchant_id: uuid.UUID,
                            data: MessageSettingsWrite) -> MessageSettingsRead:
    merchant_id = _merchant(session, actor, merchant_id)
    row = session.get(MessageSettings, merchant_id, with_for_update=True)
    if row is None:
        row = MessageSettings(merchant_id=merchant_id)
        session.add(row)
    given = data.model_fields_set
    if "sender_name" in given:
        row.sender_name = data.sender_name
    if "reply_to" in given:
        row.reply_to = data.reply_to
    if "quiet_hours" in given:
        window = data.quiet_hours
        row.quiet_start_minute = _minute(window.start) if window else None
        row.quiet_end_minute = _minute(window.end) if window else None
    if "weekly_cap" in given:
        row.weekly_cap = data.weekly_cap
    row.updated_at = utcnow()
    session.flush()
    return _read(merchant_id, row)


def _hours_read(member_id: uuid.UUID, row: MemberQuietHours | None) -> MemberQuietHoursRead:
    if row is None:
        return MemberQuietHoursRead(member_id=member_id, quiet_hours=None, timezone=None)
    return MemberQuietHoursRead(member_id=member_id,
                                quiet_hours=_window(row.start_minute, row.end_minute),
                                timezone=row.timezone)


def member_quiet_hours(session: Session, *, actor: Principal,
                       member_id: uuid.UUID) -> MemberQuietHoursRead:
    member = member_for(session, actor=actor, member_id=member_id, action=MemberAction.read)
    return _hours_read(member.id, session.get(MemberQuietHours, member.id))


def set_member_quiet_hours(session: Session, *, actor: Principal, member_id: uuid.UUID,
                           data: MemberQuietHoursWrite) -> MemberQuietHoursRead:
    """The member's own quiet hours (they replace every merchant's): changed like the
    member's profile, a till with the member's proof."""
    member = member_for(session, actor=actor, member_id=member_id,
                        action=MemberAction.change, proof=data.proof)
    row = session.get(MemberQuietHours, member.id, with_for_update=True)
    if row is None:
        row = MemberQuietHours(member_id=member.id)
        session.add(row)
    row.start_minute, row.end_minute = _minute(data.start), _minute(data.end)
    row.timezone, row.updated_at = data.timezone, utcnow()
    session.flush()
    return _hours_read(member.id, row)
