"""Who a request comes from, for the per-address budgets (entry rate, media, sockets).

Behind a reverse proxy every client's TCP peer is the proxy; the client's address is in a header the
proxy adds. That header is believed only when the TCP peer is one of ``server.trusted_proxies``:
anyone else could write any address in it. ``X-Forwarded-For`` (default) is read from the right:
each proxy appends the address it saw, so the rightmost address that is not itself a trusted proxy
is the client (everything left of it was written by the client and proves nothing). ``Forwarded``
(RFC 7239) is read the same way through its ``for=`` parameters. A header that cannot be read (a
malformed, obfuscated or ``unknown`` address where the client's should be) is ignored: the TCP
peer counts.

IPv6 clients get a whole prefix each (``limits.ipv6_prefix``, /64): one subscriber's line usually
holds a /64 or more, so counting single addresses would be no limit at all. An IPv4-mapped IPv6
address counts as its IPv4 address. The key is what the budgets count; it is never logged.

Pure: no aiohttp, the peer and headers are passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FORWARDED_HEADERS = ("X-Forwarded-For", "Forwarded")


def parse_networks(items: Iterable[str]) -> list[IPNetwork]:
    """``["10.0.0.1", "192.168.0.0/16", "::1"]`` -> networks (``ValueError`` on a bad one)."""
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items]


@dataclass(frozen=True)
class ClientAddresses:
    """The settings that turn a TCP peer and its headers into a client address key."""

    trusted: tuple[IPNetwork, ...] = ()
    header: str = "X-Forwarded-For"
    ipv6_prefix: int = 64

    @classmethod
    def from_settings(cls, trusted: Sequence[str], header: str, ipv6_prefix: int
                      ) -> ClientAddresses:
        return cls(tuple(parse_networks(trusted)), header, ipv6_prefix)

    def key(self, peer: str | None, headers: object) -> str:
        """The budget key of a request from TCP peer ``peer`` with ``headers`` (aiohttp's
        multi-dict, whose ``getall`` gives every header of a name, or a plain mapping)."""
        address = _address(peer)
        if address is None:
            return "unknown"
        if self.trusted and self._is_trusted(address):
            forwarded = self._forwarded(headers)
            if forwarded is not None:
                address = forwarded
        return self._bucket(address)

    def _is_trusted(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.trusted)

    def _forwarded(self, headers: object) -> IPAddress | None:
        """The client's address from the forwarding header, or None to use the peer."""
        values = _all(headers, self.header)
        if not values:
            return None
        if self.header.lower() == "forwarded":
            hops = [_forwarded_for(element) for value in values for element in value.split(",")]
        else:
            hops = [_address(item.strip()) for value in values for item in value.split(",")]
        leftmost: IPAddress | None = None
        for hop in reversed(hops):
            if hop is None:
                return None  # unreadable where the client's address should be: not believed
            leftmost = hop
            if not self._is_trusted(hop):
                return hop
        return leftmost  # every hop a trusted proxy: the first one is the client

    def _bucket(self, address: IPAddress) -> str:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                return str(address.ipv4_mapped)
            net = ipaddress.IPv6Network((address, self.ipv6_prefix), strict=False)
            return str(net)
        return str(address)


def _all(headers: object, name: str) -> list[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, []))
    get = getattr(headers, "get", None)
    value = get(name) if get is not None else None
    return [value] if isinstance(value, str) else []


def _address(text: str | None) -> IPAddress | None:
    if not text:
        return None
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _forwarded_for(element: str) -> IPAddress | None:
    """The ``for=`` node of one RFC 7239 forwarded-element: ``for=192.0.2.60``,
    ``for="[2001:db8::1]:4711"``, ``for="192.0.2.1:80"``; None when absent or not an address."""
    for pair in element.split(";"):
        name, _, value = pair.strip().partition("=")
        if name.strip().lower() != "for":
            continue
        node = value.strip().strip('"')
        if node.startswith("["):
            host, bracket, _ = node[1:].partition("]")
            return _address(host) if bracket else None
        if node.count(":") == 1:  # IPv4 with a port
            node = node.split(":", 1)[0]
        return _address(node)
    return None
