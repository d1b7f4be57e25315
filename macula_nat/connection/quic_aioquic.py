"""The aioquic backend: aioquic's pure-Python ``QuicConnection`` behind the driver's seam.

aioquic has no public API for three things the driver needs, so this adapter (and only it)
reads aioquic's private state: the peer's certificate, the smoothed RTT, a stream's send buffer,
a pending ACK's deadline, and whether aioquic closed the connection itself. Its flow control
follows the application (see :class:`_FlowQuicConnection`), which means overriding aioquic's
private limit writers.
"""

from __future__ import annotations

import ssl
from typing import Final

from aioquic import tls
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import Limit, QuicConnection
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream as QuicStreamState
from cryptography import x509

from macula_nat.connection import backend
from macula_nat.connection.certificate import node_certificate
from macula_nat.connection.proof import KeySchedule
from macula_nat.identity import NodeKey
from macula_nat.net.address import Address

__all__ = ["AioquicBackend", "AioquicConnection"]

_ACK_NOW: Final = 1e-6
"""How far before now an expedited ACK is made due (see :meth:`AioquicConnection.expedite_ack`)."""


def _streams_due(limit: Limit) -> bool:
    """Whether aioquic would announce ``limit`` (a MAX_STREAMS) now: it waits until the peer
    has fewer streams left to open than the update would grant. Every stream of the peer's that
    ends raises the limit by one, which then waits (after the handshake: the peer's proof or
    acceptance stream), so "raised but not sent" alone would call aioquic on every packet."""
    return limit.value != limit.sent and limit.sent - limit.used < limit.value - limit.sent


class _FlowQuicConnection(QuicConnection):
    """aioquic's connection with flow control that follows the application.

    aioquic doubles its windows once half is used, whether the application has read the data
    or not. Here the peer's connection credit is ``window`` bytes beyond what the application
    has read (:meth:`release`), and a stream's is ``window`` beyond what aioquic has handed
    over (the connection credit binds first; this bounds aioquic's reassembly per stream).
    Credit is announced in steps of an eighth of the window, or at once while the peer has
    less than half of it left (it may be waiting).
    """

    def __init__(
        self,
        *,
        configuration: QuicConfiguration,
        window: int,
        original_destination_connection_id: bytes | None = None,
        retry_source_connection_id: bytes | None = None,
    ) -> None:
        super().__init__(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        self.window = window
        self._step = window // 8
        """Credit is announced in steps of at least this many bytes ..."""
        self._short = window // 2
        """... or at once while the peer has less than this left."""
        self.released = 0
        """Bytes the application has read (or dropped) of all that aioquic delivered."""
        uni = self._local_max_streams_uni
        uni.value = uni.sent = backend.PEER_UNI_STREAMS

    def release(self, count: int) -> bool:
        """Count ``count`` more bytes read; whether the peer should hear of new credit now."""
        self.released += count
        limit = self._local_max_data
        return self._due(limit.sent, limit.used, self.released)

    def _due(self, sent: int, used: int, base: int) -> bool:
        return base + self.window - sent >= self._step or sent - used < self._short

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        limit = self._local_max_data
        if self._due(limit.sent, limit.used, self.released):
            limit.value = max(limit.value, self.released + self.window)
        if limit.value == limit.sent and not (
            _streams_due(self._local_max_streams_bidi) or _streams_due(self._local_max_streams_uni)
        ):
            return  # nothing to announce: aioquic would write no frame (run on every packet)
        used, limit.used = limit.used, 0  # hidden from aioquic, which would double the window
        try:
            super()._write_connection_limits(builder, space)
        finally:
            limit.used = used

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStreamState
    ) -> None:
        local = stream.max_stream_data_local
        if not local:
            return  # our own unidirectional streams: the peer sends nothing on them
        receiver = stream.receiver
        base = receiver.starting_offset()
        if self._due(stream.max_stream_data_local_sent, receiver.highest_offset, base):
            local = stream.max_stream_data_local = max(local, base + self.window)
        if stream.max_stream_data_local_sent == local:
            return  # as above: no frame to write
        highest, receiver.highest_offset = receiver.highest_offset, 0  # as above
        try:
            super()._write_stream_limits(builder, space, stream)
        finally:
            receiver.highest_offset = highest


