"""Security events (refused attempts a merchant should see) and the throttle built on them."""
