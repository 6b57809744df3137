"""The client's network address: the connection's peer, or what trusted proxies say.

Every throttle keys on the address this module decides (``client_address``); nothing else
reads ``X-Forwarded-For``. A header is believed only when the connection comes from a
configured proxy (``PATRON_TRUSTED_PROXIES``): otherwise any caller could name a fresh
address with each request and never be throttled.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or networks (``10.0.0.5, 10.1.0.0/16, ::1``); a bare
    address is a network of one. ``ValueError`` names the entry that is neither."""
    networks: list[Network] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network "
                             "(e.g. 10.0.0.5 or 10.1.0.0/16)") from None
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str | None, forwarded_for: Sequence[str],
                   proxies: Sequence[Network]) -> str:
    """The address of the client behind the connection from ``peer``.

    ``forwarded_for`` holds the request's ``X-Forwarded-For`` headers in order. Unless the
    peer is a trusted proxy they are ignored. Otherwise the chain (client, proxy 1, proxy
    2, ...) is read from the right, the end the trusted proxies appended to: the first
    address that is not a trusted proxy is the client. A chain made only of proxies names
    its first; an entry that is no address stops the walk at the last address believed
    (a proxy would not have written it)."""
    if peer is None:
        return UNKNOWN
    if not proxies or not forwarded_for or not _trusted(_address(peer), proxies):
        return peer
    chain = [hop.strip() for header in forwarded_for for hop in header.split(",")]
    believed = peer
    for hop in reversed(chain):
        address = _address(hop)
        if address is None:
            return believed
        believed = str(address)
        if not _trusted(address, proxies):
            return believed
    return believed
