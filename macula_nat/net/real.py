"""The interface on real sockets: ``trio.socket`` UDP, IPv4 and IPv6."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Sequence
from typing import Any

import trio

from macula_nat.net.address import (
    ANY_IPV4,
    Address,
    address_family,
    destination_address,
    ip_version,
    normalise_address,
    normalise_ip,
)
from macula_nat.net.endpoint import UdpEndpoint, UdpStack, check_datagram_size
from macula_nat.net.local_addresses import discover_local_addresses

logger = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
"""Larger than any UDP payload, so the kernel never truncates a datagram."""

_LOST_ERRNOS = frozenset(
    {
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        errno.ECONNREFUSED,
        errno.EPERM,
        errno.ENOBUFS,
    }
)
"""``sendto`` errors that mean "this datagram is lost", which UDP callers must expect anyway."""


def _address_from_socket(raw: object) -> Address:
    """Normalise a socket-module address (2-tuple for IPv4, 4-tuple for IPv6)."""
    if not isinstance(raw, tuple) or len(raw) < 2:
        raise ValueError(f"not an IP socket address: {raw!r}")
    return normalise_ip(str(raw[0]).split("%")[0]), int(raw[1])


def _received_address(raw: tuple[Any, ...]) -> Address:
    """A source address from ``recvfrom``: already canonical (the kernel formats it with
    ``inet_ntop``, as RFC 5952 asks), so only an IPv6 zone needs removing. Parsing it again
    cost about 15% of a busy observer's CPU."""
    ip: str = raw[0]
    if "%" in ip:
        ip = ip.split("%", 1)[0]
    return ip, raw[1]


_CHECKED_DESTINATIONS = 1024
"""Destinations an endpoint remembers as already validated (the set is cleared when full)."""


class RealUdpEndpoint(UdpEndpoint):
    """A bound ``trio.socket`` UDP socket."""

    __slots__ = ("_checked", "_closed", "_local_address", "_socket", "_version")

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self._socket = sock
        self._checked: set[Address] = set()
        self._local_address = _address_from_socket(sock.getsockname())
        self._version = ip_version(self._local_address[0])
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<RealUdpEndpoint {self._local_address} {state}>"

    @property
    def local_address(self) -> Address:
        return self._local_address

    async def send_to(self, data: bytes, address: Address) -> None:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        check_datagram_size(data)
        destination = self._checked_destination(address)
        try:
            await self._socket.sendto(data, destination)
        except OSError as error:
            if error.errno not in _LOST_ERRNOS:
                raise
            logger.debug("datagram to %s lost: %s", destination, error)

    def _checked_destination(self, address: Address) -> Address:
        if (
            type(address) is tuple
            and type(address[0]) is str
            and type(address[1]) is int
            and address in self._checked
        ):
            return address
        destination = destination_address(address)
        if ip_version(destination[0]) != self._version:
            raise ValueError(f"{self._local_address} cannot send to {destination}")
        if len(self._checked) >= _CHECKED_DESTINATIONS:
            self._checked.clear()
        self._checked.add(destination)
        return destination

    async def receive_from(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        data, source = await self._socket.recvfrom(_RECEIVE_SIZE)
        return data, _received_address(source)

    def close(self) -> None:
        self._closed = True
        self._socket.close()


class RealUdpStack(UdpStack):
    """This machine's network stack.

    ``addresses`` defaults to what the kernel reports (see
    :func:`~macula_nat.net.local_addresses.discover_local_addresses`); pass them to override.
    IPv6 endpoints are IPv6-only (``IPV6_V6ONLY``), as simulated ones are.
    """

    __slots__ = ("_addresses",)

    def __init__(self, addresses: Sequence[str] | None = None) -> None:
        found = discover_local_addresses() if addresses is None else addresses
        self._addresses = tuple(normalise_ip(ip) for ip in found)

    @property
    def addresses(self) -> tuple[str, ...]:
        return self._addresses

    async def bind(self, address: Address = (ANY_IPV4, 0)) -> RealUdpEndpoint:
        ip, port = normalise_address(address)
        family = address_family(ip)
        sock = trio.socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            await sock.bind((ip, port))
        except BaseException:
            sock.close()
            raise
        endpoint = RealUdpEndpoint(sock)
        logger.debug("bound %s", endpoint.local_address)
        return endpoint
