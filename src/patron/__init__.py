"""Patron: open-source customer loyalty and customer-management platform."""

__version__ = "0.1.0"
