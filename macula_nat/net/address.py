"""UDP addresses: an ``(ip, port)`` pair with the IP as a canonical literal.

Both endpoint implementations compare addresses as plain tuples (mapping tables, filtering
permissions, "is this from my peer?"), so every address that crosses the interface is normalised
here first: ``"::0001"`` and ``"::1"`` must not be two different peers. No DNS at this layer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

Address = tuple[str, int]
"""An IP literal (IPv4 or IPv6, canonical form) and a UDP port."""

ANY_IPV4 = "0.0.0.0"
ANY_IPV6 = "::"


def normalise_ip(ip: str) -> str:
    """Return the canonical text of an IP literal; raise ValueError for anything else."""
    if not isinstance(ip, str):
        raise ValueError(f"IP address must be a string literal, not {type(ip).__name__}")
    return str(ipaddress.ip_address(ip))


def normalise_address(address: Address | list[Any]) -> Address:
    """Return ``(canonical ip, port)``; raise ValueError for a malformed address.

    A two-item list is accepted too (JSON has no tuples). Port 0 is accepted (it means "any
    port" when binding); see :func:`destination_address`.
    """
    if not isinstance(address, tuple | list) or len(address) != 2:
        raise ValueError(f"address must be an (ip, port) tuple, not {address!r}")
    ip, port = address
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, not {port!r}")
    return normalise_ip(ip), port


def optional_address(address: Address | list[Any] | None) -> Address | None:
    """:func:`normalise_address`, letting None through (an attrs converter)."""
    return None if address is None else normalise_address(address)


def normalise_addresses(addresses: Iterable[Address | list[Any]]) -> tuple[Address, ...]:
    """:func:`normalise_address` over a sequence, as a tuple (an attrs converter)."""
    return tuple(normalise_address(address) for address in addresses)


def destination_address(address: Address) -> Address:
    """Normalise an address datagrams are sent to: a concrete IP and a non-zero port."""
    ip, port = normalise_address(address)
    if port == 0:
        raise ValueError(f"cannot send to port 0: {address!r}")
    if is_unspecified(ip):
        raise ValueError(f"cannot send to the unspecified address: {address!r}")
    return ip, port


def ip_version(ip: str) -> int:
    """4 or 6."""
    return ipaddress.ip_address(ip).version


def address_family(ip: str) -> socket.AddressFamily:
    """``AF_INET`` or ``AF_INET6`` for an IP literal."""
    return socket.AF_INET if ip_version(ip) == 4 else socket.AF_INET6


def is_unspecified(ip: str) -> bool:
    """True for the wildcard addresses ``0.0.0.0`` and ``::``."""
    return ipaddress.ip_address(ip).is_unspecified


def any_address(version: int) -> str:
    """The wildcard address of an IP version."""
    if version == 4:
        return ANY_IPV4
    if version == 6:
        return ANY_IPV6
    raise ValueError(f"IP version must be 4 or 6, not {version!r}")


_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")


def is_global_ipv6(ip: str) -> bool:
    """True for an IPv6 address of global scope: one a host can be reached at from anywhere,
    firewall permitting (not loopback, link-local, unique local ``fc00::/7``, multicast,
    unspecified or IPv4-mapped). By scope, not by registry: the documentation prefix
    ``2001:db8::/32`` counts, as the simulated internet and the lab use it."""
    parsed = ipaddress.ip_address(ip)
    if not isinstance(parsed, ipaddress.IPv6Address):
        return False
    return not (
        parsed.is_loopback
        or parsed.is_link_local
        or parsed.is_multicast
        or parsed.is_unspecified
        or parsed.is_site_local
        or parsed.ipv4_mapped is not None
        or parsed in _UNIQUE_LOCAL
    )


def source_prefix(host: str) -> str:
    """The source a host's traffic is accounted to by every per-source limit: an IPv4 address
    unchanged (also when it arrives IPv4-mapped, ``::ffff:192.0.2.7``), or the IPv6 /64 it lies
    in as ``"2001:db8:1:2::/64"`` (a host owns a whole /64, so it is one source).

    ``host`` is an address as a socket reports it; the IPv4 case, the common one on a hot path,
    is returned as it is."""
    if ":" not in host:
        return host
    ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    mapped = ip.ipv4_mapped
    if mapped is not None:
        return str(mapped)
    return f"{ipaddress.IPv6Address(int(ip) >> 64 << 64)}/64"  # as IPv6Network's str, 2x faster
