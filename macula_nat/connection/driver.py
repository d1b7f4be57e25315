"""A Trio driver for a sans-IO QUIC connection (qh3's or aioquic's, behind
:mod:`~macula_nat.connection.backend`) over a :class:`UdpEndpoint`.

- **Identity.** The server presents a self-signed certificate of its node key; the client checks
  that key is ``expected_peer`` before it sends anything of its own. The client then proves its
  node key on its first stream, before anything else: a signature over this TLS session's
  exporter secret and both node ids (:mod:`~macula_nat.connection.proof`; qh3's server never
  requests a client certificate). The server delivers nothing of the connection until the proof
  verifies and names a node in ``allowed_peers``, then says so (an empty, ended stream), and the
  client's :func:`connect` returns only then. A failed check closes with CRYPTO_ERROR
  ``bad_certificate`` (:data:`AUTH_FAILED`), a client that sends anything before its proof with
  ``certificate_required`` (:data:`AUTH_REQUIRED`); the side that sees it raises
  :class:`PeerAuthenticationFailed` too.
- **Hygiene.** Only datagrams from the connection's remote address reach the library (which
  authenticates every packet); a listener starts a connection only for a full-size Initial from
  an allowed address, with at most ``max_handshakes`` in flight, each bounded by
  ``handshake_timeout``. Once ``retry_threshold`` handshakes from unproven addresses are
  pending, an Initial without a token gets a stateless Retry (RFC 9000 8.1.2) instead of a slot,
  and a proven source holds at most ``max_handshakes_per_source`` (see
  :mod:`macula_nat.connection.gate`, which a node's coordinator uses too, with :func:`answer`):
  spoofed Initials cannot take the slots a real peer needs.
- **Messages** travel on one unidirectional stream per direction, each prefixed by its length
  (4 bytes, big endian): reliable, ordered, any size up to ``max_message_size``. A second
  unidirectional stream carries the traversal layer's signalling (:meth:`Connection.send_control`),
  so punching and path changes are negotiated inside the encrypted, authenticated connection; the
  first byte of each unidirectional stream says which it is.
- **Paths.** Over a :class:`~macula_nat.connection.link.PeerLink` the peer keeps one address
  for the connection's life and the link moves datagrams between the relay and direct paths
  underneath; ``info().connection_method`` and :attr:`Connection.method` follow it. DATAGRAM frames
  are not negotiated, so there is no unbounded datagram queue to rate limit.
- **Streams** are QUIC bidirectional streams (:class:`QuicStream`, a Trio
  ``HalfCloseableStream``); the peer sees one in :meth:`Connection.accept_stream` when its
  first bytes (or EOF) arrive.
- **Hand-overs.** Data leaves from the task that sends it, and a datagram is processed in the
  task that read it (the connection's own driver, or the listener's reader), so a request and
  its answer cross no extra task; the driver otherwise only runs the library's timers. On
  aioquic a pending ACK rides with outgoing data instead of leaving alone after its ACK delay
  (qh3's core schedules its ACKs itself), and input that woke the application leaves the output
  step to it (:meth:`Connection._pass`): an answer and its ACK leave in one step, and no step
  runs that would find nothing to send. Together these made a small-message round trip ~1.5x
  faster, at one output step per message.
- **Batches.** The reader takes every datagram waiting on the socket at once (up to
  :data:`~macula_nat.net.endpoint.READ_BATCH`), feeds them all to the library in one call
  (qh3 takes the whole batch into its core at once) and then runs one
  output step (``datagrams_to_send``) for the batch; datagrams leave with
  ``send_to_nowait``, awaiting the endpoint only when its buffer is full. A bulk transfer
  thus costs one scheduler round per batch, not two per datagram (issue 14).
- **Time** is ``trio.current_time()``, so the library's timers follow
  ``trio.testing.MockClock``.
- **Memory.** QUIC flow control is the receive bound: the peer may send at most
  ``max_receive_buffer`` bytes beyond what the application has read (whole messages, partial
  ones, stream data, and the gaps held for out-of-order data all count), so a slow reader slows
  the sender instead of growing a buffer; aioquic would instead double its windows as data
  arrives, read or not. On aioquic the credit follows the application's reads; qh3 grants it as
  it hands data over, so there the driver drops datagrams while the application holds the rest
  of the bound (see :mod:`~macula_nat.connection.quic_qh3`). The peer may open 3 unidirectional
  streams (proof, messages, signalling) and 128 (aioquic) or 100 (qh3) bidirectional ones. A
  peer that sends past its credit breaks the protocol and the connection closes
  (:class:`ConnectionClosed` says why). A send waits while more than ``send_buffer`` bytes of
  its stream are unsent (qh3) or unacknowledged (aioquic).
"""

from __future__ import annotations

import logging
import math
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio
from aioquic._buffer import Buffer
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicHeader,
    pull_quic_header,
)
from aioquic.tls import AlertDescription
from trio_util import AsyncValue

from macula_nat.connection import backend
from macula_nat.connection.admission import HandshakeLimits
from macula_nat.connection.backend import (
    ALPN,
    BACKENDS,
    Backend,
    BackendName,
    QuicConnectionPort,
    open_backend,
)
from macula_nat.connection.certificate import NotANodeCertificate, peer_node_id
from macula_nat.connection.errors import (
    ConnectionClosed,
    ConnectionFailed,
    HandshakeTimeout,
    PeerAuthenticationFailed,
)
from macula_nat.connection.gate import (
    CID_LENGTH,
    MIN_INITIAL_SIZE,
    Admitted,
    HandshakeGate,
    HandshakeStatistics,
    opens_connection,
)
from macula_nat.connection.link import ConnectionMethod, PeerLink
from macula_nat.connection.proof import PROOF_SIZE, BadProof, check_proof, exporter, make_proof
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpEndpoint

__all__ = [
    "ALPN",
    "AUTH_FAILED",
    "AUTH_REQUIRED",
    "CID_LENGTH",
    "MIN_INITIAL_SIZE",
    "Connection",
    "ConnectionConfig",
    "ConnectionInfo",
    "ConnectionStatistics",
    "HandshakeStatistics",
    "Listener",
    "QuicStream",
    "answer",
    "connect",
    "listen",
]

logger = logging.getLogger(__name__)

