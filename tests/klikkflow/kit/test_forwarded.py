"""The client address behind proxies: X-Forwarded-For is believed only from trusted hops."""

from __future__ import annotations

import pytest

from klikkflow.kit.forwarded import client_address, forward_for, parse_networks

LOOPBACK = parse_networks("127.0.0.0/8, ::1")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "expected"),
    [
        ("203.0.113.7", None, "203.0.113.7"),  # no proxy
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),  # an untrusted peer's header is ignored
        ("127.0.0.1", None, "127.0.0.1"),  # a local client
        ("127.0.0.1", "198.51.100.1", "198.51.100.1"),  # behind the router
        ("127.0.0.1", "198.51.100.1, 127.0.0.1", "198.51.100.1"),  # router behind dashboard
        ("127.0.0.1", "10.9.9.9, 198.51.100.1", "198.51.100.1"),  # a forged entry on the left
        ("127.0.0.1", "127.0.0.2, 127.0.0.3", "127.0.0.2"),  # every hop trusted: the first
        ("127.0.0.1", "198.51.100.1, garbage", "127.0.0.1"),  # unreadable: stop where we are
        ("::ffff:127.0.0.1", "198.51.100.1", "198.51.100.1"),  # IPv4-mapped loopback
        ("::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_the_client_is_the_first_untrusted_hop_from_the_right(
    peer: str, forwarded_for: str | None, expected: str
) -> None:
    assert client_address(peer, forwarded_for, LOOPBACK) == expected


def test_a_proxy_network_can_be_trusted() -> None:
    trusted = parse_networks("127.0.0.1,10.0.0.0/8")
    assert client_address("10.1.2.3", "198.51.100.1, 10.4.5.6", trusted) == "198.51.100.1"
    assert client_address("10.1.2.3", "198.51.100.1", parse_networks("")) == "10.1.2.3"


def test_a_proxy_appends_its_peer() -> None:
    assert forward_for(None, "198.51.100.1") == "198.51.100.1"
    assert forward_for(" 203.0.113.7 ,", "198.51.100.1") == "203.0.113.7, 198.51.100.1"
    assert forward_for(None, None) is None