class AioquicConnection:
    """One aioquic connection as a :class:`~macula_nat.connection.backend.QuicConnectionPort`."""

    acks_ride: Final = True
    """A pending ACK leaves with the next data (:meth:`expedite_ack`)."""

    def __init__(self, quic: _FlowQuicConnection) -> None:
        self.quic = quic
        """aioquic's connection itself (tests drive it to play a misbehaving peer)."""

    @property
    def host_cid(self) -> bytes:
        return self.quic.host_cid

    def connect(self, address: Address, now: float) -> None:
        self.quic.connect(address, now=now)

    def receive_datagrams(self, datagrams: list[bytes], source: Address, now: float) -> None:
        receive = self.quic.receive_datagram
        for data in datagrams:
            receive(data, source, now=now)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        return [data for data, _ in self.quic.datagrams_to_send(now=now)]

    def get_timer(self) -> float | None:
        return self.quic.get_timer()

    def handle_timer(self, now: float) -> None:
        self.quic.handle_timer(now)

    def next_event(self) -> backend.Event | None:
        while (event := self.quic.next_event()) is not None:
            if (ours := backend.translate(event, events)) is not None:
                return ours
        return None

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.quic.send_stream_data(stream_id, data, end_stream)

    def next_stream_id(self, *, unidirectional: bool) -> int:
        return self.quic.get_next_available_stream_id(is_unidirectional=unidirectional)

    def send_ping(self, uid: int) -> None:
        self.quic.send_ping(uid)

    def close(self, error_code: int, reason: str, frame_type: int | None = None) -> None:
        self.quic.close(error_code=error_code, frame_type=frame_type, reason_phrase=reason)

    def peer_certificate(self) -> x509.Certificate | None:
        context = getattr(self.quic, "tls", None)  # set once the connection started
        return None if context is None else context._peer_certificate

    def key_schedule(self) -> KeySchedule | None:
        context = getattr(self.quic, "tls", None)
        return None if context is None else context.key_schedule

    def rtt(self) -> float:
        return float(self.quic._loss._rtt_smoothed)

    def unsent(self, stream_id: int) -> int:
        stream = self.quic._streams.get(stream_id)
        return 0 if stream is None else len(stream.sender._buffer)

    def expedite_ack(self, now: float) -> None:
        space = self.quic._spaces.get(tls.Epoch.ONE_RTT)
        if space is not None and space.ack_at is not None:
            # Strictly past: aioquic then also lets the packet carrying it skip pacing, as it
            # does for any due ACK (at exactly now it would pace, and hold the ACK back).
            space.ack_at = min(space.ack_at, now - _ACK_NOW)

    def release(self, count: int) -> bool:
        return self.quic.release(count)

    def accepts(self, held: int, size: int) -> bool:
        return True  # the credit follows the application's reads (release): nothing to drop

    def reassembly(self) -> int:
        return sum(len(stream.receiver._buffer) for stream in self.quic._streams.values())

    def local_error(self) -> str | None:
        close = self.quic._close_event
        if self.quic._close_pending and close is not None:
            return f"code {close.error_code:#x}: {close.reason_phrase}"
        return None


class AioquicBackend:
    """aioquic configured for one side of a node (see :func:`~.backend.open_backend`)."""

    name: backend.BackendName = "aioquic"

    def __init__(
        self, key: NodeKey, is_client: bool, window: int, idle_timeout: float, cid_length: int
    ) -> None:
        configuration = QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[backend.ALPN],
            idle_timeout=idle_timeout,
            max_data=window,
            max_stream_data=window,
            verify_mode=ssl.CERT_NONE,  # no CA: the driver checks the key against the node id
            connection_id_length=cid_length,
            max_datagram_size=1280,
        )
        configuration.certificate = node_certificate(key)
        configuration.private_key = key.private_key
        self._configuration = configuration
        self._window = window

    def client(self) -> AioquicConnection:
        return AioquicConnection(
            _FlowQuicConnection(configuration=self._configuration, window=self._window)
        )

    def server(self, original_cid: bytes, retry_cid: bytes | None) -> AioquicConnection:
        return AioquicConnection(
            _FlowQuicConnection(
                configuration=self._configuration,
                window=self._window,
                original_destination_connection_id=original_cid,
                retry_source_connection_id=retry_cid,
            )
        )