AUTH_FAILED: Final = QuicErrorCode.CRYPTO_ERROR + AlertDescription.bad_certificate
"""Transport error code closing a connection whose peer failed authentication."""
AUTH_REQUIRED: Final = QuicErrorCode.CRYPTO_ERROR + AlertDescription.certificate_required
"""Transport error code closing a connection whose client sent anything before its proof."""
_LENGTH: Final = struct.Struct("!I")
_MESSAGES: Final = b"M"
_CONTROL: Final = b"C"
_PROOF: Final = b"P"
"""First byte of a unidirectional stream: application messages, traversal signalling, or the
client's proof of its node key (the server's answer: the same kind, empty, ended)."""
_CLIENT_FIRST_UNI: Final = 2
"""The client's first unidirectional stream (RFC 9000 2.1): where its proof must be."""
_RECEIVE_CHUNK: Final = 65536
_TIMER_GRANULARITY: Final = 0.001
"""aioquic's own timer granularity (``K_GRANULARITY``)."""
_FRAMING: Final = 1 + _LENGTH.size
"""Bytes a message stream adds around one message at most (its kind byte, the length)."""


_POSITIVE: Final = attrs.validators.gt(0)
_POSITIVE_TIME: Final = attrs.validators.gt(0.0)


@attrs.frozen
class ConnectionConfig:
    """Timing and memory bounds of a connection."""

    handshake_timeout: float = attrs.field(default=10.0, validator=_POSITIVE_TIME)
    idle_timeout: float = attrs.field(default=30.0, validator=_POSITIVE_TIME)
    keepalive_interval: float | None = 10.0
    """Seconds between PINGs once connected; None sends none (the idle timeout then bites)."""
    max_message_size: int = attrs.field(default=16 * 1024 * 1024, validator=_POSITIVE)
    max_receive_buffer: int = attrs.field(default=64 * 1024 * 1024, validator=_POSITIVE)
    """Received bytes the application has not read that the peer may make this side hold
    (the QUIC flow-control window, connection and each stream): at least ``max_message_size``."""
    send_buffer: int = attrs.field(default=1024 * 1024, validator=_POSITIVE)
    close_grace: float = attrs.field(default=1.0, validator=_POSITIVE_TIME)
    """Longest :meth:`Connection.aclose` waits to send the CONNECTION_CLOSE."""
    quic_backend: BackendName = attrs.field(default="qh3", validator=attrs.validators.in_(BACKENDS))
    """The QUIC library: ``"qh3"`` (Rust core, fast) or ``"aioquic"`` (pure Python); both
    speak the same protocol, so nodes on either connect to each other."""

    def __attrs_post_init__(self) -> None:
        if self.keepalive_interval is not None and not self.keepalive_interval > 0:
            raise ValueError(
                f"keepalive_interval must be positive or None, not {self.keepalive_interval}"
            )
        if self.max_message_size > self.max_receive_buffer:
            raise ValueError(
                f"max_message_size ({self.max_message_size}) exceeds max_receive_buffer "
                f"({self.max_receive_buffer}): such a message could never arrive"
            )

    @property
    def receive_window(self) -> int:
        """The flow-control window: the receive bound, plus room for one message's framing."""
        return self.max_receive_buffer + _FRAMING


@attrs.frozen
class ConnectionStatistics:
    """What a connection holds of the peer's data now (its receive memory)."""

    held: int
    """Bytes received and not yet read by the application: whole and partial messages (each
    with its length prefix), signalling, stream data."""
    reassembly: int
    """Bytes aioquic holds for out-of-order stream data (gaps included); 0 on qh3, whose core
    does not say (its credit bounds it)."""
    receive_bound: int
    """``max_receive_buffer``: ``held + reassembly`` stays within it plus a message's framing."""
    peer_streams: int
    """Streams the peer has opened whose receiving side has not ended (seen by their data)."""


@attrs.frozen
class ConnectionInfo:
    """A snapshot of a connection."""

    peer_id: NodeId
    connection_method: ConnectionMethod
    rtt: float
    """Smoothed round-trip time in seconds (0.0 before the first sample)."""
    local_address: Address
    remote_address: Address | None
    """The peer's address on the direct path; None while relayed."""


def _backend(key: NodeKey, config: ConnectionConfig, *, is_client: bool) -> Backend:
    return open_backend(
        config.quic_backend,
        key,
        is_client=is_client,
        window=config.receive_window,
        message_room=config.max_message_size + _FRAMING,
        idle_timeout=config.idle_timeout,
        cid_length=CID_LENGTH,
    )


def parse_header(data: bytes) -> QuicHeader | None:
    """The QUIC header of ``data``, or None if it is not well-formed QUIC."""
    try:
        return pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
    except ValueError:
        return None


