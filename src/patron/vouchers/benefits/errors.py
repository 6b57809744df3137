"""Why a benefit rule is refused; each refusal of a definition has its own code and names
the field at fault."""

from __future__ import annotations

from patron.errors import InvalidInput, NotFound


class BenefitRuleNotFound(NotFound):
    """Unknown rules and other tenants' rules get this same answer."""

    code = "not_found"
    title = "No such benefit rule"


class InvalidBenefitThreshold(InvalidInput):
    code = "invalid_benefit_threshold"
    title = "A threshold is a whole number from 1 to 10^12"


class InvalidBenefitFilter(InvalidInput):
    code = "invalid_benefit_filter"
    title = "Only a purchases or items rule counts one SKU or one category, not both"


class InvalidBenefitOwner(InvalidInput):
    code = "invalid_benefit_owner"
    title = "Miles rules are the coalition's; every other rule counts at one merchant"


class InvalidBenefitOffer(InvalidInput):
    code = "invalid_benefit_offer"
    title = "The offer must be live and the rule owner's own"
