"""Each merchant's points program: earn rate, rounding, categories, burn value, expiry, tiers."""
