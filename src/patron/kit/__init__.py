"""Helpers without business rules: clock, ids, crypto, money, pagination."""
