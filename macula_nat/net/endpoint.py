"""The UDP interface every layer above ``net`` is written against.

Two implementations exist: :mod:`macula_nat.net.real` (``trio.socket``) and
:mod:`macula_nat.net.sim` (a simulated internet with NAT boxes). They are abstract base classes
rather than Protocols because Trio's own resource interfaces (``trio.abc.AsyncResource``,
``trio.abc.Channel``) are ABCs: the shared parts (``aclose``, ``async with``) are written once
here, and a class that forgets a method fails at its definition, not at a distant call site.

Behaviour both implementations keep (the tests run the same cases against both):

- a datagram is a whole message: one ``send_to`` arrives as one ``receive_from`` or not at all;
- ``send_to`` of more than :data:`MAX_DATAGRAM_SIZE` bytes raises ValueError, as does a malformed
  address or one of the other IP version than the endpoint's;
- a send to an address nobody listens on, or that has no route, is silently lost;
- ``send_to`` / ``receive_from`` on a closed endpoint raise ``trio.ClosedResourceError``, and a
  ``receive_from`` blocked when the endpoint is closed raises it too;
- binding an address and port already bound raises ``OSError(EADDRINUSE)``; binding an IP the
  stack does not own raises ``OSError(EADDRNOTAVAIL)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import trio

from macula_nat.net.address import ANY_IPV4, Address

MAX_DATAGRAM_SIZE = 65507
"""Largest UDP payload over IPv4 (65535 - 20 byte IP header - 8 byte UDP header)."""


def check_datagram_size(data: bytes) -> None:
    """Raise ValueError for a payload no IPv4 UDP datagram can carry."""
    if len(data) > MAX_DATAGRAM_SIZE:
        raise ValueError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM_SIZE}")


class UdpEndpoint(trio.abc.AsyncResource):
    """A bound UDP socket: sends to and receives from any address of its IP version."""

    __slots__ = ()

    @property
    @abstractmethod
    def local_address(self) -> Address:
        """The address this endpoint is bound to (wildcard IP if bound to one)."""

    @abstractmethod
    async def send_to(self, data: bytes, address: Address) -> None:
        """Send one datagram; delivery is not guaranteed."""

    @abstractmethod
    async def receive_from(self) -> tuple[bytes, Address]:
        """Wait for the next datagram; return its payload and source address."""

    @abstractmethod
    def close(self) -> None:
        """Close now; pending and later operations raise ``trio.ClosedResourceError``."""

    async def aclose(self) -> None:
        """Close (see :meth:`close`), then checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()


class UdpStack(ABC):
    """A place that can bind UDP endpoints: the host's network stack, real or simulated."""

    __slots__ = ()

    @property
    @abstractmethod
    def addresses(self) -> tuple[str, ...]:
        """This stack's own IP addresses, the primary one first."""

    @abstractmethod
    async def bind(self, address: Address = (ANY_IPV4, 0)) -> UdpEndpoint:
        """Bind a new endpoint; port 0 picks a free ephemeral port."""
