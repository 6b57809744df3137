"""Who may do what to a member: pure decisions, no session (docs/tenancy.md, "Who may").

A caller stands in one *relation* to a member, worked out from its key and the member's
memberships (``patron.members.access``); each member endpoint asks for one *action*; this
table decides. It is the one place the rule is written: the endpoints, the services and the
role x relation matrix test all read it.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from patron.tenancy.models import Role, StaffRole


class Relation(StrEnum):
    operator = "operator"
    # The merchant where the member enrolled: with the operator, the data controller.
    home_merchant = "home_merchant"
    home_terminal = "home_terminal"
    # Another merchant the member holds a membership with (gained by a sale or a visit).
    member_merchant = "member_merchant"
    member_terminal = "member_terminal"
    # A merchant (or its terminal) the member has nothing to do with.
    stranger = "stranger"
    sales_rep = "sales_rep"
    # The member themselves, signed in on their wallet.
    self = "self"


class MemberAction(StrEnum):
    # Masked profile, balances, vouchers, cards (last four), consents, barcode, scores.
    read = "read"
    # Decrypted personal data: the export.
    export = "export"
    # The rotating QR token: a credential that identifies the member at any till.
    read_credential = "read_credential"
    # Phone, e-mail, cards, PIN, consents and the profile's attributes.
    change = "change"
    # Withdrawal and erasure.
    end = "end"
    # Ending a lock-out after too many wrong PINs before it runs out.
    unlock = "unlock"


class Verdict(StrEnum):
    allow = "allow"
    # Allowed only with the member present, proving it (their PIN or a one-time code).
    with_proof = "with_proof"
    forbid = "forbid"
    # Answered as if the member did not exist: 404.
    hide = "hide"


_ALL = {action: Verdict.allow for action in MemberAction}
_SELL_AND_READ = {MemberAction.read: Verdict.allow, MemberAction.export: Verdict.forbid,
                  MemberAction.read_credential: Verdict.forbid,
                  MemberAction.end: Verdict.forbid, MemberAction.unlock: Verdict.forbid}

MEMBER_RULES: dict[Relation, dict[MemberAction, Verdict]] = {
    Relation.operator: _ALL,
    Relation.home_merchant: _ALL,
    # Tills of any merchant sell to and read the member; they change what identifies the
    # member only with the member there, proving it.
    Relation.home_terminal: {**_SELL_AND_READ, MemberAction.change: Verdict.with_proof},
    Relation.member_terminal: {**_SELL_AND_READ, MemberAction.change: Verdict.with_proof},
    # Another merchant's staff never has the member at hand: a sale allows reading, no more.
    Relation.member_merchant: {**_SELL_AND_READ, MemberAction.change: Verdict.forbid},
    Relation.stranger: {action: Verdict.hide for action in MemberAction},
    Relation.sales_rep: {action: Verdict.forbid for action in MemberAction},
    # A member does everything to their own record but end a lock-out early (the lock
    # protects them from someone who has their phone).
    Relation.self: {**_ALL, MemberAction.unlock: Verdict.forbid},
}


def member_verdict(action: MemberAction, relation: Relation) -> Verdict:
    return MEMBER_RULES[relation][action]


def relation(*, role: Role, is_home: bool, has_membership: bool,
             is_self: bool = False) -> Relation:
    """The relation of a key of ``role`` to a member, given whether the key's merchant is
    the member's enrolling merchant and whether it holds a membership of the member (a
    signed-in member: whether it is the member themselves)."""
    if role == Role.member:
        return Relation.self if is_self else Relation.stranger
    if role == Role.operator:
        return Relation.operator
    if role == Role.sales_rep:
        return Relation.sales_rep
    terminal = role == Role.terminal
    if is_home:
        return Relation.home_terminal if terminal else Relation.home_merchant
    if has_membership:
        return Relation.member_terminal if terminal else Relation.member_merchant
    return Relation.stranger


def sees_personal_attributes(relation: Relation) -> bool:
    """Whether a member read shows the masked phone and e-mail and the profile's attributes
    (birth year and month, gender, postcode, region): the enrolling merchant's keys and the
    operator. Another merchant sees the member number, status, language and consents."""
    return relation in (Relation.operator, Relation.home_merchant, Relation.home_terminal,
                        Relation.self)


def own_consent_scope(*, role: Role, key_merchant_id: uuid.UUID | None) -> uuid.UUID | None:
    """The consent scope a key speaks for (docs/privacy.md, "Consent"): its merchant's; the
    operator's is the coalition (None). A consent change that names no scope lands there,
    and a key's reads show the member's marketing consent for it."""
    return None if role == Role.operator else key_merchant_id


def may_record_consent_in(*, role: Role, key_merchant_id: uuid.UUID | None,
                          scope_merchant_id: uuid.UUID | None) -> bool:
    """Whether a key may record a member's consent in a scope (a merchant's; None: the
    coalition's): the operator in any; a merchant's keys in their own merchant's alone.
    Whether the key may change the member at all is ``MEMBER_RULES``' ``change``. The
    member themselves decides their consent in every scope."""
    if role in (Role.operator, Role.member):
        return True
    return scope_merchant_id is not None and scope_merchant_id == key_merchant_id


def sees_consent_of(*, role: Role, key_merchant_id: uuid.UUID | None,
                    scope_merchant_id: uuid.UUID | None) -> bool:
    """Whether a key that may read the member sees their consent in a scope: the operator
    every scope; a merchant's keys the coalition's and their own merchant's (another
    merchant's consent is that merchant's business); the member their own, every scope."""
    return role in (Role.operator, Role.member) or scope_merchant_id is None \
        or scope_merchant_id == key_merchant_id


def sees_consent_evidence(*, role: Role, key_merchant_id: uuid.UUID | None,
                          scope_merchant_id: uuid.UUID | None) -> bool:
    """Whether a key sees the evidence of a consent change (an address, a message id): the
    operator and the member; a merchant's keys of their own merchant's changes only."""
    return role in (Role.operator, Role.member) or (scope_merchant_id is not None
                                     and scope_merchant_id == key_merchant_id)


# --- people in the web app (docs/tenancy.md, "People") ---------------------------------

class Area(StrEnum):
    """The web app's parts, each with the staff roles that may open it. The wallet is the
    member's alone (a member session, never a staff one)."""

    register = "register"
    console = "console"
    # The console's staff, roles and API keys.
    console_admin = "console_admin"
    operator = "operator"
    rep = "rep"


