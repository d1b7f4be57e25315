"""A node's link to its relay over TCP/TLS, presented as a datagram endpoint.

:class:`TcpRelayEndpoint` is a :class:`~macula_nat.net.endpoint.UdpEndpoint` whose one peer is
the relay: a :class:`~.client.RelayClient` given it (and the relay's address) registers, keeps
alive and relays sessions exactly as over UDP, so QUIC datagrams ride the link unchanged,
sealed end to end and authenticated by node id as ever. Sending never waits: frames queue in a
bounded :class:`~.tcp_link.SendQueue` and a full queue drops (see :mod:`.tcp_link`); received
frames wait in a bounded buffer that drops the newest when full, as a socket's does.

:func:`open_tcp_relay_endpoint` connects (TLS, then the preface or a WebSocket upgrade) within
a deadline and runs the link for the ``async with`` block.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import trio

from macula_nat.net.address import Address, normalise_address
from macula_nat.net.endpoint import UdpEndpoint, UdpStack
from macula_nat.net.real import RealUdpStack

from .stream_framing import DEFAULT_MAX_FRAME
from .tcp_link import DEFAULT_SEND_BUFFER, LinkError, MessageStream, SendQueue, connect_link
from .tls import client_context

__all__ = ["TcpRelayEndpoint", "connect_tcp_relay", "open_tcp_relay_endpoint"]

logger = logging.getLogger(__name__)

_RECEIVE_BUFFER: Final = 256
"""Frames held for the reader (as a demux view holds datagrams)."""


class TcpRelayEndpoint(UdpEndpoint):
    """One link to the relay at ``relay``; frames from it arrive as datagrams from ``relay``,
    datagrams sent to ``relay`` go over it (to any other address they are lost)."""

    def __init__(
        self,
        stream: MessageStream,
        relay: Address,
        local: Address,
        *,
        send_buffer: int = DEFAULT_SEND_BUFFER,
    ) -> None:
        self.relay = normalise_address(relay)
        self._stream = stream
        self._local = local
        self._queue = SendQueue(send_buffer)
        self._wake = trio.Event()
        self._incoming, self._received = trio.open_memory_channel[bytes](_RECEIVE_BUFFER)
        self._closed = False
        self.lost = 0
        """Frames received while the buffer was full, or sent to another address."""
        self.broken = trio.Event()
        """Set when the link ended (the relay closed it, it broke, or :meth:`close`)."""

    def __repr__(self) -> str:
        return f"<TcpRelayEndpoint -> {self.relay[0]}:{self.relay[1]}>"

    @property
    def local_address(self) -> Address:
        return self._local

    @property
    def dropped(self) -> int:
        """Frames dropped because the send queue was full (the link is slower than the node)."""
        return self._queue.dropped

    def send_to_nowait(self, data: bytes, address: Address) -> None:
        if self._closed:
            raise trio.ClosedResourceError
        if address != self.relay:
            self.lost += 1
            return
        if self._queue.push(data):
            self._wake.set()

    async def send_to(self, data: bytes, address: Address) -> None:
        self.send_to_nowait(data, address)
        await trio.lowlevel.checkpoint()

    async def receive_from(self) -> tuple[bytes, Address]:
        try:
            return await self._received.receive(), self.relay
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    def receive_from_nowait(self) -> tuple[bytes, Address]:
        try:
            return self._received.receive_nowait(), self.relay
        except trio.EndOfChannel:
            raise trio.ClosedResourceError from None

    def close(self) -> None:
        self._closed = True
        self._incoming.close()
        self.broken.set()

    async def run(self) -> None:
        """Read and write the link until it ends or :meth:`close`; the stream is closed after."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write)
                nursery.start_soon(self._watch_close, nursery.cancel_scope)
                await self._read()
                nursery.cancel_scope.cancel()
        finally:
            self.close()
            await self._stream.aclose()

    async def _watch_close(self, scope: trio.CancelScope) -> None:
        await self.broken.wait()
        scope.cancel()

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._stream.receive()
                if frame is None:
                    logger.info("%s: the relay closed the link", self)
                    return
                try:
                    self._incoming.send_nowait(frame)
                except trio.WouldBlock:
                    self.lost += 1
        except LinkError as exc:
            logger.warning("%s: closed: %s", self, exc)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("%s: the link broke: %r", self, exc)

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                frames = self._queue.take()
                if frames:
                    await self._stream.send(frames)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.info("%s: the link broke: %r", self, exc)
            self.broken.set()


async def connect_tcp_relay(
    relay: Address,
    *,
    stack: UdpStack | None = None,
    port: int | None = None,
    websocket: str | None = None,
    timeout: float = 5.0,
    max_frame: int = DEFAULT_MAX_FRAME,
    send_buffer: int = DEFAULT_SEND_BUFFER,
) -> TcpRelayEndpoint:
    """Connect to the relay at ``relay`` over TCP (on ``port``, default the relay's UDP port
    number; from ``stack``, default the host's) with TLS, framed or as a WebSocket on the path
    ``websocket``, within ``timeout``.
    Raises OSError (``TimeoutError`` when too slow) or :class:`LinkError`. Run the result's
    :meth:`~TcpRelayEndpoint.run` in a task (or use :func:`open_tcp_relay_endpoint`)."""
    relay = normalise_address(relay)
    host, tcp_port = relay[0], relay[1] if port is None else port
    stack = stack if stack is not None else RealUdpStack()
    with trio.move_on_after(timeout):
        stream, local = await stack.connect_stream((host, tcp_port))
        try:
            tls = trio.SSLStream(stream, client_context(), server_hostname=None)
            await tls.do_handshake()
            messages = await connect_link(tls, websocket=websocket, host=host, max_frame=max_frame)
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        return TcpRelayEndpoint(messages, relay, local, send_buffer=send_buffer)
    raise TimeoutError(f"no TLS link to the relay at {host}:{tcp_port} within {timeout} s")


@asynccontextmanager
async def open_tcp_relay_endpoint(
    relay: Address,
    *,
    stack: UdpStack | None = None,
    port: int | None = None,
    websocket: str | None = None,
    timeout: float = 5.0,
) -> AsyncIterator[TcpRelayEndpoint]:
    """:func:`connect_tcp_relay`, the link run for the ``async with`` block and closed after."""
    endpoint = await connect_tcp_relay(
        relay, stack=stack, port=port, websocket=websocket, timeout=timeout
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(endpoint.run)
        try:
            yield endpoint
        finally:
            endpoint.close()
