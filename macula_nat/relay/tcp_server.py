"""The relay's TCP/TLS listener, presented to the relay as one more datagram endpoint.

:class:`TcpRelayListener` is a :class:`~macula_nat.net.endpoint.UdpEndpoint`: each accepted
link is a source address (the peer's ``(ip, port)``) whose frames :meth:`receive_from` returns
as datagrams, and :meth:`send_to` to that address queues a frame on that link. So the relay
core sees a TCP link exactly as it sees a UDP source: the same handshake, authentication,
limits and per-source fairness (per IPv4 address, per IPv6 /64) apply unchanged, and a session
may join a node on UDP with a node on TCP.

What an attacker meets before the core: a link that has not finished TLS and its preface or
WebSocket upgrade within ``handshake_timeout`` is closed (slowloris); links, finished or not,
are capped per source (``max_links_per_source``) and in all (``max_links``), and a link
silent for ``idle_timeout`` is closed; a frame over ``max_frame`` closes its link (a clear log
line says why); each link holds at most ``max_frame`` bytes of a frame being read and
``send_buffer`` bytes queued for sending, and sending never waits: a frame that does not fit
is dropped (see :mod:`.tcp_link` for why dropping, not waiting, keeps TCP-over-TCP out).

The relay's UDP and TCP addresses have one port number (``port`` None): what the directory
announces reaches it both ways.
"""

from __future__ import annotations

import logging
import math
import ssl
from typing import Final

import attrs
import trio

from macula_nat.net.address import Address, source_prefix
from macula_nat.net.endpoint import UdpEndpoint
from macula_nat.net.stream import StreamListener

from .stream_framing import DEFAULT_MAX_FRAME
from .tcp_link import DEFAULT_SEND_BUFFER, LinkError, MessageStream, SendQueue, accept_link

__all__ = ["DEFAULT_WEBSOCKET_PATH", "TcpListenerStatistics", "TcpRelayConfig", "TcpRelayListener"]

logger = logging.getLogger(__name__)

DEFAULT_WEBSOCKET_PATH: Final = "/macula-relay"
_INBOX: Final = 1024
"""Frames read from every link waiting for the relay's loop; a full inbox makes the readers
wait (TCP's own flow control then slows the senders)."""


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive finite number, not {value!r}")


@attrs.frozen
class TcpRelayConfig:
    """Where and within which bounds a relay serves links over TCP/TLS (see the module
    docstring). ``port`` None is the relay's UDP port number; ``websocket_path`` is the path
    the WebSocket upgrade must ask for."""

    port: int | None = None
    handshake_timeout: float = attrs.field(default=5.0, validator=_positive)
    idle_timeout: float = attrs.field(default=120.0, validator=_positive)
    max_links: int = attrs.field(default=4096, validator=attrs.validators.ge(1))
    max_links_per_source: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    max_frame: int = attrs.field(
        default=DEFAULT_MAX_FRAME, validator=[attrs.validators.ge(64), attrs.validators.le(0xFFFF)]
    )
    send_buffer: int = attrs.field(default=DEFAULT_SEND_BUFFER, validator=attrs.validators.ge(1))
    websocket_path: str = DEFAULT_WEBSOCKET_PATH


@attrs.frozen
class TcpListenerStatistics:
    links: int
    """Links open now (handshakes included)."""
    accepted: int
    """Links that finished TLS and the preface or upgrade."""
    refused: int
    """Connections closed at once: their source held its cap, or the listener was full of
    links from sources holding no more than theirs."""
    evicted: int
    """Links closed to let a new source in while the listener was full: the oldest link of the
    source holding the most."""
    handshake_failures: int
    """Links closed before they finished: too slow, bad TLS, bad preface or upgrade."""
    protocol_errors: int
    """Links closed for a frame over ``max_frame`` or a broken WebSocket."""
    idle_closed: int
    dropped: int
    """Frames dropped because their link's send queue was full."""


@attrs.define(eq=False)
class _Slot:
    """One connection's place under the caps, from its accept until it ends or is evicted."""

    source: str
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    held: bool = True


class _Link:
    __slots__ = ("address", "queue", "stream", "wake")

    def __init__(self, address: Address, stream: MessageStream, limit: int) -> None:
        self.address = address
        self.stream = stream
        self.queue = SendQueue(limit)
        self.wake = trio.Event()


