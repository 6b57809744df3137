"""The points ledger: double-entry accounts, journal entries, point lots and expiry."""
