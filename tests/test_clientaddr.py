"""The client address the per-address budgets count: the TCP peer, or behind a trusted proxy its
forwarding header; IPv6 by prefix."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from sfu.service.clientaddr import ClientAddresses

PROXY = ClientAddresses.from_settings(["10.0.0.0/8", "::1"], "X-Forwarded-For", 64)


def xff(*values: str) -> CIMultiDict[str]:
    return CIMultiDict([("X-Forwarded-For", v) for v in values])


def test_without_trusted_proxies_the_header_is_never_read() -> None:
    plain = ClientAddresses()
    assert plain.key("10.0.0.5", xff("203.0.113.9")) == "10.0.0.5"


def test_from_a_peer_that_is_not_a_trusted_proxy_the_header_is_ignored() -> None:
    assert PROXY.key("198.51.100.7", xff("203.0.113.9")) == "198.51.100.7"


@pytest.mark.parametrize(("headers", "client"), [
    (xff("203.0.113.9"), "203.0.113.9"),
    # what the client wrote itself (left of the proxies' entries) proves nothing
    (xff("1.2.3.4, 203.0.113.9"), "203.0.113.9"),
    (xff("1.2.3.4, 203.0.113.9, 10.1.1.1"), "203.0.113.9"),  # a second proxy of ours
    (xff("1.2.3.4", "203.0.113.9"), "203.0.113.9"),  # the header twice: read as one list
    (xff("10.2.2.2, 10.1.1.1"), "10.2.2.2"),  # everyone a proxy: the first one
    (xff(" 203.0.113.9 "), "203.0.113.9"),
])
def test_behind_a_trusted_proxy_the_rightmost_untrusted_address_is_the_client(
        headers: CIMultiDict[str], client: str) -> None:
    assert PROXY.key("10.0.0.5", headers) == client


@pytest.mark.parametrize("headers", [
    xff("not-an-address"), xff("203.0.113.9, garbage"), xff(""), xff("203.0.113.9:443"),
    xff("unknown"), CIMultiDict(),
])
def test_a_malformed_or_missing_header_leaves_the_peer(headers: CIMultiDict[str]) -> None:
    assert PROXY.key("10.0.0.5", headers) == "10.0.0.5"


def test_a_malformed_hop_left_of_the_client_does_not_matter() -> None:
    assert PROXY.key("10.0.0.5", xff("junk, 203.0.113.9")) == "203.0.113.9"


FORWARDED = ClientAddresses.from_settings(["127.0.0.1"], "Forwarded", 64)


@pytest.mark.parametrize(("value", "client"), [
    ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
    ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::/64"),
    ('for=198.51.100.1, for="192.0.2.43:8080"', "192.0.2.43"),
    ("For=192.0.2.60", "192.0.2.60"),
    ("for=unknown", "127.0.0.1"),
    ("for=_hidden", "127.0.0.1"),
    ("proto=https", "127.0.0.1"),
    ('for="[2001:db8::1"', "127.0.0.1"),
])
def test_rfc_7239_forwarded(value: str, client: str) -> None:
    assert FORWARDED.key("127.0.0.1", CIMultiDict([("Forwarded", value)])) == client


def test_ipv6_clients_count_per_prefix() -> None:
    plain = ClientAddresses(ipv6_prefix=64)
    a = plain.key("2001:db8:1:2:aaaa::1", {})
    assert a == plain.key("2001:db8:1:2:ffff:ffff:ffff:ffff", {}) == "2001:db8:1:2::/64"
    assert a != plain.key("2001:db8:1:3::1", {})
    assert ClientAddresses(ipv6_prefix=48).key("2001:db8:1:3::1", {}) == "2001:db8:1::/48"
    assert plain.key("::ffff:192.0.2.1", {}) == "192.0.2.1"  # IPv4-mapped: its IPv4 address
    assert PROXY.key("::1", xff("2001:db8:1:2::99")) == "2001:db8:1:2::/64"


def test_no_peer_is_unknown() -> None:
    assert PROXY.key(None, xff("203.0.113.9")) == "unknown"
