"""The seam between the connection driver and a QUIC library's sans-IO connection.

The driver (:mod:`macula_nat.connection.driver`) does the I/O, the timers and the node-id
authentication; a backend only turns datagrams into events and back. Two implement it: qh3
(:mod:`~macula_nat.connection.quic_qh3`, a Rust core: the default, several times faster) and
aioquic (:mod:`~macula_nat.connection.quic_aioquic`, pure Python). Both speak the same wire
protocol, so nodes on different backends connect to each other. Each library's private parts
the driver needs are read in its adapter only, never in the driver.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final, Literal, Protocol, get_args

import attrs
from cryptography import x509

from macula_nat.connection.proof import KeySchedule
from macula_nat.identity import NodeKey
from macula_nat.net.address import Address

__all__ = [
    "ALPN",
    "BACKENDS",
    "Backend",
    "BackendName",
    "Event",
    "HandshakeCompleted",
    "IdIssued",
    "IdRetired",
    "QuicConnectionPort",
    "StreamData",
    "StreamReset",
    "Terminated",
    "open_backend",
]

ALPN: Final = "macula-nat/1"
BackendName = Literal["qh3", "aioquic"]
BACKENDS: Final[tuple[BackendName, ...]] = get_args(BackendName)
PEER_UNI_STREAMS: Final = 3
"""Unidirectional streams a peer opens: its proof (or acceptance), messages and signalling."""


@attrs.frozen(slots=True)
class HandshakeCompleted:
    """TLS is done: the peer's certificate and the session's key schedule are final."""


@attrs.frozen(slots=True)
class StreamData:
    stream_id: int
    data: bytes
    end_stream: bool


@attrs.frozen(slots=True)
class StreamReset:
    stream_id: int


@attrs.frozen(slots=True)
class IdIssued:
    """This side issued a connection id: packets to it are this connection's."""

    cid: bytes


@attrs.frozen(slots=True)
class IdRetired:
    cid: bytes


@attrs.frozen(slots=True)
class Terminated:
    """The connection is over (closed by either side, or idle)."""

    error_code: int
    reason: str


Event = HandshakeCompleted | StreamData | StreamReset | IdIssued | IdRetired | Terminated


def translate(event: Any, events: ModuleType) -> Event | None:
    """A library's event as ours; None for one the driver has no use for. ``events`` is the
    library's events module: aioquic and qh3 name and shape the events alike."""
    if isinstance(event, events.StreamDataReceived):
        return StreamData(event.stream_id, event.data, event.end_stream)
    if isinstance(event, events.HandshakeCompleted):
        return HandshakeCompleted()
    if isinstance(event, events.StreamReset):
        return StreamReset(event.stream_id)
    if isinstance(event, events.ConnectionIdIssued):
        return IdIssued(event.connection_id)
    if isinstance(event, events.ConnectionIdRetired):
        return IdRetired(event.connection_id)
    if isinstance(event, events.ConnectionTerminated):
        return Terminated(event.error_code, event.reason_phrase)
    return None


class QuicConnectionPort(Protocol):
    """One QUIC connection of a library, sans-IO: what the driver calls."""

    @property
    def host_cid(self) -> bytes:
        """The connection id this side chose first (later ones arrive as :class:`IdIssued`)."""

    def connect(self, address: Address, now: float) -> None: ...
    def receive_datagrams(self, datagrams: list[bytes], source: Address, now: float) -> None:
        """Feed datagrams from ``source``, in order (one call for a batch)."""

    def datagrams_to_send(self, now: float) -> list[bytes]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> Event | None: ...
    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...
    def next_stream_id(self, *, unidirectional: bool) -> int: ...
    def send_ping(self, uid: int) -> None: ...
    def close(self, error_code: int, reason: str, frame_type: int | None = None) -> None: ...

    def peer_certificate(self) -> x509.Certificate | None:
        """The peer's certificate once TLS has it (a client checks it before answering)."""

    def key_schedule(self) -> KeySchedule | None:
        """The TLS key schedule (for the session's exporter), once there is one."""

    def rtt(self) -> float:
        """The library's smoothed RTT in seconds (0.0 before a sample)."""

    def unsent(self, stream_id: int) -> int:
        """Bytes of ``stream_id`` the library still holds to send (the send buffer)."""

    def expedite_ack(self, now: float) -> None:
        """Let a pending ACK ride with the data about to leave rather than wait its delay."""

    @property
    def acks_ride(self) -> bool:
        """Whether an ACK pending after input leaves with the application's next data (see
        :meth:`expedite_ack`), so the driver may leave the output step after input to the
        task that answers."""

    def release(self, count: int) -> bool:
        """The application read ``count`` bytes; whether the peer should hear of credit now."""

    def accepts(self, held: int, size: int) -> bool:
        """Whether to feed a datagram of ``size`` bytes while the application holds ``held``
        unread bytes (False: drop it, the peer resends; bounds memory where credit is not
        ours)."""

    def reassembly(self) -> int:
        """Bytes held for out-of-order stream data (0 where the library does not say; its
        credit then bounds it, see :meth:`accepts`)."""

    def local_error(self) -> str | None:
        """Why the library closed the connection by itself (the peer broke the protocol)."""


class Backend(Protocol):
    """A library configured for one side of one node: makes its connections."""

    name: BackendName

    def client(self) -> QuicConnectionPort: ...
    def server(self, original_cid: bytes, retry_cid: bytes | None) -> QuicConnectionPort: ...


def open_backend(
    name: BackendName,
    key: NodeKey,
    *,
    is_client: bool,
    window: int,
    message_room: int,
    idle_timeout: float,
    cid_length: int,
) -> Backend:
    """Backend ``name`` with ``key``'s certificate, the flow-control ``window`` (bytes the
    peer may send beyond what the application read; ``message_room`` of it is what the largest
    message takes) and the idle timeout."""
    if name == "qh3":
        from macula_nat.connection.quic_qh3 import Qh3Backend

        return Qh3Backend(key, is_client, window, message_room, idle_timeout, cid_length)
    if name == "aioquic":
        from macula_nat.connection.quic_aioquic import AioquicBackend

        return AioquicBackend(key, is_client, window, idle_timeout, cid_length)
    raise ValueError(f"unknown QUIC backend {name!r}: one of {', '.join(BACKENDS)}")
