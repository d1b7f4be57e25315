"""A UDP endpoint bound on a simulated host."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from macula_nat.net.address import Address, destination_address, ip_version
from macula_nat.net.endpoint import UdpEndpoint, check_datagram_size

if TYPE_CHECKING:
    from macula_nat.net.sim.host import SimHost

DEFAULT_SEND_BUFFER = 256
"""Datagrams a simulated endpoint sends without waiting before ``send_to_nowait`` would block."""

logger = logging.getLogger(__name__)

_BOTH: Final = frozenset((4, 6))
_REPLY_FROM: Final = 4096
"""Peers a dual-stack endpoint remembers the local address of (cleared when full)."""


class SimEndpoint(UdpEndpoint):
    """Bound on a :class:`~macula_nat.net.sim.host.SimHost`.

    Its receive buffer holds ``receive_buffer`` datagrams; datagrams arriving when it is full
    are dropped, like a socket's.

    Its send buffer holds ``send_buffer`` datagrams sent with :meth:`send_to_nowait` (they
    leave at once; the count is what a kernel would still hold). It empties whenever the
    endpoint's user waits on the endpoint (any awaited send or receive), as a kernel's drains
    while its user sleeps; until then, once full, ``send_to_nowait`` raises
    ``trio.WouldBlock``. So code that never waits cannot send without bound, and its fallback
    to the awaited :meth:`send_to` runs under the simulator too.

    A dual-stack endpoint (on the wildcard) sends to a peer from the address that peer's
    latest datagram came to, as a real one does with ``IPV6_PKTINFO``; to others from the
    host's choice.
    """

    def __init__(
        self,
        host: SimHost,
        local_address: Address,
        receive_buffer: int,
        send_buffer: int = DEFAULT_SEND_BUFFER,
        *,
        dual_stack: bool = False,
    ) -> None:
        if send_buffer < 1:
            raise ValueError(f"send_buffer must be >= 1, not {send_buffer!r}")
        self._host = host
        self._local_address = local_address
        self._version = ip_version(local_address[0])
        self._dual = dual_stack
        self._reply_from: dict[Address, str] = {}
        """A dual-stack endpoint's peers -> the local IP their latest datagram came to."""
        self._closed = False
        self._send_buffer = send_buffer
        self._unsent = 0
        """Datagrams sent without waiting since the endpoint's user last waited on it."""
        self._inbox_in, self._inbox = trio.open_memory_channel[tuple[bytes, Address]](
            receive_buffer
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SimEndpoint {self._host.name} {self._local_address} {state}>"

    @property
    def local_address(self) -> Address:
        return self._local_address

    @property
    def ip_versions(self) -> frozenset[int]:
        return _BOTH if self._dual else frozenset((self._version,))

    async def send_to(self, data: bytes, address: Address) -> None:
        destination = self._checked_destination(data, address)
        await trio.lowlevel.checkpoint_if_cancelled()
        self._unsent = 0
        self._host._send(self._source_for(destination), bytes(data), destination)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        destination = self._checked_destination(data, address)
        if self._unsent >= self._send_buffer:
            raise trio.WouldBlock
        self._unsent += 1
        self._host._send(self._source_for(destination), bytes(data), destination)

    def _source_for(self, destination: Address) -> Address:
        ip = self._reply_from.get(destination) if self._dual else None
        return self._local_address if ip is None else (ip, self._local_address[1])

    def _checked_destination(self, data: bytes, address: Address) -> Address:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        check_datagram_size(data)
        destination = destination_address(address)
        if ip_version(destination[0]) != self._version and not self._dual:
            raise ValueError(f"{self._local_address} cannot send to {destination}")
        return destination

    async def receive_from(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        self._unsent = 0
        return await self._inbox.receive()

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("endpoint is closed")
        return self._inbox.receive_nowait()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._host._unbind(self._local_address, dual_stack=self._dual)
        self._inbox.close()  # first: a blocked receive_from must see Closed, not EndOfChannel
        self._inbox_in.close()

    def _deliver(self, payload: bytes, source: Address, local_ip: str) -> bool:
        """Queue an arrived datagram (sent to ``local_ip``); False if the receive buffer is
        full."""
        try:
            self._inbox_in.send_nowait((payload, source))
        except trio.WouldBlock:
            return False
        if self._dual:
            if source not in self._reply_from and len(self._reply_from) >= _REPLY_FROM:
                self._reply_from.clear()
            self._reply_from[source] = local_ip
        return True
