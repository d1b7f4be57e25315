"""One relay link over TCP/TLS: relay frames as messages on a stream, and a bounded send queue.

Two forms carry the same frames: *framed* (:data:`~.stream_framing.PREFACE`, then each frame
behind its length) and *WebSocket* (an HTTP/1.1 Upgrade on a path such as ``/macula-relay``,
then one binary message per frame), which passes HTTP proxies and shares port 443 behind a
reverse proxy. :func:`accept_link` (the relay) tells them apart by the first bytes;
:func:`connect_link` (a node) speaks the one asked for.

Why this is not TCP-over-TCP: the frames are the relay's datagrams, and QUIC datagrams ride in
them; no QUIC stream is ever mapped onto the TCP stream. Each end queues what it sends in a
:class:`SendQueue` bounded in bytes and drops a datagram that does not fit (QUIC's loss
recovery resends what mattered, as it would after a UDP loss), so a slow link costs a few
datagrams, never growing memory, never a wait in the relay's forwarding loop, and never a
second retransmission layer below QUIC's beyond the one TCP link.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Iterable
from typing import Final

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .stream_framing import (
    DEFAULT_MAX_FRAME,
    PREFACE,
    FrameReader,
    StreamFramingError,
    encode_frame,
)

__all__ = [
    "DEFAULT_SEND_BUFFER",
    "LinkError",
    "MessageStream",
    "SendQueue",
    "accept_link",
    "connect_link",
]

DEFAULT_SEND_BUFFER: Final = 256 * 1024
"""Bytes a link queues for sending before it drops datagrams: about 20 ms at 100 Mbit/s."""
_RECEIVE_SIZE: Final = 65536
_MAX_UPGRADE: Final = 8192
"""Most bytes the relay reads while waiting for the preface or a whole upgrade request."""


class LinkError(Exception):
    """The peer broke the link's protocol (preface, upgrade, framing or message size)."""


class SendQueue:
    """Frames waiting to be sent on one link, at most ``limit`` bytes; sans-IO.

    :meth:`push` never waits: a frame that does not fit is dropped and counted (drop-newest,
    as a full UDP socket buffer drops)."""

    __slots__ = ("_frames", "dropped", "limit", "queued")

    def __init__(self, limit: int = DEFAULT_SEND_BUFFER) -> None:
        if limit < 1:
            raise ValueError(f"a send queue holds at least 1 byte, not {limit}")
        self.limit = limit
        self.queued = 0
        """Bytes waiting."""
        self.dropped = 0
        """Frames dropped because they did not fit."""
        self._frames: deque[bytes] = deque()

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> bool:
        """Queue ``frame``; False (and counted) when it does not fit."""
        if self.queued + len(frame) > self.limit:
            self.dropped += 1
            return False
        self._frames.append(frame)
        self.queued += len(frame)
        return True

    def take(self) -> list[bytes]:
        """Every frame waiting, oldest first; the queue is empty after."""
        frames = list(self._frames)
        self._frames.clear()
        self.queued = 0
        return frames


class MessageStream(ABC):
    """Relay frames as whole messages on a byte stream (framed or WebSocket)."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int) -> None:
        self.stream = stream
        self.max_frame = max_frame

    @abstractmethod
    async def receive(self) -> bytes | None:
        """The next frame; None when the peer closed the link. Raises :class:`LinkError` when
        it broke the protocol, ``trio.BrokenResourceError`` when the stream broke."""

    @abstractmethod
    def encode(self, frames: list[bytes]) -> bytes:
        """The bytes that send ``frames``, in order."""

    async def send(self, frames: list[bytes]) -> None:
        """Send ``frames`` in one write."""
        await self.stream.send_all(self.encode(frames))

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)


class FramedStream(MessageStream):
    """Frames behind their 2-byte length (:mod:`.stream_framing`)."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int, head: bytes = b"") -> None:
        super().__init__(stream, max_frame)
        self._reader = FrameReader(max_frame)
        self._ready: deque[bytes] = deque()
        self._feed(head)

    def _feed(self, data: bytes) -> None:
        try:
            self._ready.extend(self._reader.feed(data))
        except StreamFramingError as exc:
            raise LinkError(str(exc)) from exc

    async def receive(self) -> bytes | None:
        while not self._ready:
            data = bytes(await self.stream.receive_some(_RECEIVE_SIZE))
            if not data:
                return None
            self._feed(data)
        return self._ready.popleft()

    def encode(self, frames: list[bytes]) -> bytes:
        return b"".join(encode_frame(frame) for frame in frames)