class QuicStream(trio.abc.HalfCloseableStream):
    """One bidirectional QUIC stream of a :class:`Connection`."""

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self._connection = connection
        self.stream_id = stream_id
        self._received = bytearray()
        self._eof = False
        self._reset = False
        self._send_closed = False
        self._closed = False
        self._sending = False
        self._receiving = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._sending = True
        try:
            if self._closed or self._send_closed:
                raise trio.ClosedResourceError("stream closed for sending")
            self._connection._raise_if_unusable()
            self._connection._send(self.stream_id, bytes(data))
            sent = await self._connection._transmit()
            await self._connection._wait_send_room(self.stream_id, checkpointed=sent)
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        await self._connection._wait_send_room(self.stream_id)

    async def send_eof(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("stream closed")
        self._end_sending()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        limit = _RECEIVE_CHUNK if max_bytes is None else max_bytes
        if limit < 1:
            raise ValueError("max_bytes must be at least 1")
        self._receiving = True
        waited = False
        try:
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("stream closed")
                if self._received:
                    chunk = bytes(self._received[:limit])
                    del self._received[:limit]
                    self._connection._release(len(chunk))
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    return chunk
                if self._eof:
                    if not waited:
                        await trio.lowlevel.checkpoint()
                    return b""
                if self._reset:
                    raise trio.BrokenResourceError("the peer reset the stream")
                self._connection._raise_if_unusable()
                await self._connection._next_progress()
                waited = True
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        if not self._closed:
            self._end_sending()
            self._closed = True
            self._connection._release(len(self._received))
            self._received.clear()
        await trio.lowlevel.checkpoint()

    def _end_sending(self) -> None:
        if self._send_closed:
            return
        self._send_closed = True
        if self._connection._usable():
            self._connection._quic.send_stream_data(self.stream_id, b"", end_stream=True)
            self._connection._wake()

    def _receive(self, data: bytes, end_stream: bool) -> None:
        if self._closed:
            self._connection._release(len(data))
        else:
            self._received += data
        self._eof = self._eof or end_stream


@attrs.define(eq=False)
class Connection:
    """A mutually authenticated QUIC connection to one peer; build with :func:`connect` or
    :meth:`Listener.accept`."""

    _quic: QuicConnectionPort
    _endpoint: UdpEndpoint
    _remote: Address
    _accepts: Callable[[NodeId], bool]
    _config: ConnectionConfig
    _key: NodeKey
    _is_client: bool
    _peer_id: NodeId | None = None
    _failure: ConnectionFailed | None = None
    _closed_locally: bool = False
    _buffered: int = 0
    """Bytes the library delivered that the application has not read yet (partial messages
    too)."""
    _message_stream: int | None = None
    _control_stream: int | None = None
    _ping_uid: int = 0
    _handshake_completed: bool = False
    _exporter: bytes | None = None
    """This TLS session's exporter secret (the client's proof signs it), once TLS is done."""
    _proof: bytearray = attrs.field(init=False, factory=bytearray)
    """The server: the client's proof as it arrives."""
    _proven: bool = False
    """The server: the client proved its key. The client: the server accepted our proof."""
    _close_after_flush: int | None = attrs.field(init=False, default=None)
    """An authentication failure's close code, sent after the library's queued datagrams."""
    _held_back: list[backend.StreamData] = attrs.field(init=False, factory=list)
    """The server: the client's stream data that came before its proof (delivered once it
    verifies, dropped with the connection if it does not)."""
    _on_established: Callable[[Connection], object] | None = None
    _reads_endpoint: bool = False
    """Whether the driver reads ``_endpoint`` itself (it owns it), or a listener's reader
    hands datagrams over (:meth:`_answer`)."""
    _outbox: list[bytes] = attrs.field(init=False, factory=list)
    _produced: int = attrs.field(init=False, default=0)
    """Datagrams the library has handed over so far (the driver tells a busy pass from an idle
    one)."""
    _waiting: trio.CancelScope | None = attrs.field(init=False, default=None)
    _woken: bool = attrs.field(init=False, default=False)
    _next_ping: float = attrs.field(init=False, default=math.inf)
    _output_due: float = attrs.field(init=False, default=math.inf)
    """When the library's output after input must be asked for at the latest, if the tasks that
    input woke have not asked for it by then (see :meth:`_pass`); inf: nothing owed."""
    _authenticated: trio.Event = attrs.field(init=False, factory=trio.Event)
    _terminated: trio.Event = attrs.field(init=False, factory=trio.Event)
    _progress: trio.lowlevel.ParkingLot = attrs.field(init=False, factory=trio.lowlevel.ParkingLot)
    """Where tasks wait for the next pass over the library's events."""
    _messages: deque[bytes] = attrs.field(init=False, factory=deque)
    _framing: dict[int, bytearray] = attrs.field(init=False, factory=dict)
    _uni_kinds: dict[int, bytes] = attrs.field(init=False, factory=dict)
    _controls: deque[bytes] = attrs.field(init=False, factory=deque)
    method: AsyncValue[ConnectionMethod] = attrs.field(init=False)
    """How datagrams travel now (``await connection.method.wait_transition()`` to hear of a
    change): the link's, or always ``direct`` on a plain endpoint."""
    _streams: dict[int, QuicStream] = attrs.field(init=False, factory=dict)
    _new_streams: deque[QuicStream] = attrs.field(init=False, factory=deque)
    _peer_open: set[int] = attrs.field(init=False, factory=set)
    """Streams the peer opened whose receiving side has not ended."""
    _host_cids: set[bytes] = attrs.field(init=False, factory=set)
    """Connection ids this side issued and has not retired."""
    withheld: int = attrs.field(init=False, default=0)
    """Datagrams dropped unread because the application held the receive bound (qh3)."""
    opened_at: float = attrs.field(init=False, factory=trio.current_time)
    """When the connection was made (``trio.current_time()``): status pages show its age."""

    def __attrs_post_init__(self) -> None:
        self._host_cids.add(self._quic.host_cid)
        link = self.link
        self.method = link.method if link is not None else AsyncValue(ConnectionMethod.DIRECT)
        if link is not None:
            link.on_path_change(self._on_path_change)

    # -- the user surface --------------------------------------------------------------------

    @property
    def peer_id(self) -> NodeId:
        """The authenticated peer."""
        if self._peer_id is None:
            raise RuntimeError("connection not authenticated")
        return self._peer_id

    @property
    def link(self) -> PeerLink | None:
        """The link this connection runs over, when it may change paths."""
        endpoint = self._endpoint
        return endpoint if isinstance(endpoint, PeerLink) else None

    def owns(self, header: QuicHeader) -> bool:
        """Whether a packet with ``header`` is addressed to this connection (its connection
        id is one this side issued)."""
        return header.destination_cid in self._host_cids

    def info(self) -> ConnectionInfo:
        """Peer, method, smoothed RTT and addresses, now."""
        link = self.link
        return ConnectionInfo(
            peer_id=self.peer_id,
            connection_method=self.method.value,
            rtt=self._quic.rtt(),
            local_address=self._endpoint.local_address,
            remote_address=self._remote if link is None else link.remote_address,
        )

    async def send_message(self, message: bytes) -> None:
        """Send one whole message, reliably and in order with the others."""
        if len(message) > self._config.max_message_size:
            raise ValueError(
                f"message of {len(message)} bytes exceeds {self._config.max_message_size}"
            )
        self._raise_if_unusable()
        if self._message_stream is None:
            self._message_stream = self._open_uni(_MESSAGES)
        self._send(self._message_stream, _LENGTH.pack(len(message)) + message)
        sent = await self._transmit()
        await self._wait_send_room(self._message_stream, checkpointed=sent)

    async def receive_message(self) -> bytes:
        """The next whole message from the peer; :class:`ConnectionFailed` once it is gone."""
        return await self._next_from(self._messages)

    async def send_control(self, message: bytes) -> None:
        """Send one signalling message of the traversal layer (applications use messages)."""
        self._raise_if_unusable()
        if self._control_stream is None:
            self._control_stream = self._open_uni(_CONTROL)
        self._send(self._control_stream, _LENGTH.pack(len(message)) + message)
        await self._transmit()
        await trio.lowlevel.checkpoint()

    async def receive_control(self) -> bytes:
        """The next signalling message from the peer's traversal layer."""
        return await self._next_from(self._controls)

    async def wait_closed(self) -> None:
        """Return once the connection is closed, by either side or by a failure."""
        while self._usable():
            await self._next_progress()

    async def _next_from(self, queue: deque[bytes]) -> bytes:
        waited = False  # a task that blocked has been through a checkpoint: no second one
        while True:
            self._raise_if_closed()
            if queue:
                message = queue.popleft()
                self._release(_LENGTH.size + len(message))  # its length prefix with it
                if not waited:
                    await trio.lowlevel.checkpoint()
                return message
            self._raise_if_unusable()
            await self._next_progress()
            waited = True

    def statistics(self) -> ConnectionStatistics:
        """What this connection holds of the peer's data now."""
        return ConnectionStatistics(
            held=self._buffered,
            reassembly=self._quic.reassembly(),
            receive_bound=self._config.max_receive_buffer,
            peer_streams=len(self._peer_open),
        )

    def _send(self, stream_id: int, data: bytes) -> None:
        """Queue an application's ``data`` on ``stream_id``; raise if the library has just
        ended the connection underneath (before the driver heard of it)."""
        self._quic.send_stream_data(stream_id, data)
        error = self._quic.local_error()
        if error is not None and self._failure is None and not self._closed_locally:
            self._failure = ConnectionClosed(f"the connection ended ({error})")
            self._wake()
        self._raise_if_unusable()

    def _open_uni(self, kind: bytes) -> int:
        stream_id = self._quic.next_stream_id(unidirectional=True)
        self._quic.send_stream_data(stream_id, kind)
        return stream_id

    async def open_stream(self) -> QuicStream:
        """A new bidirectional stream; the peer learns of it when data (or EOF) is sent."""
        self._raise_if_unusable()
        stream = QuicStream(self, self._quic.next_stream_id(unidirectional=False))
        self._streams[stream.stream_id] = stream
        await trio.lowlevel.checkpoint()
        return stream

    async def accept_stream(self) -> QuicStream:
        """The next stream the peer opened."""
        while True:
            self._raise_if_closed()
            if self._new_streams:
                await trio.lowlevel.checkpoint()
                return self._new_streams.popleft()
            self._raise_if_unusable()
            await self._next_progress()

    async def aclose(self) -> None:
        """Close the connection (CONNECTION_CLOSE sent within ``close_grace``); idempotent.

        The CONNECTION_CLOSE leaves from the calling task, shielded: when the connection's
        owner crashed, its driver is cancelled with it, and the peer must still hear of the
        end at once rather than at its idle timeout."""
        if self._closed_locally:
            await trio.lowlevel.checkpoint()
            return
        self._closed_locally = True
        self._quic.close(QuicErrorCode.NO_ERROR, "closed")  # no-op once ended
        self._wake()
        with trio.CancelScope(shield=True), trio.move_on_after(self._config.close_grace):
            await self._transmit()
        self._notify()
        await trio.lowlevel.checkpoint()

    # -- shared with streams -----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the connection is closed (by either side) or failed: no longer usable."""
        return not self._usable()

    def _usable(self) -> bool:
        return not (self._closed_locally or self._failure or self._terminated.is_set())

    def _raise_if_closed(self) -> None:
        """Raise if closed here: the owner's reason when it ended the connection, else the
        ``ClosedResourceError`` of a resource the user closed."""
        if self._closed_locally:
            if self._failure is not None:
                raise self._failure
            raise trio.ClosedResourceError("connection closed")

    def _raise_if_unusable(self) -> None:
        if self._usable():  # the common case first: one test on every send and receive
            return
        self._raise_if_closed()
        if self._failure is not None:
            raise self._failure
        raise ConnectionClosed("connection terminated")

    async def _end(self, reason: str) -> None:
        """Close because what holds the connection ended, not its user: later calls raise
        ``ConnectionClosed(reason)`` rather than ``ClosedResourceError``."""
        if self._failure is None and not self._closed_locally:
            self._failure = ConnectionClosed(reason)
        await self.aclose()

    async def _next_progress(self) -> None:
        """Wait for the next pass over the library's events; first send what the library may
        have after input that woke this task (see :meth:`_pass`)."""
        if self._output_due != math.inf:
            try:
                await self._flush()
            finally:
                self._rearm()
        await self._progress.park()

    async def _wait_send_room(self, stream_id: int, *, checkpointed: bool = False) -> None:
        """Wait while ``stream_id`` has more than ``send_buffer`` bytes unacknowledged; a
        checkpoint unless the caller has just been through one (``checkpointed``)."""
        while True:
            if self._quic.unsent(stream_id) <= self._config.send_buffer:
                if not checkpointed:
                    await trio.lowlevel.checkpoint()
                return
            self._raise_if_unusable()
            await self._next_progress()
            checkpointed = True

    def _abort(self, reason: str) -> None:
        """End the connection from outside (a listener evicting its handshake)."""
        self._fail(ConnectionClosed(reason))
        self._wake()
        self._notify()

    def _release(self, count: int) -> None:
        """``count`` received bytes are read (or dropped): the peer may send that many more."""
        self._buffered -= count
        if self._quic.release(count) and self._usable():
            self._wake()  # the driver's next pass announces the credit

    def _on_path_change(self) -> None:
        """A new path: PING over it at once, so packets lost on the old one are declared lost
        (and resent) after one round trip instead of after a backed-off probe timeout."""
        if self._usable() and self._handshake_completed:
            self._ping_uid += 1
            self._quic.send_ping(self._ping_uid)
            self._wake()

    def _wake(self) -> None:
        """Make the driver take another pass now (a close or a PING to send)."""
        self._woken = True
        if self._waiting is not None:
            self._waiting.cancel()

    async def _transmit(self) -> bool:
        """Send what aioquic has to send now, from the calling task: an application's data
        leaves without waiting for the driver, which only moves its timer. True if a send
        waited (it was a checkpoint)."""
        self._ack_now()
        try:
            return await self._flush()
        finally:
            self._rearm()

    def _rearm(self) -> None:
        """After work on aioquic outside the driver: datagrams a cancelled send left behind go
        with the driver's next pass, else the driver's wait ends at aioquic's new timer."""
        if self._outbox:
            self._wake()
        elif self._waiting is not None:
            self._waiting.deadline = self._deadline()

    def _ack_now(self) -> None:
        """Let a pending acknowledgement ride with the data about to leave, rather than leave
        alone when aioquic's ACK delay ends (RFC 9000 13.2.1 bounds the delay, not the haste):
        a request and its answer then cost two datagrams, not four."""
        self._quic.expedite_ack(trio.current_time())

    def _deadline(self) -> float:
        """When the driver must next run without being woken: aioquic's timer or a PING; while
        output is owed after input (:meth:`_pass`), that step's deadline, which looks at the
        timer again (the library's timers have a granularity of that wait, 1 ms: none that
        fell due meanwhile is late by more)."""
        if self._output_due != math.inf:
            return self._output_due
        timer = self._quic.get_timer()
        return min(math.inf if timer is None else timer, self._next_ping)

    def _notify(self) -> None:
        """Wake every task waiting for progress."""
        self._progress.unpark_all()

    # -- the driver ----------------------------------------------------------------------------

    async def _handshake(self) -> ConnectionFailed | None:
        """Wait for authentication; the failure (the connection then closing) if it did not."""
        with trio.move_on_after(self._config.handshake_timeout):
            while not (self._authenticated.is_set() or self._failure or self._terminated.is_set()):
                await self._next_progress()
        if self._failure is not None:
            return self._failure
        if self._authenticated.is_set():
            return None
        if self._terminated.is_set():
            self._failure = ConnectionClosed("connection closed during the handshake")
        else:
            self._failure = HandshakeTimeout(
                f"no handshake with {self._remote} within {self._config.handshake_timeout} s"
            )
            self._quic.close(QuicErrorCode.CONNECTION_REFUSED, "timeout")
            self._wake()
        return self._failure

    async def _drive(self) -> None:
        """Run aioquic's timers and keepalives, and read the endpoint when the connection owns
        it, until the connection ends.

        Between passes it waits (for a datagram) until :meth:`_deadline`; other tasks move that
        deadline (:meth:`_transmit`, :meth:`_answer`) or end the wait (:meth:`_wake`) without a
        task switch."""
        interval = self._config.keepalive_interval
        not_before = -math.inf
        try:
            while not self._terminated.is_set():
                received = False
                with trio.CancelScope(deadline=max(self._deadline(), not_before)) as waiting:
                    self._waiting = waiting
                    if not self._woken:
                        await self._receive()
                        received = True
                self._waiting = None
                timed_out = waiting.cancelled_caught and not self._woken
                input_only = received and not self._woken  # no wake asked for a step at once
                self._woken = False
                now = trio.current_time()
                # After datagrams (no timeout, no wake) a due timer waits for the next round,
                # which starts past its deadline: one look at the timer fewer per datagram.
                timer = self._quic.get_timer() if waiting.cancelled_caught else None
                if timer is not None and now >= timer:
                    self._quic.handle_timer(now)
                if interval is not None and self._authenticated.is_set():
                    if self._next_ping == math.inf:
                        self._next_ping = now + interval
                    elif now >= self._next_ping and self._usable():
                        self._ping_uid += 1
                        self._quic.send_ping(self._ping_uid)
                        self._next_ping = now + interval
                produced = self._produced
                await self._pass(after_input=input_only)
                # A timer aioquic leaves due after a pass that produced nothing (nothing it may
                # send yet) is looked at again a granule later: never a busy loop (nor a frozen
                # MockClock). One due again after a pass that sent is the pacer's next slot of
                # a bulk transfer: it goes at once, or pacing would cap a transfer at one
                # burst (16 datagrams) per granule.
                now = trio.current_time()
                idle = self._produced == produced
                due = timed_out and idle and self._deadline() <= now
                not_before = now + _TIMER_GRANULARITY if due else -math.inf
        finally:
            self._terminated.set()
            self._notify()

    async def _receive(self) -> None:
        """Wait for datagrams from the endpoint and feed the library every one already waiting
        from the peer, in one call (a batch: the driver's next pass answers them all with one
        output step); when a listener hands datagrams over instead, only wait."""
        if not self._reads_endpoint:
            await trio.sleep_forever()
        try:
            batch = await self._endpoint.receive_batch()
        except trio.ClosedResourceError:
            self._lose_endpoint()
            return
        remote = self._remote
        self._feed([data for data, source in batch if source == remote])

    async def _answer(self) -> None:
        """After a listener's reader fed datagrams (known to parse as QUIC): make the pass the
        driver would, in the reader's task (no hand-over to wait for)."""
        try:
            await self._pass(after_input=True)
        finally:
            self._rearm()

    async def _pass(self, *, after_input: bool = False) -> None:
        """Hand the library's events to their readers and send what it produced.

        After input on an authenticated connection that woke tasks (a message arrived), the
        output step waits for them instead, where a pending ACK rides with the next data
        (``acks_ride``: aioquic): the first to send, or to wait again, takes what the library
        has (:meth:`_flush`, :meth:`_next_progress`), so an answer leaves in one output step
        with its ACK, and the step the pass would have run, most often empty (aioquic delays
        its ACKs 1 ms), is saved. Should none of them do either within
        ``_TIMER_GRANULARITY`` (that ACK delay), the driver does."""
        settled = self._authenticated.is_set()
        self._process_events()
        self._check_authenticated()
        if self._progress.unpark_all() and after_input and settled and self._quic.acks_ride:
            self._output_due = min(self._output_due, trio.current_time() + _TIMER_GRANULARITY)
        else:
            await self._flush()

    def _feed(self, datagrams: list[bytes]) -> None:
        """Hand the library ``datagrams`` from the peer (the library authenticates each packet
        and drops what is not this connection's)."""
        quic, held = self._quic, self._buffered
        accepted = [data for data in datagrams if quic.accepts(held, len(data))]
        self.withheld += len(datagrams) - len(accepted)
        if not accepted:
            return
        quic.receive_datagrams(accepted, self._remote, trio.current_time())
        if self._is_client:
            self._check_peer_certificate()
        if self._failure is None and not self._closed_locally:
            error = quic.local_error()
            if error is not None:
                # the library closes by itself when the peer breaks the protocol
                self._failure = ConnectionClosed(f"the peer broke the protocol ({error})")
                logger.warning("connection to %s: %s", self._remote, self._failure)

    def _check_peer_certificate(self) -> None:
        """The client: check the server's key as soon as TLS has its certificate, before we
        answer."""
        if self._peer_id is not None or self._failure is not None:
            return
        certificate = self._quic.peer_certificate()
        if certificate is None:
            return
        # qh3 has queued the client's Finished by now, and would send a close in the Handshake
        # space that its server drops: the Finished leaves first, then the close (the server
        # can read it then). Nothing of ours follows it: no proof, no data.
        try:
            peer = peer_node_id(certificate)
        except NotANodeCertificate as exc:
            self._fail_authentication(f"peer certificate names no node: {exc}", after_flush=True)
            return
        if not self._accepts(peer):
            self._fail_authentication(
                f"peer {self._remote} is node {peer.short()}, not expected", after_flush=True
            )
            return
        self._peer_id = peer

    def _check_authenticated(self) -> None:
        """Authenticated once both sides checked each other: the server has verified the
        client's proof, and the client has heard that it did."""
        if (
            self._handshake_completed
            and self._failure is None
            and self._peer_id is not None
            and self._proven
        ):
            self._authenticated.set()

    def _fail_authentication(
        self, reason: str, code: int = AUTH_FAILED, *, after_flush: bool = False
    ) -> None:
        """Fail and close with ``code``; ``after_flush``: once what the library has queued
        has left (see :meth:`_check_peer_certificate`)."""
        logger.warning("connection to %s: %s", self._remote, reason)
        self._failure = PeerAuthenticationFailed(reason)
        if after_flush:
            self._close_after_flush = code
        else:
            self._close_with(code)

    def _close_with(self, code: int) -> None:
        phrase = "bad identity" if code == AUTH_FAILED else "proof required first"
        self._quic.close(code, phrase, QuicFrameType.CRYPTO)

    def _on_handshake_completed(self) -> None:
        """TLS is done: the client checks the server's certificate and sends its proof on its
        first stream, before anything else; the server checks a proof already here."""
        self._handshake_completed = True
        schedule = self._quic.key_schedule()
        if self._failure is not None or schedule is None:
            return
        self._exporter = exporter(schedule)
        if not self._is_client:
            self._check_proof()
            return
        self._check_peer_certificate()
        if self._peer_id is None:
            if self._failure is None:
                self._fail_authentication("peer presented no certificate")
            return
        stream_id = self._open_uni(_PROOF)
        proof = make_proof(self._key, self._peer_id, self._exporter)
        self._quic.send_stream_data(stream_id, proof, end_stream=True)
        if self._on_established is not None:
            self._on_established(self)

    def _before_proof(self, event: backend.StreamData) -> None:
        """The server, before the client's proof verified: the client's first unidirectional
        stream must carry it; data on other streams (reordered ahead of the proof) waits."""
        if self._failure is not None:
            return
        if event.stream_id == _CLIENT_FIRST_UNI:
            self._on_stream_data(event)
        else:
            self._buffered += len(event.data)  # counts against the receive bound meanwhile
            self._held_back.append(event)

    def _on_proof_stream(self, buffer: bytearray, end_stream: bool) -> None:
        """A proof stream's bytes: the client's proof at the server, the server's acceptance
        (empty, ended) at the client."""
        data = bytes(buffer)
        buffer.clear()
        self._release(len(data))
        if self._is_client:
            if data or self._proven:
                self._fail(ConnectionClosed("the peer's acceptance stream is malformed"))
            elif end_stream:
                self._proven = True
            return
        if self._proven:
            self._fail_authentication("the client sent a second proof")
            return
        self._proof += data
        if len(self._proof) > PROOF_SIZE or (end_stream and len(self._proof) < PROOF_SIZE):
            self._fail_authentication(f"the client's proof is not {PROOF_SIZE} bytes")
        else:
            self._check_proof()

    def _check_proof(self) -> None:
        """The server: once both the session's exporter and the whole proof are here, verify
        it; then accept the client, tell it so, and deliver what it sent meanwhile."""
        secret = self._exporter
        if secret is None or len(self._proof) != PROOF_SIZE or self._failure is not None:
            return
        try:
            client = check_proof(bytes(self._proof), self._key.node_id, secret)
        except BadProof as exc:
            self._fail_authentication(str(exc))
            return
        if not self._accepts(client):
            self._fail_authentication(f"peer {self._remote} is node {client.short()}, not allowed")
            return
        self._peer_id = client
        self._proven = True
        stream_id = self._open_uni(_PROOF)
        self._quic.send_stream_data(stream_id, b"", end_stream=True)
        held, self._held_back = self._held_back, []
        for event in held:
            self._buffered -= len(event.data)
            self._on_stream_data(event)
        if self._on_established is not None:
            self._on_established(self)

    def _fail(self, failure: ConnectionFailed) -> None:
        if self._failure is None:
            logger.warning("connection to %s: %s", self._remote, failure)
            self._failure = failure
            self._quic.close(QuicErrorCode.APPLICATION_ERROR, str(failure))

    def _process_events(self) -> None:
        for _ in range(100_000):
            event = self._quic.next_event()
            if event is None:
                return
            if isinstance(event, backend.StreamData):
                if self._proven or self._is_client:
                    self._on_stream_data(event)
                else:
                    self._before_proof(event)
            elif isinstance(event, backend.HandshakeCompleted):
                self._on_handshake_completed()
            elif isinstance(event, backend.StreamReset):
                self._peer_open.discard(event.stream_id)
                stream = self._streams.get(event.stream_id)
                if stream is not None:
                    stream._reset = True
            elif isinstance(event, backend.IdIssued):
                self._host_cids.add(event.cid)
            elif isinstance(event, backend.IdRetired):
                self._host_cids.discard(event.cid)
            elif isinstance(event, backend.Terminated):
                self._on_terminated(event)
        logger.error("connection to %s: event loop bound reached", self._remote)

    def _on_terminated(self, event: backend.Terminated) -> None:
        if self._failure is None and not self._closed_locally:
            error = self._quic.local_error()
            if error is not None:
                self._failure = ConnectionClosed(f"the connection ended ({error})")
            elif event.error_code == AUTH_FAILED:
                self._failure = PeerAuthenticationFailed("the peer rejected our identity")
            elif event.error_code == AUTH_REQUIRED:
                self._failure = PeerAuthenticationFailed("the peer wanted our proof first")
            elif event.reason.lower() == "idle timeout":
                self._failure = ConnectionClosed("idle timeout")
            else:
                self._failure = ConnectionClosed(
                    f"closed by peer (code {event.error_code:#x}: {event.reason!r})"
                )
            logger.info("connection to %s ended: %s", self._remote, self._failure)
        self._terminated.set()

    def _on_stream_data(self, event: backend.StreamData) -> None:
        stream_id = event.stream_id
        self._buffered += len(event.data)
        if bool(stream_id & 1) == self._is_client:  # the peer opened it
            if event.end_stream:
                self._peer_open.discard(stream_id)
            else:
                self._peer_open.add(stream_id)
        if stream_id & 2:  # unidirectional: the peer's message or control stream
            buffer = self._framing.setdefault(stream_id, bytearray())
            buffer += event.data
            kind = self._uni_kinds.get(stream_id)
            if kind is None and buffer:
                kind = self._uni_kinds[stream_id] = bytes(buffer[:1])
                del buffer[:1]
                self._release(1)
                if kind != _PROOF and not (self._proven or self._is_client):
                    self._fail_authentication(
                        f"the client sent stream kind {kind!r} before its proof", AUTH_REQUIRED
                    )
            if self._failure is not None and not (self._proven or self._is_client):
                self._release(len(buffer))
                buffer.clear()
            elif kind == _MESSAGES:
                self._split_messages(buffer, self._messages)
            elif kind == _CONTROL:
                self._split_messages(buffer, self._controls)
            elif kind == _PROOF:
                self._on_proof_stream(buffer, event.end_stream)
            elif kind is not None:
                self._fail(ConnectionClosed(f"peer opened a stream of unknown kind {kind!r}"))
                self._release(len(buffer))
                buffer.clear()
            if event.end_stream:  # what is left is a message that will never complete
                self._release(len(self._framing.pop(stream_id)))
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                stream = QuicStream(self, stream_id)
                self._streams[stream_id] = stream
                self._new_streams.append(stream)
            stream._receive(event.data, event.end_stream)

    def _split_messages(self, buffer: bytearray, queue: deque[bytes]) -> None:
        while len(buffer) >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer)
            if length > self._config.max_message_size:
                self._fail(ConnectionClosed(f"peer sent a message of {length} bytes"))
                self._release(len(buffer))
                buffer.clear()
                return
            end = _LENGTH.size + length
            if len(buffer) < end:
                return
            queue.append(bytes(buffer[_LENGTH.size : end]))
            del buffer[:end]

    async def _flush(self) -> bool:
        """Send aioquic's datagrams, in order, whichever task (driver or sender) calls; True
        if it waited for the endpoint (then it has been through a checkpoint).

        The output step's datagrams leave with ``send_batch_nowait``, without a scheduler
        round (on a real socket, runs of them in one system call: UDP GSO); only when the
        socket's buffer is full does the task wait, in ``send_to``, for the first that did not
        fit. The library's pacer and congestion window still decide how much
        ``datagrams_to_send`` hands over at once."""
        outbox = self._outbox
        self._output_due = math.inf
        datagrams = self._quic.datagrams_to_send(trio.current_time())
        self._produced += len(datagrams)
        outbox += datagrams
        endpoint, remote = self._endpoint, self._remote
        waited = False
        while outbox:
            try:
                del outbox[: endpoint.send_batch_nowait(outbox, remote)]
                if not outbox:
                    break
                data = outbox.pop(0)
                try:
                    await endpoint.send_to(data, remote)
                    waited = True
                except trio.Cancelled:
                    outbox.insert(0, data)  # a cancelled send did not happen: it goes next
                    raise
            except trio.ClosedResourceError:
                outbox.clear()
                self._lose_endpoint()
                break
            except OSError as exc:  # what of a failed batch left is unknown: QUIC resends
                logger.debug("connection to %s: send failed: %s", self._remote, exc)
                outbox.clear()
        code, self._close_after_flush = self._close_after_flush, None
        if code is not None:
            self._close_with(code)
            waited = await self._flush() or waited
        return waited

    def _lose_endpoint(self) -> None:
        """The endpoint (or every path of the link) closed: the connection is over."""
        if self._failure is None and not self._closed_locally:
            what = "no path to the peer is left" if self.link else "the UDP endpoint was closed"
            self._failure = ConnectionClosed(what)
        self._terminated.set()
        self._wake()
        self._notify()


