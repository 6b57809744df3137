"""Scheduled work: points expiry, expiry notices, and the scheduler that runs them.

A job is a transaction boundary like a request or a CLI command: it opens its own short
transactions (one per batch) and calls services that only flush. ``patron jobs …`` runs
jobs once; ``patron serve`` runs them on a schedule in one process at a time.
"""
