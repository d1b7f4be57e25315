"""Where a DHT node joins: bootstrap hosts given by IP or by name, resolved when it joins.

The public Mainline DHT is joined through its well-known routers (:data:`PUBLIC_BOOTSTRAP`,
libtorrent's and Transmission's defaults); a private deployment names its gateways. A name is
resolved at each bootstrap (the routers' addresses change), by ``trio.socket.getaddrinfo``
unless a resolver is injected (tests resolve nothing on the Internet); a name that does not
resolve is logged and skipped, the other hosts still tried.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

import trio

from macula_nat.net.address import Address, normalise_address, normalise_ip

__all__ = [
    "PUBLIC",
    "PUBLIC_BOOTSTRAP",
    "Resolver",
    "bootstrap_hosts",
    "resolve",
    "resolve_hosts",
]

logger = logging.getLogger(__name__)

HostPort = tuple[str, int]
Resolver = Callable[[str, int], Awaitable[list[Address]]]
"""Resolves a host name and port to the addresses to try (empty or OSError: none)."""

PUBLIC_BOOTSTRAP: Final[tuple[HostPort, ...]] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
)
"""The public Mainline DHT's routers: ``DhtConfig(bootstrap=["public"])``."""
PUBLIC: Final = "public"
RESOLVE_TIMEOUT: Final = 5.0
"""Seconds all names of one bootstrap may take to resolve."""
_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def _host(host: str) -> str:
    """An IP literal in canonical form, or a DNS name as given; ValueError for neither."""
    try:
        return normalise_ip(host)
    except ValueError:
        pass
    name = host.removesuffix(".")
    if not 0 < len(name) <= 253 or not all(_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValueError(f"{host!r} is neither an IP address nor a host name")
    return name


def bootstrap_hosts(hosts: Iterable[HostPort | list[Any] | str]) -> tuple[HostPort, ...]:
    """``(host, port)`` pairs, host an IP or a DNS name, as a tuple (an attrs converter); the
    word ``"public"`` stands for :data:`PUBLIC_BOOTSTRAP`."""
    checked: list[HostPort] = []
    for pair in hosts:
        if pair == PUBLIC:
            checked += PUBLIC_BOOTSTRAP
            continue
        if not isinstance(pair, tuple | list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise ValueError(f"a bootstrap host is (host, port), not {pair!r}")
        host, port = pair
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise ValueError(f"port must be an int in 1..65535, not {port!r}")
        checked.append((_host(host), port))
    return tuple(checked)


async def resolve(host: str, port: int) -> list[Address]:
    """``host``'s UDP addresses by the system resolver (``trio.socket.getaddrinfo``)."""
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    return [normalise_address((str(info[4][0]), port)) for info in infos]


async def resolve_hosts(
    hosts: Iterable[HostPort], resolver: Resolver, *, family: int | None = None
) -> list[Address]:
    """The addresses of ``hosts`` in order, names resolved at once with ``resolver`` (within
    `RESOLVE_TIMEOUT`), duplicates dropped; with ``family`` (4 or 6), only that IP version."""
    hosts = list(hosts)
    found: list[list[Address]] = [[] for _ in hosts]

    async def one(index: int, host: str, port: int) -> None:
        try:
            found[index] = list(await resolver(host, port))
        except OSError as exc:
            logger.warning("bootstrap host %s did not resolve: %s", host, exc)

    with trio.move_on_after(RESOLVE_TIMEOUT) as scope:
        async with trio.open_nursery() as nursery:
            for index, (host, port) in enumerate(hosts):
                try:
                    found[index] = [normalise_address((host, port))]
                except ValueError:  # a name
                    nursery.start_soon(one, index, host, port)
    if scope.cancelled_caught:
        logger.warning("bootstrap names took over %s s to resolve; going on", RESOLVE_TIMEOUT)
    addresses = [address for group in found for address in group]
    if family is not None:
        addresses = [a for a in addresses if ipaddress.ip_address(a[0]).version == family]
    return list(dict.fromkeys(addresses))
