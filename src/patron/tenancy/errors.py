from __future__ import annotations

from patron.errors import Conflict, Forbidden, InvalidInput, Unauthenticated


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
