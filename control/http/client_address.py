"""The client's address, believing forwarded headers only from configured proxies.

The address keys the per-address login throttle and is written into audit entries, so it
must be one the client cannot choose. The ASGI server's own forwarded-header handling is
off (``medvision serve`` runs uvicorn with ``proxy_headers=False``): it would take
``X-Forwarded-For`` from any peer it is told to trust, and rotating that header would
reset the throttle and put any text in the audit log. Here the header counts only when the
connecting peer is in ``MEDVISION_TRUSTED_PROXIES`` (none by default), and then only the
hops appended by trusted proxies: reading right to left, the first address that is not a
trusted proxy is the client. Every value is parsed as an IP address, so what reaches the
audit log is an address, never arbitrary text.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from litestar.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The longest peer name passed on unparsed (an ASGI server may report a non-IP peer, such as
#: a unix socket path or a test client's name); the audit column holds 64 characters.
MAX_PEER_CHARS = 64


@lru_cache(maxsize=8)
def parse_networks(values: tuple[str, ...]) -> tuple[Network, ...]:
    """The networks in ``values`` (addresses or CIDR blocks); ValueError names a bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return tuple(networks)


def _address(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value.strip())
    except ValueError:
        return None


def _trusted(address: Address, networks: Iterable[Network]) -> bool:
    return any(address in network for network in networks)


def _forwarded_for(scope: Scope) -> list[str]:
    hops: list[str] = []
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-forwarded-for":
            hops.extend(part for part in value.decode("latin-1").split(",") if part.strip())
    return hops


def client_address(scope: Scope, trusted_proxies: tuple[str, ...]) -> str | None:
    """The client's address for throttling and audit: the peer, or (behind a trusted proxy)
    the nearest untrusted hop of ``X-Forwarded-For``; a malformed hop ends the walk at the
    last address a trusted proxy vouched for."""
    client = scope.get("client")
    if not client:
        return None
    peer = str(client[0])
    peer_address = _address(peer)
    if peer_address is None:
        return peer[:MAX_PEER_CHARS]
    networks = parse_networks(trusted_proxies)
    if not networks or not _trusted(peer_address, networks):
        return str(peer_address)
    current = peer_address
    for hop in reversed(_forwarded_for(scope)):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, networks):
            break
    return str(current)
