"""A relayed session as a node sees it: opaque datagrams to and from one peer, via the relay."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import trio

from macula_nat.identity import NodeId

from .errors import SessionClosed
from .frames import Reason

if TYPE_CHECKING:
    from .client import RelayClient

__all__ = ["RelaySession", "SessionStatistics"]

logger = logging.getLogger(__name__)


@attrs.frozen
class SessionStatistics:
    sent: int
    received: int
    dropped: int
    """Datagrams that arrived with the receive buffer full, or could not be sent (the client
    was between registrations)."""


class RelaySession(trio.abc.AsyncResource):
    """Session ``id`` with ``peer``; ``initiated`` if this node asked for it.

    :meth:`send` and :meth:`receive` move whole datagrams, with UDP's promises (none about
    delivery or order); the payload should already be end-to-end encrypted, the relay only
    authenticates each hop. At most ``buffer`` received datagrams wait; more are dropped. Once
    the session ends, :meth:`receive` drains what is buffered and then raises
    :class:`SessionClosed` with the reason; :meth:`send` raises it at once.
    """

    def __init__(
        self, client: RelayClient, id: int, peer: NodeId, *, initiated: bool, buffer: int
    ) -> None:
        self.id = id
        self.peer = peer
        self.initiated = initiated
        self._client = client
        self._inbox, self._outlet = trio.open_memory_channel[bytes](buffer)
        self._reason: Reason | None = None
        self._sent = 0
        self._received = 0
        self._dropped = 0

    def __repr__(self) -> str:
        direction = "to" if self.initiated else "from"
        state = "open" if self._reason is None else self._reason.label
        return f"<RelaySession {self.id} {direction} {self.peer.short()} {state}>"

    @property
    def closed_reason(self) -> Reason | None:
        """None while open; afterwards why it ended (``normal``: closed by a peer or by us)."""
        return self._reason

    async def send(self, payload: bytes) -> None:
        """Send one datagram to the peer (at most ``frames.MAX_PAYLOAD`` bytes)."""
        if self._reason is not None:
            raise SessionClosed(self.id, self._reason)
        if await self._client._send_data(self.id, payload):
            self._sent += 1
        else:
            self._dropped += 1

    async def receive(self) -> bytes:
        """The next datagram from the peer."""
        try:
            payload = await self._outlet.receive()
        except trio.EndOfChannel:
            raise SessionClosed(self.id, self._reason or Reason.NORMAL) from None
        return payload

    def __aiter__(self) -> RelaySession:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.receive()
        except SessionClosed:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """End the session (the peer hears ``normal``); a no-op once it has ended."""
        if self._reason is None:
            await self._client._close_session(self)
        await trio.lowlevel.checkpoint()

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(self._sent, self._received, self._dropped)

    def _deliver(self, payload: bytes) -> None:
        try:
            self._inbox.send_nowait(payload)
        except (trio.WouldBlock, trio.ClosedResourceError):
            self._dropped += 1
        else:
            self._received += 1

    def _move_to(self, client: RelayClient) -> None:
        """Send and receive through ``client`` from now on (:meth:`RelayClient.adopt`)."""
        self._client = client

    def _end(self, reason: Reason) -> None:
        if self._reason is None:
            self._reason = reason
            self._inbox.close()
            logger.debug("%r ended", self)
