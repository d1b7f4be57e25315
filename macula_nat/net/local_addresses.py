"""Discovery of this machine's own IP addresses, for :class:`~macula_nat.net.real.RealUdpStack`.

Only reads kernel tables (Linux ``/proc/net/fib_trie`` and ``/proc/net/if_inet6``); it sends
nothing and does no DNS. Where those tables are missing it reports loopback only, and the caller
should pass its addresses to ``RealUdpStack`` explicitly. Link-local IPv6 addresses are left out:
they are unusable without a scope id, which :data:`~macula_nat.net.address.Address` does not
carry.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

logger = logging.getLogger(__name__)

_FIB_TRIE = Path("/proc/net/fib_trie")
_IF_INET6 = Path("/proc/net/if_inet6")
_IPV6_SCOPE_LINK = 0x20


def parse_fib_trie(text: str) -> list[str]:
    """IPv4 addresses marked ``/32 host LOCAL`` in a ``/proc/net/fib_trie`` dump, in order."""
    found: list[str] = []
    leaf: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("|--"):
            leaf = stripped[3:].strip()
        elif stripped == "/32 host LOCAL" and leaf is not None and leaf not in found:
            found.append(leaf)
    return found


def parse_if_inet6(text: str) -> list[str]:
    """Non-link-local IPv6 addresses in a ``/proc/net/if_inet6`` dump, in order."""
    found: list[str] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4 or len(fields[0]) != 32:
            continue
        if int(fields[3], 16) == _IPV6_SCOPE_LINK:
            continue
        ip = str(ipaddress.IPv6Address(int(fields[0], 16)))
        if ip not in found:
            found.append(ip)
    return found


def _order(addresses: list[str]) -> tuple[str, ...]:
    """IPv4 before IPv6, loopback last, otherwise in discovery order."""

    def key(ip: str) -> tuple[bool, int]:
        parsed = ipaddress.ip_address(ip)
        return parsed.is_loopback, parsed.version

    return tuple(sorted(dict.fromkeys(addresses), key=key))


def discover_local_addresses() -> tuple[str, ...]:
    """This machine's IP addresses: non-loopback first, IPv4 before IPv6."""
    try:
        found = parse_fib_trie(_FIB_TRIE.read_text()) + parse_if_inet6(_IF_INET6.read_text())
    except OSError:
        logger.debug("no /proc/net address tables; reporting loopback only")
        found = []
    return _order(found or ["127.0.0.1"])
