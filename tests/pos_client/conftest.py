"""A Register wired to the test app through a transport that can lose the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from patron.pos_client import Register


class FlakyTransport(httpx.BaseTransport):
    """``up``: requests reach the app; ``down``: connection refused (never sent);
    ``lost``: the request reaches the app but the answer never comes back."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.mode = "up"
        self.sent: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.mode == "down":
            raise httpx.ConnectError("connection refused", request=request)
        self.sent.append(f"{request.method} {request.url.path}")
        response = self.inner.handle_request(request)
        if self.mode == "lost":
            response.read()
            raise httpx.ReadTimeout("timed out", request=request)
        return response


@pytest.fixture
def transport(client: TestClient) -> FlakyTransport:
    return FlakyTransport(client._transport)


@pytest.fixture
def make_register(tmp_path: Path, transport: FlakyTransport) -> Iterator[Any]:
    made: list[Register] = []

    def make(key: str, name: str = "till", **options: Any) -> Register:
        register = Register("http://testserver", key, tmp_path / f"{name}.sqlite3",
                            transport=transport, probe_interval=3600, **options)
        made.append(register)
        return register

    yield make
    for register in made:
        register.close()