@asynccontextmanager
async def connect(
    endpoint: UdpEndpoint,
    remote_address: Address,
    key: NodeKey,
    expected_peer: NodeId,
    *,
    config: ConnectionConfig | None = None,
    on_established: Callable[[Connection], object] | None = None,
) -> AsyncIterator[Connection]:
    """Connect to ``expected_peer`` at ``remote_address`` for the duration of the block.

    The block owns ``endpoint``'s receiving (use a demux view to share a socket). Raises
    :class:`PeerAuthenticationFailed`, :class:`HandshakeTimeout` or :class:`ConnectionClosed`
    if the connection cannot be made; leaving the block closes it.

    ``on_established(connection)`` is called (in the driver) as soon as this side has checked
    the peer, half a round trip before the block is entered (which waits for the peer to have
    checked us): what it sends then leaves with our last handshake flight, and the peer reads
    it only once it has accepted us. The traversal layer starts its signalling there.
    """
    settings = config if config is not None else ConnectionConfig()
    quic = _backend(key, settings, is_client=True).client()
    connection = Connection(
        quic,
        endpoint,
        remote_address,
        expected_peer.__eq__,
        settings,
        key,
        is_client=True,
        on_established=on_established,
        reads_endpoint=True,
    )
    quic.connect(remote_address, trio.current_time())
    async with _carried(connection) as connection:
        logger.info("connected to %s at %s", expected_peer.short(), remote_address)
        yield connection