class WebSocketStream(MessageStream):
    """One binary WebSocket message per frame (wsproto on the stream)."""

    def __init__(self, stream: trio.abc.Stream, max_frame: int, ws: WSConnection) -> None:
        super().__init__(stream, max_frame)
        self._ws = ws
        self._ready: deque[bytes] = deque()
        self._partial = bytearray()
        self._closed = False

    @classmethod
    async def opened(
        cls, stream: trio.abc.Stream, max_frame: int, ws: WSConnection, early: list[Event]
    ) -> WebSocketStream:
        """The link once the upgrade is done, with the events that came in behind it."""
        link = cls(stream, max_frame, ws)
        reply = link._take(early)
        if reply:
            await stream.send_all(reply)
        return link

    async def receive(self) -> bytes | None:
        while not self._ready:
            if self._closed:
                return None
            data = bytes(await self.stream.receive_some(_RECEIVE_SIZE))
            if not data:
                return None
            try:
                self._ws.receive_data(data)
                reply = self._take(self._ws.events())
            except (LocalProtocolError, RemoteProtocolError) as exc:
                raise LinkError(f"WebSocket: {exc}") from exc
            if reply:
                await self.stream.send_all(reply)
        return self._ready.popleft()

    def _take(self, events: Iterable[Event]) -> bytes:
        """Take wsproto's events; returns what must be sent back (pongs, a close)."""
        ws = self._ws
        reply = b""
        for event in events:
            if isinstance(event, BytesMessage):
                self._partial += event.data
                if len(self._partial) > self.max_frame:
                    raise LinkError(f"WebSocket message over {self.max_frame} bytes")
                if event.message_finished:
                    if not self._partial:
                        raise LinkError("empty WebSocket message")
                    self._ready.append(bytes(self._partial))
                    self._partial.clear()
            elif isinstance(event, Ping):
                reply += ws.send(event.response())
            elif isinstance(event, CloseConnection):
                self._closed = True
                reply += ws.send(event.response())
                break
            elif isinstance(event, TextMessage):
                raise LinkError("a text WebSocket message (relay frames are binary)")
        return reply

    def encode(self, frames: list[bytes]) -> bytes:
        send = self._ws.send
        return b"".join(send(BytesMessage(data=frame)) for frame in frames)


async def accept_link(
    stream: trio.abc.Stream, *, path: str, max_frame: int = DEFAULT_MAX_FRAME
) -> MessageStream:
    """The relay's side: read the preface or a WebSocket upgrade for ``path`` and return the
    link. Raises :class:`LinkError` for anything else (a wrong path is answered 404 first).
    The caller bounds it in time (a slowloris peer never finishes)."""
    head = b""
    while True:
        if head.startswith(b"GET "):
            return await _accept_websocket(stream, head, path, max_frame)
        if head.startswith(PREFACE):
            return FramedStream(stream, max_frame, head[len(PREFACE) :])
        if not (PREFACE.startswith(head) or b"GET ".startswith(head)):
            raise LinkError("neither the relay preface nor an HTTP GET")
        data = bytes(await stream.receive_some(_RECEIVE_SIZE))
        if not data:
            raise LinkError("closed before the preface")
        head += data


async def _accept_websocket(
    stream: trio.abc.Stream, head: bytes, path: str, max_frame: int
) -> MessageStream:
    ws = WSConnection(ConnectionType.SERVER)
    received = len(head)
    data = head
    while True:
        try:
            ws.receive_data(data)
            events = list(ws.events())
        except (LocalProtocolError, RemoteProtocolError) as exc:
            raise LinkError(f"bad upgrade request: {exc}") from exc
        for index, event in enumerate(events):
            if isinstance(event, Request):
                if event.target != path:
                    await stream.send_all(ws.send(RejectConnection(status_code=404)))
                    raise LinkError(f"upgrade for {event.target!r}, not {path!r}")
                await stream.send_all(ws.send(AcceptConnection()))
                return await WebSocketStream.opened(stream, max_frame, ws, events[index + 1 :])
        data = bytes(await stream.receive_some(_RECEIVE_SIZE))
        received += len(data)
        if not data:
            raise LinkError("closed during the upgrade request")
        if received > _MAX_UPGRADE:
            raise LinkError(f"upgrade request over {_MAX_UPGRADE} bytes")


async def connect_link(
    stream: trio.abc.Stream,
    *,
    websocket: str | None = None,
    host: str = "relay",
    max_frame: int = DEFAULT_MAX_FRAME,
) -> MessageStream:
    """A node's side on a connected stream: framed, or a WebSocket upgrade for the path
    ``websocket`` (``host`` goes in the Host header). Raises :class:`LinkError` when the relay
    refuses the upgrade. The caller bounds it in time."""
    if websocket is None:
        await stream.send_all(PREFACE)
        return FramedStream(stream, max_frame)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=host, target=websocket)))
    received = 0
    while True:
        data = bytes(await stream.receive_some(_RECEIVE_SIZE))
        received += len(data)
        if not data or received > _MAX_UPGRADE:
            raise LinkError("no answer to the WebSocket upgrade")
        try:
            ws.receive_data(data)
            events = list(ws.events())
        except (LocalProtocolError, RemoteProtocolError) as exc:
            raise LinkError(f"bad upgrade answer: {exc}") from exc
        for index, event in enumerate(events):
            if isinstance(event, AcceptConnection):
                return await WebSocketStream.opened(stream, max_frame, ws, events[index + 1 :])
            if isinstance(event, RejectConnection):
                raise LinkError(f"the relay refused the upgrade ({event.status_code})")
