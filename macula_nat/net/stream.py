"""TCP beside UDP: the byte-stream half of a network stack, for relays over TCP/TLS.

A :class:`~macula_nat.net.endpoint.UdpStack` also opens streams
(:meth:`~macula_nat.net.endpoint.UdpStack.connect_stream`) and listens for them
(:meth:`~macula_nat.net.endpoint.UdpStack.listen_stream`): the real stack with the kernel's
TCP, the simulated internet with in-memory streams routed through its NAT boxes (which let TCP
pass where a UDP-blocking firewall drops datagrams). Only the relay over TCP/TLS uses them.
"""

from __future__ import annotations

from abc import abstractmethod

import trio

from macula_nat.net.address import Address

__all__ = ["StreamListener"]


class StreamListener(trio.abc.AsyncResource):
    """A listening stream socket: each :meth:`accept` is a connection and its peer's address."""

    __slots__ = ()

    @property
    @abstractmethod
    def local_address(self) -> Address:
        """Where it listens (port resolved)."""

    @abstractmethod
    async def accept(self) -> tuple[trio.abc.Stream, Address]:
        """The next connection and the address it comes from (as the network shows it)."""
