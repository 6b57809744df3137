from __future__ import annotations

from patron.errors import InvalidInput


class UnknownReferralCode(InvalidInput):
    code = "unknown_referral_code"
    title = "No member of this merchant has this referral code"


class NoReferralProgram(InvalidInput):
    code = "no_referral_program"
    title = "This merchant has no active referral program"


class SelfReferral(InvalidInput):
    code = "self_referral"
    title = "A member cannot refer themselves"
    # The attempt is recorded as a security event, shown to the merchant.
    keep_side_effects = True


class ReferralDeviceReused(InvalidInput):
    code = "referral_device_reused"
    title = "Another member already enrolled with this code from the same wallet device"
    # The attempt is recorded as a security event, shown to the merchant.
    keep_side_effects = True


class InvalidReferralProgram(InvalidInput):
    code = "invalid_referral_program"
    title = "The referral program cannot be stored as written"
