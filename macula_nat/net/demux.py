"""One UDP socket shared by STUN, relay frames and QUIC, demultiplexed by the first byte.

A node keeps one socket so that every protocol it speaks rides the same NAT mapping: the address
an observer reports over STUN is the one the relay and QUIC peers see. :func:`open_shared_endpoint`
owns that socket, reads it in one task and routes each datagram (RFC 7983 style) to a
:class:`ProtocolView`, itself a :class:`~macula_nat.net.endpoint.UdpEndpoint`, so code written
against an endpoint (``StunClient``, ``RelayClient``, QUIC) runs on a view unchanged:

========  ================  ==========================================================
protocol  first byte        notes
========  ================  ==========================================================
STUN      0-3               and the header must pass :func:`~macula_nat.wire.stun.is_stun`
RELAY     4-15              :data:`~macula_nat.relay.frames.FIRST_BYTES`
PUNCH     16-19             hole-punching probes (:mod:`~macula_nat.traversal.punch_wire`)
QUIC      64-127, 192-255   short and long headers
========  ================  ==========================================================

Anything else (empty datagrams, 20-63, 128-191, a 0-3 byte that is not a STUN header) is
dropped and counted as unclassified.

Each view buffers at most ``buffer`` datagrams. When it is full the arriving datagram is dropped
(drop-newest, as a socket's receive buffer does) and counted in that view's ``dropped``; the
reader never waits, so a slow view costs the others nothing. Datagrams for a closed view are
dropped and counted the same way.

Sends from any view go straight out of the shared socket (``send_to_nowait`` too, so a view
is as cheap to send on as the socket). A view closes on its own (its pending
and later calls raise ``trio.ClosedResourceError``; the socket and the other views go on);
closing the shared endpoint, leaving the ``async with`` block, or the socket closing under it
closes every view.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio

from macula_nat.net.address import Address
from macula_nat.net.endpoint import READ_BATCH, UdpEndpoint
from macula_nat.wire.stun import is_stun

__all__ = [
    "DEFAULT_VIEW_BUFFER",
    "ProtocolView",
    "SharedEndpoint",
    "SharedEndpointStatistics",
    "Traffic",
    "ViewStatistics",
    "classify",
    "open_shared_endpoint",
]

DEFAULT_VIEW_BUFFER: Final = 256
"""Datagrams each view holds before it drops new arrivals."""


class Traffic(enum.Enum):
    """A class of datagram on the shared socket, told apart by its first byte."""

    STUN = "stun"
    RELAY = "relay"
    PUNCH = "punch"
    QUIC = "quic"


def _first_byte_table() -> tuple[Traffic | None, ...]:
    table: list[Traffic | None] = [None] * 256
    for byte in range(256):
        if byte <= 3:
            table[byte] = Traffic.STUN
        elif byte <= 15:
            table[byte] = Traffic.RELAY
        elif byte <= 19:
            table[byte] = Traffic.PUNCH
        elif 64 <= byte <= 127 or byte >= 192:
            table[byte] = Traffic.QUIC
    return tuple(table)


_BY_FIRST_BYTE: Final = _first_byte_table()


def classify(data: bytes) -> Traffic | None:
    """The protocol ``data`` belongs to, or None if it belongs to none (see the module table)."""
    if not data:
        return None
    protocol = _BY_FIRST_BYTE[data[0]]
    if protocol is Traffic.STUN and not is_stun(data):
        return None
    return protocol


@attrs.frozen
class ViewStatistics:
    """Counters of one view."""

    received: int
    """Datagrams of this protocol that arrived on the socket."""
    dropped: int
    """Of those, dropped: the view's buffer was full or the view was closed."""
    sent: int
    """Datagrams sent from the view."""
    queued: int
    """Datagrams waiting in the view's buffer now."""


@attrs.frozen
class SharedEndpointStatistics:
    """Counters of a shared endpoint: one record per view, and what matched no view."""

    stun: ViewStatistics
    relay: ViewStatistics
    punch: ViewStatistics
    quic: ViewStatistics
    unclassified: int
    """Datagrams that arrived and matched no protocol; dropped."""

    def __getitem__(self, protocol: Traffic) -> ViewStatistics:
        result: ViewStatistics = getattr(self, protocol.value)
        return result


@attrs.define
class _Counters:
    received: int = 0
    dropped: int = 0
    sent: int = 0


