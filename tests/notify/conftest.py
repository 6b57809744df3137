"""The deliveries' tests' sinks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bench.sinks import Mailbox, smtp_server


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on loopback, keeping what it receives."""
    with smtp_server() as server:
        yield server