AREA_ROLES: dict[Area, frozenset[StaffRole]] = {
    Area.register: frozenset({StaffRole.owner, StaffRole.manager, StaffRole.cashier}),
    Area.console: frozenset({StaffRole.owner, StaffRole.manager}),
    Area.console_admin: frozenset({StaffRole.owner}),
    Area.operator: frozenset({StaffRole.operator}),
    Area.rep: frozenset({StaffRole.sales_rep}),
}


def may_open(role: StaffRole, area: Area) -> bool:
    return role in AREA_ROLES[area]


def acting_role(role: StaffRole, area: Area) -> Role:
    """The role a staff user acts with in an area, for the services' own checks: at the
    register every staff user acts as the register (a terminal); in the console an owner or
    a manager acts as their merchant."""
    if area == Area.register:
        return Role.terminal
    return {StaffRole.operator: Role.operator, StaffRole.owner: Role.merchant,
            StaffRole.manager: Role.merchant, StaffRole.cashier: Role.terminal,
            StaffRole.sales_rep: Role.sales_rep}[role]


# Who may create a staff user of each role: the operator any; a merchant's owner the
# merchant's owners, managers, cashiers and sales representatives.
def may_invite(inviter: StaffRole, invitee: StaffRole) -> bool:
    if inviter == StaffRole.operator:
        return True
    return inviter == StaffRole.owner and invitee != StaffRole.operator
