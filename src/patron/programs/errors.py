from __future__ import annotations

from patron.errors import InvalidInput


class InvalidProgram(InvalidInput):
    code = "invalid_program"
    title = "The program settings do not fit together"


class BaseTierThresholdNotZero(InvalidProgram):
    code = "base_tier_threshold_not_zero"
    title = "The first tier is the base tier: its threshold must be 0"


class TiersNotIncreasing(InvalidProgram):
    code = "tiers_not_increasing"
    title = "Tier thresholds must strictly increase"


class DuplicateTierName(InvalidProgram):
    code = "duplicate_tier_name"
    title = "Two tiers have the same name"


class DuplicateCategory(InvalidProgram):
    code = "duplicate_category"
    title = "A category is listed twice"


class CategoryMultipliedAndExcluded(InvalidProgram):
    code = "category_multiplied_and_excluded"
    title = "A category cannot both have a multiplier and be excluded"


class InvalidBasket(InvalidInput):
    code = "invalid_basket"
    title = "The basket cannot earn points as given"


class EarnTooLarge(InvalidBasket):
    code = "earn_too_large"
    title = "The basket would earn more points than one transaction may"


class InvalidBurn(InvalidInput):
    code = "invalid_burn"
    title = "Points to burn must be a whole number, zero or more"


class BurnBelowMinimum(InvalidBurn):
    code = "burn_below_minimum"
    title = "Fewer points than the program's minimum burn"


class BurnExceedsBasket(InvalidBurn):
    code = "burn_exceeds_basket"
    title = "The points are worth more than the basket"
