"""Offers, voucher codes, validation, reservation, redemption, revocation, tickets."""