@asynccontextmanager
async def answer(
    endpoint: UdpEndpoint,
    remote_address: Address,
    key: NodeKey,
    allowed_peers: Callable[[NodeId], bool],
    initial: bytes,
    admitted: Admitted,
    *,
    config: ConnectionConfig | None = None,
) -> AsyncIterator[Connection]:
    """Answer the Initial ``initial`` from ``remote_address`` (which ``admitted`` let through
    the owner's :class:`~.gate.HandshakeGate`) and accept that one peer, if
    ``allowed_peers`` allows it, for the duration of the block: the server side of
    :func:`connect`, for an owner that reads a shared socket itself and hands this connection
    an endpoint of its own (a :class:`~.link.PeerLink`). Raises like :func:`connect`.
    """
    settings = config if config is not None else ConnectionConfig()
    connection = _server_connection(
        endpoint,
        _backend(key, settings, is_client=False),
        key,
        remote_address,
        allowed_peers,
        settings,
        admitted,
    )
    connection._reads_endpoint = True
    connection._feed([initial])
    async with _carried(connection) as connection:
        logger.info("accepted %s from %s", connection.peer_id.short(), remote_address)
        yield connection


@asynccontextmanager
async def _carried(connection: Connection) -> AsyncIterator[Connection]:
    """Drive ``connection`` (its handshake under way) and hold it for the block once it is
    authenticated; raise its failure if it is not."""
    failure: ConnectionFailed | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(connection._drive)
        connection._wake()
        failure = await connection._handshake()
        if failure is None:
            try:
                yield connection
            finally:
                await connection._end("the block holding the connection ended")
                nursery.cancel_scope.cancel()
        else:
            await connection.aclose()
            nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _server_connection(
    endpoint: UdpEndpoint,
    quic_backend: Backend,
    key: NodeKey,
    remote: Address,
    allowed: Callable[[NodeId], bool],
    settings: ConnectionConfig,
    admitted: Admitted,
) -> Connection:
    """The server side of a connection an ``admitted`` Initial from ``remote`` opens (fed by
    the caller): with the gate's connection ids, so aioquic's transport parameters name the
    original destination and Retry source connection ids the client expects."""
    quic = quic_backend.server(admitted.original_cid, admitted.retry_cid)
    return Connection(quic, endpoint, remote, allowed, settings, key, is_client=False)


