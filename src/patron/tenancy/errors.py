from __future__ import annotations

from typing import ClassVar

from patron.errors import Conflict, Forbidden, InvalidInput, PatronError, Unauthenticated


class MerchantNumberTaken(Conflict):
    code = "merchant_number_taken"
    title = "A merchant with this number already exists"


class StoreCodeTaken(Conflict):
    code = "store_code_taken"
    title = "This merchant already has a store with this code"


class TerminalCodeTaken(Conflict):
    code = "terminal_code_taken"
    title = "This store already has a terminal with this code"


class InvalidKeyScope(InvalidInput):
    code = "invalid_key_scope"
    title = "The key's role and tenant do not fit together"


class TerminalInactive(Forbidden):
    code = "terminal_inactive"
    title = "This terminal is deactivated"


class InvalidKeyExpiry(InvalidInput):
    code = "invalid_key_expiry"
    title = "The key's expiry is already past"


class KeyExpired(Unauthenticated):
    code = "key_expired"
    title = "The API key has expired"


class CredentialsIncorrect(Unauthenticated):
    """A wrong e-mail or password: one answer for both, so that it tells nobody which
    e-mail addresses have accounts. The failure counts towards the lock-out."""

    code = "credentials_incorrect"
    title = "The e-mail address or the password is wrong"
    keep_side_effects = True


class SecondFactorIncorrect(Unauthenticated):
    code = "second_factor_incorrect"
    title = "The code from the authenticator app is wrong or was used already"
    keep_side_effects = True


class AccountLocked(PatronError):
    status: ClassVar[int] = 423
    code = "account_locked"
    title = "Too many failed sign-ins; the account is locked for a while"


class AccountLockedNow(AccountLocked):
    """The failure that locks: the count and the lock are kept."""

    keep_side_effects = True


class InvitationInvalid(PatronError):
    status: ClassVar[int] = 410
    code = "invitation_invalid"
    title = "This invitation has expired, was used, or does not exist"


class PasswordTooWeak(InvalidInput):
    code = "password_too_weak"
    title = "Choose a longer password"


class StaffEmailTaken(Conflict):
    code = "staff_email_taken"
    title = "A staff user with this e-mail address already exists"


class InvalidStaffScope(InvalidInput):
    code = "invalid_staff_scope"
    title = "The staff user's role and merchant or store do not fit together"
