"""Threshold benefits and stamp cards: rules that put a voucher into a member's wallet."""
