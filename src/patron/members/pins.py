"""Member PINs, hashed with argon2id, and the one check of a PIN with its lock."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.identity.errors import PinIncorrect, PinLocked, PinLockedNow, PinNotSet, PinRequired
from patron.kit.clock import utcnow
from patron.kit.passwords import hash_secret, secret_matches
from patron.members.models import Member


def hash_pin(pin: str) -> str:
    return hash_secret(pin)


def pin_matches(pin_hash: str, pin: str) -> bool:
    return secret_matches(pin_hash, pin)


def locked_until(member: Member, now: datetime) -> datetime | None:
    """When the member's lock ends, if they are locked now: the one place that decides.
    Too many wrong PINs lock the member (every card, number, phone and QR of theirs) at
    every terminal, until the time passes or the enrolling merchant unlocks them."""
    until = member.pin_locked_until
    return until if until is not None and until > now else None


def refuse_if_locked(member: Member, *, now: datetime | None = None) -> None:
    until = locked_until(member, now or utcnow())
    if until is not None:
        raise PinLocked(f"too many wrong PINs: the member is locked at every terminal "
                        f"until {until.isoformat()}, or until their merchant unlocks them",
                        locked_until=until.isoformat())


def verify_pin(session: Session, member: Member, pin: str | None) -> None:
    """Check the member's PIN, counting a wrong one towards the lock: every place that
    accepts a PIN (identification, a till proving the member is present) calls this.
    A wrong PIN and the one that locks raise errors that keep their side effects, so the
    count survives the request's rollback."""
    settings = get_settings()
    now = utcnow()
    refuse_if_locked(member, now=now)
    if member.pin_locked_until is not None:
        # The lock has run out: start counting afresh (only one request wins the reset).
        session.execute(update(Member).where(Member.id == member.id,
                                             Member.pin_locked_until <= now)
                        .values(pin_failures=0, pin_locked_until=None))
    if member.pin_hash is None:
        raise PinNotSet()
    if pin is None:
        raise PinRequired("ask the member for their PIN and send it as 'pin'")
    if pin_matches(member.pin_hash, pin):
        if member.pin_failures:
            session.execute(update(Member).where(Member.id == member.id)
                            .values(pin_failures=0))
        return
    lock_ends = now + timedelta(minutes=settings.pin_lock_minutes)
    failures = session.execute(
        update(Member).where(Member.id == member.id)
        .values(pin_failures=Member.pin_failures + 1)
        .returning(Member.pin_failures)).scalar_one()
    if failures >= settings.pin_max_failures:
        session.execute(update(Member).where(Member.id == member.id)
                        .values(pin_locked_until=lock_ends))
        raise PinLockedNow(f"{failures} wrong PINs: the member is locked at every "
                           f"terminal until {lock_ends.isoformat()}",
                           locked_until=lock_ends.isoformat())
    raise PinIncorrect(attempts_left=settings.pin_max_failures - failures)
