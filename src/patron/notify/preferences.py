"""A merchant's message settings (sender, quiet hours, weekly cap) and a member's own
quiet hours: who may read and change them, and their shapes (docs/notify.md)."""

from __future__ import annotations

import uuid

from jinja2 import TemplateError
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.errors import Forbidden, InvalidInput, NotFound
from patron.kit.clock import utcnow
from patron.kit.i18n import LANGUAGES
from patron.members.access import member_for
from patron.notify import templates
from patron.notify.messages import MEMBER_CHANNELS, MESSAGE_EVENTS
from patron.notify.models import MemberQuietHours, MessageSettings, MessageTemplate
from patron.notify.schemas import (
    MemberQuietHoursRead,
    MemberQuietHoursWrite,
    MessageSettingsRead,
    MessageSettingsWrite,
    MessageTemplateRead,
    MessageTemplates,
    MessageTemplateWrite,
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


# --- a merchant's own templates ---------------------------------------------------------

class InvalidTemplate(InvalidInput):
    code = "invalid_template"
    title = "This template cannot be used"


def _template_read(event_type: str, channel: str, language: str,
                   row: MessageTemplate | None) -> MessageTemplateRead:
    if row is not None:
        subject, body, updated, builtin = row.subject, row.body, row.updated_at, False
    else:
        entry = templates.catalogue(language)[event_type]
        # A push notification's built-in title and text are the e-mail's subject and the
        # SMS's text.
        subject = entry["subject"] if channel in ("email", "push") else None
        body = entry["body"] if channel == "email" else entry["sms"]
        updated, builtin = None, True
    parts = (templates.sms_parts(templates.sms(
        event_type, language, templates.SAMPLE, templates.Override(None, body)))
        if channel == "sms" else None)
    return MessageTemplateRead(event_type=event_type, channel=channel, language=language,
                               subject=subject, body=body, updated_at=updated,
                               builtin=builtin, sms_parts=parts)


def message_templates(session: Session, *, actor: Principal,
                      merchant_id: uuid.UUID) -> MessageTemplates:
    """Every event's template on every channel and language: the merchant's own where it
    has one, else the built-in one."""
    merchant_id = _merchant(session, actor, merchant_id)
    own = {(row.event_type, row.channel, row.language): row for row in session.scalars(
        select(MessageTemplate).where(MessageTemplate.merchant_id == merchant_id))}
    return MessageTemplates(items=[
        _template_read(event_type, channel, language, own.get((event_type, channel, language)))
        for event_type in sorted(MESSAGE_EVENTS) for channel in MEMBER_CHANNELS
        for language in LANGUAGES])


def _check_template(data: MessageTemplateWrite, body: str, max_parts: int) -> None:
    """Rendered with every variable a message may have: a syntax error, a variable the
    event does not have, or an SMS longer than ``max_parts`` parts is refused."""
    override = templates.Override(data.subject, body)
    try:
        if data.channel == "email":
            templates.email(data.event_type, data.language, templates.SAMPLE,
                            unsubscribe_url="https://patron.example/unsubscribe/x",
                            override=override)
            return
        if data.channel == "push":
            _check_push(templates.push_texts(data.event_type, data.language,
                                             templates.SAMPLE, override))
            return
        text = templates.sms(data.event_type, data.language, templates.SAMPLE, override)
    except (TemplateError, ArithmeticError, LookupError, TypeError, ValueError,
            AttributeError) as exc:  # a merchant's template is input: any failure is theirs
        raise InvalidTemplate(f"the template does not render: {exc}", field="body") from None
    parts = templates.sms_parts(text)
    if parts > max_parts:
        raise InvalidTemplate(
            f"the SMS takes {parts} parts with the longest values ({len(text)} characters); "
            f"at most {max_parts} (PATRON_SMS_MAX_PARTS)", field="body", parts=parts)


def _check_push(notification: templates.Push) -> None:
    """A push notification is cut to what a phone shows: a template that would be cut
    with the longest values is refused, so that what the merchant wrote is what is seen."""
    if len(notification.title) > templates.PUSH_TITLE_MAX:
        raise InvalidTemplate(f"the title takes {len(notification.title)} characters with "
                              f"the longest values; at most {templates.PUSH_TITLE_MAX}",
                              field="subject")
    if len(notification.body) > templates.PUSH_BODY_MAX:
        raise InvalidTemplate(f"the text takes {len(notification.body)} characters with "
                              f"the longest values; at most {templates.PUSH_BODY_MAX}",
                              field="body")


def put_message_template(session: Session, *, actor: Principal, merchant_id: uuid.UUID,
                         data: MessageTemplateWrite) -> MessageTemplateRead:
    merchant_id = _merchant(session, actor, merchant_id)
    if data.event_type not in MESSAGE_EVENTS:
        raise InvalidTemplate(f"no member message for {data.event_type!r}: one of "
                              f"{', '.join(sorted(MESSAGE_EVENTS))}", field="event_type")
    if data.subject is not None and data.channel == "sms":
        raise InvalidTemplate("an SMS has no subject", field="subject")
    key = (merchant_id, data.event_type, data.channel, data.language)
    row = session.get(MessageTemplate, key, with_for_update=True)
    if data.body is None:
        if row is not None:
            session.delete(row)
            session.flush()
        return _template_read(data.event_type, data.channel, data.language, None)
    _check_template(data, data.body, get_settings().sms_max_parts)
    if row is None:
        row = MessageTemplate(merchant_id=merchant_id, event_type=data.event_type,
                              channel=data.channel, language=data.language)
        session.add(row)
    row.subject, row.body, row.updated_at = data.subject, data.body, utcnow()
    session.flush()
    return _template_read(data.event_type, data.channel, data.language, row)