@attrs.define(eq=False)
class Listener:
    """Accepts connections from allowed nodes on one endpoint (see :func:`listen`)."""

    _endpoint: UdpEndpoint
    _backend: Backend
    _key: NodeKey
    _allowed: Callable[[NodeId], bool]
    _allow_address: Callable[[Address], bool]
    _config: ConnectionConfig
    _limits: HandshakeLimits
    _nursery: trio.Nursery
    failures: deque[ConnectionFailed] = attrs.field(init=False, factory=lambda: deque(maxlen=32))
    """The latest connections that failed their handshake, newest last."""
    _by_address: dict[Address, Connection] = attrs.field(init=False, factory=dict)
    _gate: HandshakeGate = attrs.field(init=False)
    _accepted_send: trio.MemorySendChannel[Connection] = attrs.field(init=False)
    _accepted: trio.MemoryReceiveChannel[Connection] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._gate = HandshakeGate(self._limits)
        self._accepted_send, self._accepted = trio.open_memory_channel(self._limits.max_handshakes)

    async def accept(self) -> Connection:
        """The next authenticated connection; it lives until closed or the listener ends."""
        return await self._accepted.receive()

    def statistics(self) -> HandshakeStatistics:
        """Handshakes now, and what was refused so far."""
        return self._gate.statistics()

    async def _read(self) -> None:
        """Read the endpoint in batches: feed each datagram to its connection (or start one),
        then let each connection that was fed answer once, for the whole batch."""
        while True:
            try:
                batch = await self._endpoint.receive_batch()
            except trio.ClosedResourceError:
                for connection in self._by_address.values():
                    connection._lose_endpoint()
                return
            fed: dict[Connection, list[bytes]] = {}  # in the order they were first fed
            for data, source in batch:
                known = self._by_address.get(source)
                if known is not None:
                    fed.setdefault(known, []).append(data)
                    continue
                header = parse_header(data)
                if header is not None and self._may_start(header, data, source):
                    await self._admit(header, data, source)
            for connection, datagrams in fed.items():
                connection._feed(datagrams)
                await connection._answer()

    def _may_start(self, header: QuicHeader, data: bytes, source: Address) -> bool:
        if not opens_connection(header, data):
            return False
        if not self._allow_address(source):
            logger.debug("listener: Initial from %s refused (address not allowed)", source)
            return False
        return True

    async def _admit(self, header: QuicHeader, data: bytes, source: Address) -> None:
        """Start a handshake for the Initial ``data`` if the gate lets it through."""
        admitted = await self._gate.admit(self._endpoint, header, source, self._evict)
        if admitted is None:
            return
        connection = _server_connection(
            self._endpoint,
            self._backend,
            self._key,
            source,
            self._allowed,
            self._config,
            admitted,
        )
        self._by_address[source] = connection
        self._gate.take(connection, admitted)
        connection._feed([data])
        connection._wake()  # its driver's first pass answers the Initial
        self._nursery.start_soon(self._serve, connection)

    @staticmethod
    def _evict(victim: object) -> None:
        assert isinstance(victim, Connection)
        victim._abort("handshake evicted to make room for another source")

    async def _serve(self, connection: Connection) -> None:
        remote = connection._remote
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(connection._drive)
                failure = await connection._handshake()
                self._gate.release(connection)
                if failure is None:
                    try:
                        self._accepted_send.send_nowait(connection)
                        logger.info("accepted %s from %s", connection.peer_id.short(), remote)
                    except trio.WouldBlock:
                        logger.warning("listener: accept queue full, closing %s", remote)
                        await connection.aclose()
                else:
                    self.failures.append(failure)
                    logger.info("listener: handshake from %s failed: %s", remote, failure)
                    await connection.aclose()
        finally:
            self._gate.release(connection)
            if self._by_address.get(remote) is connection:
                del self._by_address[remote]