class ProtocolView(UdpEndpoint):
    """One protocol's side of a :class:`SharedEndpoint`: a whole UDP endpoint of its own."""

    __slots__ = ("_closed", "_counters", "_inbox", "_inbox_in", "_protocol", "_shared")

    def __init__(self, shared: SharedEndpoint, protocol: Traffic, buffer: int) -> None:
        self._shared = shared
        self._protocol = protocol
        self._closed = False
        self._counters = _Counters()
        self._inbox_in, self._inbox = trio.open_memory_channel[tuple[bytes, Address]](buffer)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<ProtocolView {self._protocol.name} {self.local_address} {state}>"

    @property
    def protocol(self) -> Traffic:
        return self._protocol

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def local_address(self) -> Address:
        return self._shared.local_address

    @property
    def ip_versions(self) -> frozenset[int]:
        return self._shared.ip_versions

    async def send_to(self, data: bytes, address: Address) -> None:
        if self._closed:
            raise trio.ClosedResourceError("view is closed")
        await self._shared.endpoint.send_to(data, address)
        self._counters.sent += 1

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        if self._closed:
            raise trio.ClosedResourceError("view is closed")
        self._shared.endpoint.send_to_nowait(data, address)
        self._counters.sent += 1

    def send_batch_nowait(self, datagrams: Sequence[bytes], address: Address) -> int:
        if self._closed:
            raise trio.ClosedResourceError("view is closed")
        sent = self._shared.endpoint.send_batch_nowait(datagrams, address)
        self._counters.sent += sent
        return sent

    async def receive_from(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("view is closed")
        return await self._inbox.receive()

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("view is closed")
        return self._inbox.receive_nowait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._inbox.close()  # first: a blocked receive_from must see Closed, not EndOfChannel
        self._inbox_in.close()

    def _deliver(self, data: bytes, source: Address) -> None:
        """Queue an arrived datagram, or drop and count it; never waits."""
        self._counters.received += 1
        if self._closed:
            self._counters.dropped += 1
            return
        try:
            self._inbox_in.send_nowait((data, source))
        except trio.WouldBlock:
            self._counters.dropped += 1

    def _statistics(self) -> ViewStatistics:
        return ViewStatistics(
            received=self._counters.received,
            dropped=self._counters.dropped,
            sent=self._counters.sent,
            queued=0 if self._closed else self._inbox.statistics().current_buffer_used,
        )


def _buffer_sizes(buffer: int | Mapping[Traffic, int]) -> dict[Traffic, int]:
    if isinstance(buffer, int):
        sizes = dict.fromkeys(Traffic, buffer)
    else:
        sizes = {protocol: buffer.get(protocol, DEFAULT_VIEW_BUFFER) for protocol in Traffic}
    for protocol, size in sizes.items():
        if size < 1:
            raise ValueError(f"{protocol.name} view buffer must be at least 1, not {size}")
    return sizes


class SharedEndpoint:
    """Owns one UDP endpoint and routes what arrives on it to per-protocol views.

    Run it with :func:`open_shared_endpoint`; :meth:`view` hands out the views.
    """

    __slots__ = ("_batch", "_closed", "_endpoint", "_unclassified", "_views")

    def __init__(
        self, endpoint: UdpEndpoint, buffer: int | Mapping[Traffic, int] = DEFAULT_VIEW_BUFFER
    ) -> None:
        sizes = _buffer_sizes(buffer)
        self._batch = max(1, min(READ_BATCH, *sizes.values()) // 2)
        """Datagrams read at once: half what the smallest view holds. Trio runs every runnable
        task once per scheduler round, in any order, so the reader may take two batches before
        a view's consumer drains it; two halves fit, and a burst the socket's buffer would have
        held is not dropped at a view whose consumer drains it (``receive_batch``) each time."""
        self._endpoint = endpoint
        self._closed = False
        self._unclassified = 0
        self._views = {
            protocol: ProtocolView(self, protocol, sizes[protocol]) for protocol in Traffic
        }

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SharedEndpoint {self.local_address} {state}>"

    @property
    def endpoint(self) -> UdpEndpoint:
        """The shared socket."""
        return self._endpoint

    @property
    def local_address(self) -> Address:
        return self._endpoint.local_address

    @property
    def ip_versions(self) -> frozenset[int]:
        """The IP versions the shared socket reaches."""
        return self._endpoint.ip_versions

    @property
    def closed(self) -> bool:
        return self._closed

    def view(self, protocol: Traffic) -> ProtocolView:
        """The view of ``protocol``; the same object on every call, even once closed."""
        return self._views[protocol]

    def statistics(self) -> SharedEndpointStatistics:
        return SharedEndpointStatistics(
            stun=self._views[Traffic.STUN]._statistics(),
            relay=self._views[Traffic.RELAY]._statistics(),
            punch=self._views[Traffic.PUNCH]._statistics(),
            quic=self._views[Traffic.QUIC]._statistics(),
            unclassified=self._unclassified,
        )

    def dispatch(self, data: bytes, source: Address) -> Traffic | None:
        """Route one datagram to its view (or count it unclassified); return its protocol."""
        protocol = classify(data)
        if protocol is None:
            self._unclassified += 1
        else:
            self._views[protocol]._deliver(data, source)
        return protocol

    def close(self) -> None:
        """Close the socket and every view."""
        if self._closed:
            return
        self._closed = True
        for view in self._views.values():
            view.close()
        self._endpoint.close()

    async def aclose(self) -> None:
        """Close (see :meth:`close`), then checkpoint."""
        self.close()
        await trio.lowlevel.checkpoint()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Read the socket and route datagrams until it closes; then close every view.

        It reads in batches (:meth:`~macula_nat.net.endpoint.UdpEndpoint.receive_batch`) of at
        most half the smallest view's buffer: one scheduler round for all the datagrams
        waiting, each routed in arrival order."""
        task_status.started()
        receive_batch = self._endpoint.receive_batch
        dispatch = self.dispatch
        most = self._batch
        try:
            while True:
                try:
                    batch = await receive_batch(most)
                except trio.ClosedResourceError:
                    return
                for data, source in batch:
                    dispatch(data, source)
        finally:
            self.close()


@asynccontextmanager
async def open_shared_endpoint(
    endpoint: UdpEndpoint, *, buffer: int | Mapping[Traffic, int] = DEFAULT_VIEW_BUFFER
) -> AsyncIterator[SharedEndpoint]:
    """Share ``endpoint`` for the duration of the block; it is closed when the block ends.

    ``buffer`` is every view's buffer size, or a size per protocol (others get the default).
    """
    shared = SharedEndpoint(endpoint, buffer)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(shared.run)
            try:
                yield shared
            finally:
                shared.close()
                nursery.cancel_scope.cancel()
    finally:
        shared.close()