class TcpRelayListener(UdpEndpoint):
    """Links over TCP/TLS as datagram sources; run :meth:`serve` in a task while in use."""

    def __init__(
        self,
        listener: StreamListener,
        context: ssl.SSLContext,
        config: TcpRelayConfig | None = None,
    ) -> None:
        self.config = config or TcpRelayConfig()
        self._listener = listener
        self._context = context
        self._links: dict[Address, _Link] = {}
        self._slots: dict[str, list[_Slot]] = {}
        """Each source prefix's connections, oldest first."""
        self._open = 0
        self._inbox_send, self._inbox = trio.open_memory_channel[tuple[bytes, Address]](_INBOX)
        self._closed = False
        self._scope = trio.CancelScope()
        self._accepted = 0
        self._refused = 0
        self._evicted = 0
        self._handshake_failures = 0
        self._protocol_errors = 0
        self._idle_closed = 0
        self._dropped_closed = 0

    def __contains__(self, address: object) -> bool:
        """Whether ``address`` is an open link's (its frames go out here, not over UDP)."""
        return address in self._links

    @property
    def local_address(self) -> Address:
        return self._listener.local_address

    def statistics(self) -> TcpListenerStatistics:
        return TcpListenerStatistics(
            links=self._open,
            accepted=self._accepted,
            refused=self._refused,
            evicted=self._evicted,
            handshake_failures=self._handshake_failures,
            protocol_errors=self._protocol_errors,
            idle_closed=self._idle_closed,
            dropped=self._dropped_closed + sum(k.queue.dropped for k in self._links.values()),
        )

    # -- the datagram endpoint -------------------------------------------------------------------

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        """Queue ``data`` on ``address``'s link; lost when there is none (as a datagram to a
        closed port), dropped and counted when the link's queue is full. Never waits."""
        if self._closed:
            raise trio.ClosedResourceError
        link = self._links.get(address)
        if link is not None and link.queue.push(data):
            link.wake.set()

    async def send_to(self, data: bytes, address: Address) -> None:
        self.send_to_nowait(data, address)
        await trio.lowlevel.checkpoint()

    async def receive_from(self) -> tuple[bytes, Address]:
        try:
            return await self._inbox.receive()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        try:
            return self._inbox.receive_nowait()
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    def close(self) -> None:
        """Stop: every link and the listening sockets close (:meth:`serve` returns)."""
        self._closed = True
        self._scope.cancel()
        self._inbox_send.close()

    # -- serving ---------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Accept and run links until :meth:`close` (or a cancel); closes the socket after."""
        with self._scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._accept, nursery)
            finally:
                await trio.aclose_forcefully(self._listener)

    async def _accept(self, nursery: trio.Nursery) -> None:
        while True:
            stream, address = await self._listener.accept()
            source = source_prefix(address[0])
            if not self._admit(source):
                self._refused += 1
                logger.info("relay over TCP: %s holds its share of links; closing", source)
                await trio.aclose_forcefully(stream)
                continue
            slot = _Slot(source)
            self._slots.setdefault(source, []).append(slot)
            self._open += 1
            nursery.start_soon(self._run, stream, address, slot)

    def _admit(self, source: str) -> bool:
        """Whether a connection from ``source`` may open: under its cap, and under the
        listener's, or else the source holding the most holds at least two more than this one
        and gives up its oldest link. No source is refused while another holds more, so many
        addresses of one attacker fill the listener only until others come."""
        config = self.config
        holding = len(self._slots.get(source, ()))
        if holding >= config.max_links_per_source:
            return False
        if self._open < config.max_links:
            return True
        largest = max(self._slots.values(), key=len)
        if len(largest) < holding + 2:
            return False
        oldest = largest[0]
        self._release(oldest)
        oldest.scope.cancel()
        self._evicted += 1
        logger.info("relay over TCP: full; closed a link of %s for %s", oldest.source, source)
        return True

    def _release(self, slot: _Slot) -> None:
        """Give ``slot``'s place back (once: at eviction or when its link ends)."""
        if not slot.held:
            return
        slot.held = False
        self._open -= 1
        sharing = self._slots[slot.source]
        sharing.remove(slot)
        if not sharing:
            del self._slots[slot.source]

    async def _run(self, stream: trio.abc.Stream, address: Address, slot: _Slot) -> None:
        config = self.config
        link: _Link | None = None
        try:
            with slot.scope:
                messages = await self._open_link(stream, address)
                if messages is None:
                    return
                link = _Link(address, messages, config.send_buffer)
                self._links[address] = link
                self._accepted += 1
                logger.debug("relay over TCP: link from %s:%d", *address)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._write, link)
                    await self._read(link)
                    nursery.cancel_scope.cancel()
        finally:
            self._release(slot)
            if link is not None:
                self._dropped_closed += link.queue.dropped
                if self._links.get(address) is link:
                    del self._links[address]
                await link.stream.aclose()
            elif slot.scope.cancelled_caught:  # evicted before its link was up
                await trio.aclose_forcefully(stream)

    async def _open_link(self, stream: trio.abc.Stream, address: Address) -> MessageStream | None:
        """TLS, then the preface or upgrade, within the deadline; None (stream closed) else."""
        config = self.config
        tls = trio.SSLStream(stream, self._context, server_side=True)
        with trio.move_on_after(config.handshake_timeout):
            try:
                await tls.do_handshake()
                return await accept_link(
                    tls, path=config.websocket_path, max_frame=config.max_frame
                )
            except (LinkError, trio.BrokenResourceError) as exc:
                self._handshake_failures += 1
                logger.info("relay over TCP: %s:%d failed its handshake: %s", *address, exc)
                await trio.aclose_forcefully(tls)
                return None
        self._handshake_failures += 1
        logger.info(
            "relay over TCP: %s:%d did not finish its handshake in %g s",
            *address,
            config.handshake_timeout,
        )
        await trio.aclose_forcefully(tls)
        return None

    async def _read(self, link: _Link) -> None:
        address = link.address
        inbox = self._inbox_send
        idle = self.config.idle_timeout
        try:
            while True:
                frame: bytes | None = None
                with trio.move_on_after(idle) as scope:
                    frame = await link.stream.receive()
                if scope.cancelled_caught:
                    self._idle_closed += 1
                    logger.info("relay over TCP: %s:%d idle %g s; closed", *address, idle)
                    return
                if frame is None:
                    return
                await inbox.send((frame, address))
        except LinkError as exc:
            self._protocol_errors += 1
            logger.warning("relay over TCP: %s:%d closed: %s", *address, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return

    async def _write(self, link: _Link) -> None:
        queue = link.queue
        try:
            while True:
                await link.wake.wait()
                link.wake = trio.Event()
                frames = queue.take()
                if frames:
                    await link.stream.send(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
