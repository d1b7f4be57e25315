"""PeerLink: the one peer a connection talks to, over whichever path works now.

A connection between two nodes may start over a relay and move to a direct path while traffic
flows, and fall back when the direct path dies. QUIC does not allow the server's address to
change under the client, so the change happens below QUIC: the connection sees a
:class:`PeerLink` as its UDP endpoint and the peer at one fixed :data:`LINK_ADDRESS` for its whole
life; the link sends each datagram over the current path and delivers what arrives on any of its
paths. Nothing is lost in a switch that QUIC would not retransmit anyway, and the QUIC library never
sees an address change, so it never stalls on path validation.

Paths are adopted only after the hole-punching layer proved them (a fresh, single-use challenge
sent to that address answered from it, :mod:`macula_nat.traversal.prover`); the link trusts its
callers on that.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from typing import Final

import attrs
import trio
from trio_util import AsyncValue

from macula_nat.identity import NodeId
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpEndpoint, check_datagram_size
from macula_nat.relay import RelaySession, SessionClosed

__all__ = ["LINK_ADDRESS", "ConnectionMethod", "DirectPath", "LinkStatistics", "PeerLink"]

logger = logging.getLogger(__name__)

LINK_ADDRESS: Final[Address] = ("0.0.0.0", 0)
"""The peer's address as the QUIC connection on a link sees it, whatever the real path."""


class ConnectionMethod(enum.StrEnum):
    """How a connection's datagrams travel now."""

    DIRECT = "direct"
    """Straight to the peer's published address, no punching needed."""
    PUNCHED = "punched"
    """Straight to the peer, through a hole punched in the NATs."""
    RELAYED = "relayed"
    """Through a relay session."""


@attrs.frozen
class DirectPath:
    """A proven direct path: datagrams leave through ``endpoint`` towards ``address``."""

    endpoint: UdpEndpoint = attrs.field(eq=False)
    address: Address
    method: ConnectionMethod = ConnectionMethod.PUNCHED


@attrs.frozen
class LinkStatistics:
    sent_direct: int
    sent_relayed: int
    received_direct: int
    received_relayed: int
    dropped: int
    """Datagrams that arrived with the inbox full, or found no path to leave by."""
    upgrades: int
    """Switches from the relay to a direct path."""
    fallbacks: int
    """Switches from a direct path back to the relay."""


