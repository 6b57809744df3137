"""Opens and clicks of targeted e-mails: signed links that record the first open (the
e-mail's image loaded) and the first click of each recipient, then lead on.

A tracked link names the merchant, the message's event and, for a click, where it leads,
signed with a key derived from the secret: only Patron makes them, so the redirect is no
open redirect, and holding one lets you do nothing but mark that message opened or
clicked. Counts are of recipients (``TargetedRecipient.opened_at`` / ``clicked_at``),
not of loads: a mail client that loads the image twice, or a scanner that follows every
link, counts once. A click counts as an open too (images are often blocked).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, update
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.notify.models import TargetedRecipient

# The longest address a tracked link carries (longer ones are left as they are).
MAX_TARGET = 1500
# A transparent 1x1 GIF.
PIXEL = base64.b64decode(b"R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


@dataclass(frozen=True)
class Tracked:
    merchant_id: uuid.UUID
    event_id: uuid.UUID
    # Where a click leads; None for the open image.
    target: str | None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(text: str) -> str:
    return _b64(hmac.new(get_settings().derived_key("tracking"), text.encode(),
                         hashlib.sha256).digest()[:16])


def token(link: Tracked) -> str:
    body = _b64(json.dumps([link.merchant_id.hex, link.event_id.hex, link.target],
                           separators=(",", ":")).encode())
    return f"{body}.{_signature(body)}"


def read_token(text: str) -> Tracked | None:
    """The link a token names, or None when it is not one Patron signed."""
    body, _, signature = text.partition(".")
    if not body or len(text) > 4 * MAX_TARGET or not hmac.compare_digest(
            signature.encode(), _signature(body).encode()):
        return None
    try:
        merchant, event, target = json.loads(_unb64(body))
        return Tracked(uuid.UUID(hex=merchant), uuid.UUID(hex=event), target)
    except (ValueError, TypeError):
        return None


def click_url(merchant_id: uuid.UUID, event_id: uuid.UUID, target: str) -> str:
    if len(target) > MAX_TARGET:
        return target
    link = token(Tracked(merchant_id, event_id, target))
    return f"{get_settings().public_base_url}/track/click/{link}"


def open_url(merchant_id: uuid.UUID, event_id: uuid.UUID) -> str:
    link = token(Tracked(merchant_id, event_id, None))
    return f"{get_settings().public_base_url}/track/open/{link}.gif"


def tracker(merchant_id: uuid.UUID, event_id: uuid.UUID) -> Callable[[str], str]:
    """What an e-mail's addresses become: each a tracked link to itself."""
    return lambda target: click_url(merchant_id, event_id, target)


def record(session: Session, link: Tracked, now: datetime) -> None:
    """The recipient's first open (and, for a click, first click); later ones change
    nothing."""
    recipient = TargetedRecipient
    these = (recipient.merchant_id == link.merchant_id, recipient.event_id == link.event_id)
    values = {"opened_at": func.coalesce(recipient.opened_at, now)}
    if link.target is not None:
        values["clicked_at"] = func.coalesce(recipient.clicked_at, now)
    session.execute(update(recipient).where(*these).values(**values)
                    .execution_options(synchronize_session=False))


def follow(session: Session, text: str, *, click: bool, now: datetime) -> Tracked | None:
    """A tracked link opened (a click, or the open image): recorded, and what it names.
    None, and nothing recorded, for a token that is not Patron's or not of that kind."""
    link = read_token(text)
    if link is None or (link.target is not None) != click:
        return None
    record(session, link, now)
    return link
