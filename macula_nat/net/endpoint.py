"""The UDP interface every layer above ``net`` is written against.

Two implementations exist: :mod:`macula_nat.net.real` (``trio.socket``) and
:mod:`macula_nat.net.sim` (a simulated internet with NAT boxes). They are abstract base classes
rather than Protocols because Trio's own resource interfaces (``trio.abc.AsyncResource``,
``trio.abc.Channel``) are ABCs: the shared parts (``aclose``, ``async with``) are written once
here, and a class that forgets a method fails at its definition, not at a distant call site.

Behaviour both implementations keep (the tests run the same cases against both):

- a datagram is a whole message: one ``send_to`` arrives as one ``receive_from`` or not at all;
- ``send_to`` of more than :data:`MAX_DATAGRAM_SIZE` bytes raises ValueError, as does a malformed
  address or one of the other IP version than the endpoint's (a dual-stack endpoint takes both);
- a send to an address nobody listens on, or that has no route, is silently lost;
- ``send_to`` / ``receive_from`` on a closed endpoint raise ``trio.ClosedResourceError``, and a
  ``receive_from`` blocked when the endpoint is closed raises it too;
- binding an address and port already bound raises ``OSError(EADDRINUSE)``; binding an IP the
  stack does not own raises ``OSError(EADDRNOTAVAIL)``.

Beside each awaited operation there is one that never waits, as Trio pairs ``X`` with
``X_nowait``: ``send_to_nowait`` raises ``trio.WouldBlock`` when the datagram cannot leave now
(the kernel's send buffer is full), and ``receive_from_nowait`` when nothing is waiting.
``send_batch_nowait`` sends a run of datagrams to one address as far as they leave without
waiting (a QUIC output step's datagrams: one system call for many where the kernel can).
``receive_batch`` waits once and returns every datagram already waiting, up to a bound: a busy
reader then pays one scheduler round per batch instead of one per datagram, which is what made
a QUIC transfer or a relay cost twice the CPU of the simplest loop doing the same job (issue 14).
An endpoint that cannot tell whether a send would wait (the defaults here) says it would, so a
caller written as "try ``send_to_nowait``, on ``WouldBlock`` await ``send_to``" is correct on
every endpoint and fast on those that know.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Final

import trio

from macula_nat.net.address import ANY_IPV4, ANY_IPV6, Address, ip_version
from macula_nat.net.stream import StreamListener

MAX_DATAGRAM_SIZE = 65507
"""Largest UDP payload over IPv4 (65535 - 20 byte IP header - 8 byte UDP header)."""

READ_BATCH: Final = 512
"""Datagrams :meth:`UdpEndpoint.receive_batch` returns at most by default: enough that a busy
reader's scheduler rounds vanish in its work, few enough that one batch never starves the
reader's other duties (timers, sends) for long."""


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

    @property
    def ip_versions(self) -> frozenset[int]:
        """The IP versions this endpoint sends to: its own address's, or both (dual stack)."""
        return frozenset((ip_version(self.local_address[0]),))

    @abstractmethod
    async def send_to(self, data: bytes, address: Address) -> None:
        """Send one datagram; delivery is not guaranteed."""

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        """Send one datagram if it can leave without waiting, else raise ``trio.WouldBlock``
        (nothing sent). Raises like :meth:`send_to` otherwise. The default cannot tell, so it
        always raises ``WouldBlock``: callers fall back to :meth:`send_to`."""
        raise trio.WouldBlock

    def send_batch_nowait(self, datagrams: Sequence[bytes], address: Address) -> int:
        """Send ``datagrams`` to ``address``, in order, as far as they can leave without
        waiting; return how many left (0: the first would have waited). The caller sends the
        rest later (``send_to`` waits for room). Raises like :meth:`send_to_nowait` otherwise.
        This default sends them one by one; a real socket hands runs of them to the kernel in
        one call (UDP GSO, :mod:`macula_nat.net.segments`)."""
        sent = 0
        for data in datagrams:
            try:
                self.send_to_nowait(data, address)
            except trio.WouldBlock:
                break
            sent += 1
        return sent

    @abstractmethod
    async def receive_from(self) -> tuple[bytes, Address]:
        """Wait for the next datagram; return its payload and source address."""

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        """The next datagram if one is waiting, else raise ``trio.WouldBlock``. The default
        never knows of one (so :meth:`receive_batch` returns one datagram at a time)."""
        raise trio.WouldBlock

    async def receive_batch(self, max_datagrams: int = READ_BATCH) -> list[tuple[bytes, Address]]:
        """Wait for the next datagram; return it and those already waiting behind it, in
        arrival order, at most ``max_datagrams`` in all (at least one)."""
        if max_datagrams < 1:
            raise ValueError(f"max_datagrams must be at least 1, not {max_datagrams}")
        batch = [await self.receive_from()]
        receive_nowait = self.receive_from_nowait
        while len(batch) < max_datagrams:
            try:
                batch.append(receive_nowait())
            except trio.WouldBlock:
                break
        return batch

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
    async def bind(
        self, address: Address = (ANY_IPV4, 0), *, dual_stack: bool = False
    ) -> UdpEndpoint:
        """Bind a new endpoint; port 0 picks a free ephemeral port.

        ``dual_stack`` (only with the IPv6 wildcard ``::``) binds one endpoint that sends to and
        receives from both IP versions, as a socket with ``IPV6_V6ONLY`` off does: IPv4 peers
        appear as plain IPv4 addresses (never ``::ffff:a.b.c.d``), so addresses compare and
        count per source the same as on an IPv4 endpoint. The port is taken in both versions."""

    async def connect_stream(self, address: Address) -> tuple[trio.abc.Stream, Address]:
        """A TCP connection to ``address`` and its local address (:mod:`.stream`). A stack
        without streams raises ``OSError(EPROTONOSUPPORT)``, as does this default."""
        await trio.lowlevel.checkpoint()
        raise OSError(errno.EPROTONOSUPPORT, f"{type(self).__name__} has no TCP")

    async def listen_stream(self, address: Address, *, dual_stack: bool = False) -> StreamListener:
        """Listen for TCP connections at ``address`` (port 0: a free one); ``dual_stack`` (only
        with ``::``) for both IP versions at once, IPv4 peers named by plain IPv4 addresses, as
        :meth:`bind`'s. A stack without streams raises ``OSError(EPROTONOSUPPORT)``, as does
        this default."""
        await trio.lowlevel.checkpoint()
        raise OSError(errno.EPROTONOSUPPORT, f"{type(self).__name__} has no TCP")


def check_dual_stack(ip: str) -> None:
    """Raise ValueError unless ``ip`` (normalised) is the IPv6 wildcard a dual-stack endpoint
    binds: an IPv4 socket cannot carry IPv6, and a specific IPv6 address has no IPv4 side."""
    if ip != ANY_IPV6:
        raise ValueError(f"a dual-stack endpoint binds the IPv6 wildcard '::', not {ip!r}")