class PeerLink(UdpEndpoint):
    """The datagram path to ``peer`` (None until a direct caller authenticates): a relay
    session, a direct path, or both.

    ``method`` changes as paths come and go (``await link.method.wait_transition()``). Sends go
    direct when there is a direct path, else through the relay; with neither, the link is
    closed and sends raise ``trio.ClosedResourceError``. Run :meth:`run` in a nursery while a
    relay session is attached (it reads the session).
    """

    def __init__(
        self,
        peer: NodeId | None,
        local_address: Address,
        *,
        relay: RelaySession | None = None,
        direct: DirectPath | None = None,
        buffer: int = 512,
    ) -> None:
        if relay is None and direct is None:
            raise ValueError("a link needs a relay session or a direct path")
        self.peer = peer
        self._local_address = local_address
        self._relay = relay
        self._direct = direct
        self._relay_changed = trio.Event()
        self._inbox_in, self._inbox = trio.open_memory_channel[bytes](buffer)
        self._closed = False
        self._listeners: list[Callable[[], None]] = []
        self.method: AsyncValue[ConnectionMethod] = AsyncValue(self._current_method())
        """How datagrams travel now; a new value each time the path changes."""
        self._sent_direct = self._sent_relayed = 0
        self._received_direct = self._received_relayed = 0
        self._dropped = self._upgrades = self._fallbacks = 0

    def __repr__(self) -> str:
        peer = "?" if self.peer is None else self.peer.short()
        return f"<PeerLink {peer} {self.method.value}>"

    # -- paths -------------------------------------------------------------------------------

    @property
    def relay(self) -> RelaySession | None:
        return self._relay

    @property
    def direct(self) -> DirectPath | None:
        return self._direct

    @property
    def remote_address(self) -> Address | None:
        """Where datagrams go now: the direct address, or None while relayed."""
        return None if self._direct is None else self._direct.address

    def use_direct(self, path: DirectPath) -> None:
        """Send over ``path`` from now on (a proven direct path)."""
        if self._closed:
            return
        if self._direct is None:
            self._upgrades += 1
        self._direct = path
        logger.info("%r: direct path to %s", self, path.address)
        self._update()

    def drop_direct(self) -> None:
        """The direct path died: go back to the relay (or close, without one)."""
        if self._direct is None:
            return
        self._direct = None
        logger.info("%r: direct path lost", self)
        if self._relay is None or self._relay.closed_reason is not None:
            self.close()
            return
        self._fallbacks += 1
        self._update()

    def attach_relay(self, session: RelaySession) -> None:
        """Use ``session`` as the relay path (replacing any previous one)."""
        self._relay = session
        self._relay_changed.set()
        self._relay_changed = trio.Event()
        self._update()

    def _current_method(self) -> ConnectionMethod:
        if self._direct is not None:
            return self._direct.method
        return ConnectionMethod.RELAYED

    def on_path_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (synchronously) after each change of path, and on closing."""
        self._listeners.append(listener)

    def _update(self) -> None:
        if self._closed:
            return
        self.method.value = self._current_method()
        for listener in self._listeners:
            listener()

    # -- the endpoint --------------------------------------------------------------------------

    @property
    def local_address(self) -> Address:
        return self._local_address

    async def send_to(self, data: bytes, address: Address) -> None:
        """Send to the peer (``address`` is :data:`LINK_ADDRESS`) over the current path."""
        check_datagram_size(data)
        if self._closed:
            raise trio.ClosedResourceError("link closed")
        direct = self._direct
        if direct is not None:
            try:
                await direct.endpoint.send_to(data, direct.address)
            except trio.ClosedResourceError:
                self.drop_direct()
                await self.send_to(data, address)
                return
            self._sent_direct += 1
            return
        relay = self._relay
        if relay is None:
            self._dropped += 1
            await trio.lowlevel.checkpoint()
            return
        try:
            await relay.send(data)
        except SessionClosed as exc:
            logger.info("%r: relay session ended: %s", self, exc)
            if self._relay is relay:
                self._relay = None
            if self._direct is not None:  # adopted while we were sending
                await self.send_to(data, address)
                return
            self.close()
            raise trio.ClosedResourceError("the relay session to the peer ended") from exc
        self._sent_relayed += 1

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        """Send over the direct path if the datagram can leave now; else (relayed, or the
        socket's buffer full) raise ``trio.WouldBlock`` and let :meth:`send_to` do it."""
        check_datagram_size(data)
        if self._closed:
            raise trio.ClosedResourceError("link closed")
        direct = self._direct
        if direct is None:
            raise trio.WouldBlock
        try:
            direct.endpoint.send_to_nowait(data, direct.address)
        except trio.ClosedResourceError:
            raise trio.WouldBlock from None  # send_to drops the path and falls back
        self._sent_direct += 1

    def send_batch_nowait(self, datagrams: Sequence[bytes], address: Address) -> int:
        """:meth:`send_to_nowait` for a run of datagrams: over the direct path, as many as
        can leave now (one call where the socket can); 0 while relayed."""
        for data in datagrams:
            check_datagram_size(data)
        if self._closed:
            raise trio.ClosedResourceError("link closed")
        direct = self._direct
        if direct is None:
            return 0
        try:
            sent = direct.endpoint.send_batch_nowait(datagrams, direct.address)
        except trio.ClosedResourceError:
            return 0  # send_to drops the path and falls back
        self._sent_direct += sent
        return sent

    async def receive_from(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("link closed")
        try:
            data = await self._inbox.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError("link closed") from None
        return data, LINK_ADDRESS

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        if self._closed:
            raise trio.ClosedResourceError("link closed")
        try:
            data = self._inbox.receive_nowait()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError("link closed") from None
        return data, LINK_ADDRESS

    def close(self) -> None:
        """Close for good; ``closed`` becomes True (``method`` keeps its last value)."""
        if self._closed:
            return
        self._closed = True
        self._inbox_in.close()
        self._relay_changed.set()
        for listener in self._listeners:
            listener()

    @property
    def closed(self) -> bool:
        return self._closed

    def deliver_direct(self, data: bytes) -> None:
        """A datagram that arrived from the direct path's address (or a proven candidate)."""
        self._received_direct += 1
        self._deliver(data)

    def _deliver(self, data: bytes) -> None:
        try:
            self._inbox_in.send_nowait(data)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._dropped += 1

    async def run(self) -> None:
        """Read the relay session (and each that replaces it) until the link closes."""
        while not self._closed:
            relay = self._relay
            if relay is None:
                await self._relay_changed.wait()
                continue
            try:
                async for data in relay:
                    self._received_relayed += 1
                    self._deliver(data)
            except trio.ClosedResourceError:
                pass
            if self._relay is relay:
                logger.info("%r: relay session ended", self)
                self._relay = None
                if self._direct is None:
                    self.close()

    def statistics(self) -> LinkStatistics:
        return LinkStatistics(
            sent_direct=self._sent_direct,
            sent_relayed=self._sent_relayed,
            received_direct=self._received_direct,
            received_relayed=self._received_relayed,
            dropped=self._dropped,
            upgrades=self._upgrades,
            fallbacks=self._fallbacks,
        )
