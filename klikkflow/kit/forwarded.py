"""The client's address behind proxies: X-Forwarded-For, believed only from trusted hops.

Each proxy appends the address it saw to ``X-Forwarded-For``. Walking the chain from the
right, starting at the peer that connected to us, every hop we trust (the router, the
dashboard, a load balancer) tells us who connected to it; the first hop we do not trust is
the client. Anything a client wrote into the header itself sits to the left of its own
address, so it is never reached: a client cannot choose the address it is limited by.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_FOR = "x-forwarded-for"


def parse_networks(spec: str) -> tuple[Network, ...]:
    """``"127.0.0.0/8, ::1, 10.0.0.0/8"`` as networks (a bare address is a /32 or /128)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in spec.split(",") if part.strip()
    )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _trusted(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address, networks: Iterable[Network]
) -> bool:
    return any(ip in network for network in networks)


def client_address(peer: str, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The address of the client: the peer itself unless it is a trusted proxy, else the
    rightmost address in ``forwarded_for`` that is not one. An unreadable entry stops the
    walk at the last hop we could trust."""
    current = _address(peer)
    if current is None:
        return peer
    hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
    while _trusted(current, trusted) and hops:
        previous = _address(hops.pop())
        if previous is None:
            break
        current = previous
    return str(current)


def forward_for(forwarded_for: str | None, peer: str | None) -> str | None:
    """The X-Forwarded-For to send on: the one received with the peer's address appended."""
    hops = [h.strip() for h in (forwarded_for or "").split(",") if h.strip()]
    if peer:
        hops.append(peer)
    return ", ".join(hops) or None
