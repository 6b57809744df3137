"""Idempotency-Key for every write of the API (docs/errors.md, "Retries and Idempotency-Key")."""
