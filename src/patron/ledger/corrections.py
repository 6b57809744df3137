"""Manual corrections of a member's points by a merchant's staff (the console)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from patron.ledger.models import JournalEntry
from patron.ledger.service import adjust
from patron.members.service import get_member
from patron.tenancy.models import Role
from patron.tenancy.service import Principal


def adjust_member_points(session: Session, *, actor: Principal, member_id: uuid.UUID,
                         points: int, reason: str, idempotency_key: str) -> JournalEntry:
    """A correction of a member's points at the caller's merchant: its owner or manager
    (acting as the merchant), for a member it may read (a membership with it). The books'
    rule is ``ledger.service.adjust``'s; the entry names who made it."""
    actor.require(Role.merchant)
    assert actor.merchant_id is not None
    member = get_member(session, actor=actor, member_id=member_id)
    who = f"staff:{actor.staff_id}" if actor.staff_id else f"key:{actor.key_id}"
    return adjust(session, merchant_id=actor.merchant_id, member_id=member.id, points=points,
                  reason=reason, idempotency_key=idempotency_key, source=f"console:{who}")
