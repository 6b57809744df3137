"""People who sign in to the web app: staff users, their invitations, passwords, second
factor, lock-out and browser sessions (docs/tenancy.md, "People").

The rules of who may open which part of the app are ``tenancy.rules.AREA_ROLES``; this
module keeps the accounts and answers who a browser's session is."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.db import flush_or_raise, rowcount
from patron.errors import Conflict, Forbidden, NotFound
from patron.kit import totp
from patron.kit.clock import utcnow
from patron.kit.crypto import decrypt, encrypt, lookup_hash, random_token, token_hash
from patron.kit.passwords import hash_secret, secret_matches
from patron.tenancy.errors import (
    AccountLocked,
    AccountLockedNow,
    CredentialsIncorrect,
    InvalidStaffScope,
    InvitationInvalid,
    PasswordTooWeak,
    SecondFactorIncorrect,
    StaffEmailTaken,
)
from patron.tenancy.models import (
    Merchant,
    Role,
    StaffInvitation,
    StaffRole,
    StaffSession,
    StaffUser,
    Store,
    Terminal,
    TerminalKind,
)
from patron.tenancy.rules import Area, acting_role, may_invite, may_open
from patron.tenancy.service import Principal

STAFF_EMAIL = "staff.email"
TOTP_SECRET = "staff.totp"  # noqa: S105 - an encryption context, not a secret
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PASSWORD_MIN = 10
PASSWORD_MAX = 200
INVITATION_LIFETIME = timedelta(days=7)
MAX_FAILED_SIGN_INS = 5
LOCK_MINUTES = 15


def email_lookup(email: str) -> str:
    return lookup_hash(get_settings().lookup_key, STAFF_EMAIL, email.strip().lower())


def email_of(user: StaffUser) -> str:
    return decrypt(get_settings().encryption_key, user.email_enc, context=STAFF_EMAIL)


def check_password(password: str) -> None:
    if len(password) < PASSWORD_MIN:
        raise PasswordTooWeak(f"a password needs at least {PASSWORD_MIN} characters",
                              field="password")
    if len(password) > PASSWORD_MAX:
        raise PasswordTooWeak(f"a password has at most {PASSWORD_MAX} characters",
                              field="password")


# --- accounts --------------------------------------------------------------------------

def create_staff(session: Session, *, inviter: StaffUser | None, email: str, name: str,
                 role: StaffRole, merchant_id: uuid.UUID | None = None,
                 store_id: uuid.UUID | None = None, password: str | None = None,
                 language: str | None = None) -> tuple[StaffUser, str | None]:
    """A new staff user, and the token of their invitation (None when a password is set
    here: the command line's first operator, the demo). ``inviter`` None is the system
    (the command line); otherwise ``tenancy.rules.may_invite`` decides, and an owner
    invites into their own merchant only."""
    if inviter is not None:
        inviter_role = StaffRole(inviter.role)
        if not may_invite(inviter_role, role):
            raise Forbidden("only the operator and a merchant's owner invite staff")
        if inviter_role != StaffRole.operator:
            merchant_id = inviter.merchant_id
    _check_scope(session, role=role, merchant_id=merchant_id, store_id=store_id)
    if not EMAIL.fullmatch(email.strip()) or len(email.strip()) > 254:
        raise InvalidStaffScope("give the person's e-mail address, such as "
                                "hana@example.com", field="email")
    if not name.strip() or len(name) > 200:
        raise InvalidStaffScope("give the person's name, up to 200 characters", field="name")
    if password is not None:
        check_password(password)
    key = get_settings().encryption_key
    normalised = email.strip().lower()
    user = StaffUser(id=uuid.uuid4(), merchant_id=merchant_id, store_id=store_id,
                     role=role.value, email_hash=email_lookup(normalised),
                     email_enc=encrypt(key, normalised, context=STAFF_EMAIL), name=name,
                     password_hash=hash_secret(password) if password else None,
                     language=language, failed_logins=0, created_at=utcnow())
    session.add(user)
    flush_or_raise(session, StaffEmailTaken(field="email"))
    token = None if password else invite(session, user=user, inviter=inviter)
    return user, token


def _check_scope(session: Session, *, role: StaffRole, merchant_id: uuid.UUID | None,
                 store_id: uuid.UUID | None) -> None:
    if role == StaffRole.operator and (merchant_id or store_id):
        raise InvalidStaffScope("operator staff belong to no merchant or store")
    if role not in (StaffRole.operator, StaffRole.sales_rep) and merchant_id is None:
        raise InvalidStaffScope("an owner, manager or cashier needs merchant_id",
                                field="merchant_id")
    if merchant_id is not None and session.get(Merchant, merchant_id) is None:
        raise InvalidStaffScope("no such merchant", field="merchant_id")
    if store_id is not None:
        store = session.get(Store, store_id)
        if store is None or store.merchant_id != merchant_id:
            raise InvalidStaffScope("no such store of this merchant", field="store_id")


def invite(session: Session, *, user: StaffUser, inviter: StaffUser | None) -> str:
    """A one-time link's token for ``user`` to choose a password (shown once)."""
    token = random_token(32)
    now = utcnow()
    session.add(StaffInvitation(token_hash=token_hash(token), staff_user_id=user.id,
                                invited_by=inviter.id if inviter else None, created_at=now,
                                expires_at=now + INVITATION_LIFETIME))
    session.flush()
    return token


def invitation_user(session: Session, token: str) -> StaffUser:
    """The staff user an open invitation is for, or 410."""
    row = session.get(StaffInvitation, token_hash(token))
    if row is None or row.accepted_at is not None or row.expires_at <= utcnow():
        raise InvitationInvalid("ask whoever invited you for a new invitation")
    user = session.get(StaffUser, row.staff_user_id)
    if user is None or user.disabled_at is not None:
        raise InvitationInvalid("ask whoever invited you for a new invitation")
    return user


def accept_invitation(session: Session, *, token: str, password: str) -> StaffUser:
    check_password(password)
    user = invitation_user(session, token)
    used = rowcount(session.execute(
        update(StaffInvitation).where(StaffInvitation.token_hash == token_hash(token),
                                      StaffInvitation.accepted_at.is_(None))
        .values(accepted_at=utcnow())))
    if not used:
        raise InvitationInvalid("this invitation was just used")
    user.password_hash = hash_secret(password)
    session.flush()
    return user


def list_staff(session: Session, *, viewer: StaffUser) -> list[StaffUser]:
    """The staff a user may manage: the operator's staff all of them; an owner their
    merchant's."""
    query = select(StaffUser).order_by(StaffUser.created_at)
    if StaffRole(viewer.role) != StaffRole.operator:
        query = query.where(StaffUser.merchant_id == viewer.merchant_id)
    return list(session.scalars(query))


class StaffSelfDisable(Conflict):
    code = "staff_self_disable"
    title = "You cannot disable your own account"


def disable_staff(session: Session, *, actor_user: StaffUser, staff_id: uuid.UUID
                  ) -> StaffUser:
    """Disable a staff user of the actor's merchant: they can no longer sign in, and every
    browser they are signed in on is signed out at once (their sessions are deleted).

    Only the merchant's owner, and never their own account (so that a merchant keeps an
    owner who can sign in). Another merchant's staff, the operator's and the coalition's
    sales representatives are not found (404, as an unknown id). Disabling a disabled
    user changes nothing."""
    user = session.get(StaffUser, staff_id)
    if (user is None or user.merchant_id is None
            or user.merchant_id != actor_user.merchant_id):
        raise NotFound("no such staff user")
    if StaffRole(actor_user.role) != StaffRole.owner or actor_user.disabled_at is not None:
        raise Forbidden("only the merchant's owner disables its staff")
    if user.id == actor_user.id:
        raise StaffSelfDisable("ask another owner of the merchant to disable your account",
                               field="staff_id")
    session.execute(update(StaffUser).where(StaffUser.id == user.id,
                                            StaffUser.disabled_at.is_(None))
                    .values(disabled_at=utcnow()))
    session.execute(delete(StaffSession).where(StaffSession.staff_user_id == user.id))
    session.refresh(user)
    return user


# --- signing in ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SignedIn:
    """A new browser session: its token (the cookie) and whether it still waits for the
    second factor."""

    token: str
    user: StaffUser
    needs_second_factor: bool


def sign_in(session: Session, *, email: str, password: str) -> SignedIn:
    """Check the e-mail and password, counting a failure towards the account's lock-out
    (``MAX_FAILED_SIGN_INS`` in a row lock it for ``LOCK_MINUTES``), and open a session.
    An unknown e-mail costs the same password check (``kit.passwords``) and gets the same
    answer as a wrong password."""
    now = utcnow()
    user = session.scalars(select(StaffUser).where(
        StaffUser.email_hash == email_lookup(email))).first()
    if user is None or user.disabled_at is not None:
        secret_matches(None, password)
        raise CredentialsIncorrect()
    _refuse_if_locked(user, now)
    if not secret_matches(user.password_hash, password):
        _count_failure(session, user, now)
    _clear_failures(session, user, now)
    return SignedIn(token=_open_session(session, user, now,
                                        verified=user.totp_secret_enc is None),
                    user=user, needs_second_factor=user.totp_secret_enc is not None)


def _refuse_if_locked(user: StaffUser, now: datetime) -> None:
    if user.locked_until is not None and user.locked_until > now:
        raise AccountLocked(f"try again after {user.locked_until.isoformat()}",
                            locked_until=user.locked_until.isoformat())


def _count_failure(session: Session, user: StaffUser, now: datetime,
                   refusal: type[CredentialsIncorrect] | type[SecondFactorIncorrect]
                   = CredentialsIncorrect) -> None:
    """One failure more, by one conditional statement (concurrent guesses all count); the
    one that reaches the limit locks the account. Raises."""
    if user.locked_until is not None:
        # The lock has run out: count afresh (only one request wins the reset).
        session.execute(update(StaffUser).where(StaffUser.id == user.id,
                                                StaffUser.locked_until <= now)
                        .values(failed_logins=0, locked_until=None))
    failures = session.execute(
        update(StaffUser).where(StaffUser.id == user.id)
        .values(failed_logins=StaffUser.failed_logins + 1)
        .returning(StaffUser.failed_logins)).scalar_one()
    if failures >= MAX_FAILED_SIGN_INS:
        until = now + timedelta(minutes=LOCK_MINUTES)
        session.execute(update(StaffUser).where(StaffUser.id == user.id)
                        .values(locked_until=until))
        raise AccountLockedNow(f"{failures} failed sign-ins: try again after "
                               f"{until.isoformat()}", locked_until=until.isoformat())
    raise refusal(attempts_left=MAX_FAILED_SIGN_INS - failures)


def _clear_failures(session: Session, user: StaffUser, now: datetime) -> None:
    session.execute(update(StaffUser).where(StaffUser.id == user.id)
                    .values(failed_logins=0, locked_until=None, last_login_at=now))


def _open_session(session: Session, user: StaffUser, now: datetime, *,
                  verified: bool) -> str:
    token = random_token(32)
    session.add(StaffSession(
        token_hash=token_hash(token), staff_user_id=user.id,
        second_factor_at=now if verified else None, created_at=now, last_seen_at=now,
        expires_at=now + timedelta(hours=get_settings().staff_session_hours)))
    session.flush()
    return token


def pass_second_factor(session: Session, *, token: str, code: str) -> StaffUser:
    """The authenticator app's code for a session waiting for it. A failure counts towards
    the lock-out like a wrong password; a code works once (the step is remembered)."""
    now = utcnow()
    row = session.get(StaffSession, token_hash(token))
    if row is None or row.expires_at <= now:
        raise NotFound("the sign-in has expired; sign in again")
    user = session.get(StaffUser, row.staff_user_id)
    if user is None or user.totp_secret_enc is None:
        raise NotFound("the sign-in has expired; sign in again")
    _refuse_if_locked(user, now)
    secret = decrypt(get_settings().encryption_key, user.totp_secret_enc, context=TOTP_SECRET)
    step = totp.matching_step(secret, code.strip(), now.timestamp())
    if step is None or not _spend_step(session, user, step):
        _count_failure(session, user, now, SecondFactorIncorrect)
    row.second_factor_at = now
    _clear_failures(session, user, now)
    return user


def _spend_step(session: Session, user: StaffUser, step: int) -> bool:
    """Whether ``step`` is later than the last accepted one (stored as the time of its
    session's second factor: the step's start), so that a seen code cannot be replayed."""
    started = datetime.fromtimestamp(step * totp.STEP_SECONDS, tz=utcnow().tzinfo)
    return rowcount(session.execute(
        update(StaffUser).where(StaffUser.id == user.id,
                                (StaffUser.totp_last_step.is_(None))
                                | (StaffUser.totp_last_step < started))
        .values(totp_last_step=started))) == 1


def start_totp(user: StaffUser) -> tuple[str, str]:
    """A new secret for ``user`` to scan, and its ``otpauth://`` address; not saved until
    ``enable_totp`` sees a code made from it."""
    secret = totp.new_secret()
    return secret, totp.provisioning_uri(secret, account=email_of(user), issuer="Patron")


def enable_totp(session: Session, *, user: StaffUser, secret: str, code: str) -> None:
    """Turn the second factor on with ``secret``, once a code made from it passes; an
    account that has one keeps it (a new one needs the old one removed first)."""
    now = utcnow()
    if user.totp_secret_enc is not None:
        raise SecondFactorIncorrect("the authenticator is already set up for this account",
                                    field="code")
    if not totp.valid_secret(secret) or \
            totp.matching_step(secret, code.strip(), now.timestamp()) is None:
        raise SecondFactorIncorrect("the code does not match; scan the QR code again and "
                                    "enter the code the app shows now", field="code")
    user.totp_secret_enc = encrypt(get_settings().encryption_key, secret, context=TOTP_SECRET)
    session.flush()


def sign_out(session: Session, *, token: str) -> None:
    session.execute(delete(StaffSession).where(StaffSession.token_hash == token_hash(token)))


# --- who a browser is ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StaffContext:
    """A signed-in staff user in one browser session."""

    user_id: uuid.UUID
    role: StaffRole
    merchant_id: uuid.UUID | None
    store_id: uuid.UUID | None
    terminal_id: uuid.UUID | None
    name: str
    language: str | None
    token_hash: str


# Sessions are touched at most this often (a write per page view would cost more than
# the page).
_TOUCH = timedelta(minutes=5)


def staff_of_session(session: Session, token: str | None) -> StaffContext | None:
    """The staff user whose browser holds ``token``, if the session is open and passed its
    second factor; None otherwise."""
    if not token:
        return None
    now = utcnow()
    row = session.execute(
        select(StaffSession, StaffUser)
        .join(StaffUser, StaffUser.id == StaffSession.staff_user_id)
        .where(StaffSession.token_hash == token_hash(token))).first()
    if row is None:
        return None
    staff_session, user = row
    if (staff_session.expires_at <= now or staff_session.second_factor_at is None
            or user.disabled_at is not None):
        return None
    if staff_session.last_seen_at < now - _TOUCH:
        session.execute(update(StaffSession)
                        .where(StaffSession.token_hash == staff_session.token_hash)
                        .values(last_seen_at=now))
    return StaffContext(user_id=user.id, role=StaffRole(user.role),
                        merchant_id=user.merchant_id, store_id=user.store_id,
                        terminal_id=staff_session.terminal_id, name=user.name,
                        language=user.language, token_hash=staff_session.token_hash)


def principal_for(staff: StaffContext, area: Area) -> Principal:
    """Who the staff user acts as in ``area``, for the services: 403 if the role may not
    open it (``tenancy.rules.AREA_ROLES``). At the register: the register chosen for this
    session (``choose_register``), acting as that terminal."""
    if not may_open(staff.role, area):
        raise Forbidden(f"a {staff.role.value} may not open this page")
    role = acting_role(staff.role, area)
    if role == Role.terminal and staff.terminal_id is None:
        raise Forbidden("choose the register you work at first")
    return Principal(key_id=None, role=role, merchant_id=staff.merchant_id,
                     terminal_id=staff.terminal_id if role == Role.terminal else None,
                     store_id=staff.store_id, staff_id=staff.user_id)


def registers_for(session: Session, staff: StaffContext) -> list[Terminal]:
    """The registers a staff user may work at: their merchant's active point-of-sale
    terminals (a cashier bound to a store: that store's)."""
    query = select(Terminal).where(Terminal.merchant_id == staff.merchant_id,
                                   Terminal.active.is_(True),
                                   Terminal.kind.in_([TerminalKind.pos.value,
                                                      TerminalKind.online.value]))
    if staff.store_id is not None:
        query = query.where(Terminal.store_id == staff.store_id)
    return list(session.scalars(query.order_by(Terminal.code)))


def choose_register(session: Session, *, staff: StaffContext, terminal_id: uuid.UUID) -> None:
    if not may_open(staff.role, Area.register):
        raise Forbidden(f"a {staff.role.value} does not work at a register")
    if terminal_id not in {t.id for t in registers_for(session, staff)}:
        raise NotFound("no such register")
    session.execute(update(StaffSession).where(StaffSession.token_hash == staff.token_hash)
                    .values(terminal_id=terminal_id))
