"""The client address every throttle keys on: the peer's, unless a trusted proxy says."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from patron.config import Settings
from patron.kit.net import client_address, parse_networks

PROXIES = parse_networks("10.0.0.0/8, 192.0.2.1, 2001:db8::/32")


@pytest.mark.parametrize(("peer", "forwarded", "expected"), [
    # No proxy trusted, or a peer that is none: the header is ignored.
    ("198.51.100.7", ["203.0.113.9"], "198.51.100.7"),
    # A trusted proxy: the nearest address it did not add itself.
    ("10.0.0.2", ["203.0.113.9"], "203.0.113.9"),
    ("10.0.0.2", ["203.0.113.9, 192.0.2.1"], "203.0.113.9"),
    ("10.0.0.2", ["203.0.113.9", "192.0.2.1"], "203.0.113.9"),
    # What the client wrote itself (left of the first untrusted hop) is never believed.
    ("10.0.0.2", ["1.2.3.4, 203.0.113.9, 192.0.2.1"], "203.0.113.9"),
    # A chain of proxies only: its first.
    ("10.0.0.2", ["10.9.9.9, 192.0.2.1"], "10.9.9.9"),
    # Garbage stops the walk at the last address believed.
    ("10.0.0.2", ["not-an-address, 192.0.2.1"], "192.0.2.1"),
    ("10.0.0.2", ["garbage"], "10.0.0.2"),
    # No header from a proxy: the proxy itself.
    ("10.0.0.2", [], "10.0.0.2"),
    ("2001:db8::5", ["2001:db9::1"], "2001:db9::1"),
    # A peer that is no address (a test client's name) is taken as it is.
    ("testclient", ["203.0.113.9"], "testclient"),
])
def test_the_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert client_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address("10.0.0.2", ["203.0.113.9"], ()) == "10.0.0.2"
    assert client_address(None, ["203.0.113.9"], PROXIES) == "unknown"


def test_a_typo_in_the_setting_is_refused_at_start_up() -> None:
    assert Settings(trusted_proxies="").proxy_networks == ()
    assert [str(n) for n in Settings(trusted_proxies=" 10.0.0.5 ,10.1.0.0/16").proxy_networks
            ] == ["10.0.0.5/32", "10.1.0.0/16"]
    with pytest.raises(ValidationError, match=r"'10\.0\.0\.300' is not an IP address"):
        Settings(trusted_proxies="10.0.0.5, 10.0.0.300")