@asynccontextmanager
async def listen(
    endpoint: UdpEndpoint,
    key: NodeKey,
    allowed_peers: Collection[NodeId] | Callable[[NodeId], bool],
    *,
    allow_address: Callable[[Address], bool] | None = None,
    max_handshakes: int = 16,
    max_handshakes_per_source: int = 4,
    retry_threshold: int = 4,
    config: ConnectionConfig | None = None,
) -> AsyncIterator[Listener]:
    """Accept connections from ``allowed_peers`` (node ids, or a predicate) during the block.

    Only an Initial from an address ``allow_address`` accepts (default: any) starts a
    handshake, at most ``max_handshakes`` at a time and ``max_handshakes_per_source`` from one
    source that proved its address; once ``retry_threshold`` handshakes from unproven
    addresses are pending, the others must prove theirs with a Retry first (see
    :class:`HandshakeLimits`). The block owns ``endpoint``'s receiving; leaving it closes every
    connection accepted here.
    """
    limits = HandshakeLimits(max_handshakes, max_handshakes_per_source, retry_threshold)
    settings = config if config is not None else ConnectionConfig()
    allowed = allowed_peers if callable(allowed_peers) else frozenset(allowed_peers).__contains__
    async with trio.open_nursery() as nursery:
        listener = Listener(
            endpoint,
            _backend(key, settings, is_client=False),
            key,
            allowed,
            allow_address if allow_address is not None else (lambda _: True),
            settings,
            limits,
            nursery,
        )
        nursery.start_soon(listener._read)
        try:
            yield listener
        finally:
            with trio.CancelScope(shield=True):
                for connection in list(listener._by_address.values()):
                    await connection._end("the listener ended")
            nursery.cancel_scope.cancel()
