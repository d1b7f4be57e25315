"""The qh3 backend: qh3's ``QuicConnection`` (a Rust packet core) behind the driver's seam.

Differences from aioquic this adapter absorbs:

- **Identity.** A qh3 server never requests a client certificate, so the client proves its node
  key inside the connection (:mod:`macula_nat.connection.proof`); the server is authenticated by
  its certificate. qh3 leaves EdDSA out of the signature algorithms a client offers, so the
  client offers ed25519 (``signature_algorithms``), the only algorithm a node key signs with.
- **Receive memory.** qh3's core grants credit as it hands data over, not as the application
  reads it, and has no API to tie the two. So the window is split: while the application holds
  half of it unread (or the room of the largest message, if more) the driver drops incoming
  datagrams (:meth:`Qh3Connection.accepts`; the peer resends them later), and qh3's credit is
  the rest (at least :data:`MIN_CREDIT`): what the peer makes this side hold, read or not, stays
  within the window, or within the largest message plus :data:`SLACK` and :data:`MIN_CREDIT`
  when that is more (a message as large as the whole window). Small datagrams
  (:data:`SMALL_DATAGRAM`: ACKs, PINGs) still pass for :data:`SLACK` bytes more, so a connection
  whose application stops reading for longer than the idle timeout stays alive, as flow control
  keeps it on aioquic.
- qh3 schedules its ACKs itself; the smoothed RTT is read from its core (no public property).
- **Failures.** qh3's core can raise where aioquic would not; the adapter ends that connection
  with INTERNAL_ERROR and says why (:meth:`Qh3Connection.local_error`) instead of letting the
  exception take down the listener that drives it. One such raise is no failure: a qh3 server
  answering an aioquic client, whose 1200-byte Initial datagram is a short packet and zeros
  after it, counts only the packet towards its anti-amplification budget (RFC 9000 8.1) and
  raises "packet builder capacity exhausted" when the budget runs out mid-flight. Before the
  handshake completes the adapter takes that as "nothing more to send now": the datagrams built
  so far leave, and the client's next datagram (its ACK) widens the budget. That output step
  calls qh3's core directly (its ``datagrams_to_send`` would lose the datagrams already built).
"""

from __future__ import annotations

import ssl
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from qh3.quic import events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection, QuicConnectionError
from qh3.quic.packet import QuicErrorCode
from qh3.tls import SignatureAlgorithm, load_pem_private_key, load_pem_x509_certificates

from macula_nat.connection import backend
from macula_nat.connection.certificate import node_certificate
from macula_nat.connection.proof import KeySchedule
from macula_nat.identity import NodeKey
from macula_nat.net.address import Address

__all__ = ["MIN_CREDIT", "SLACK", "SMALL_DATAGRAM", "Qh3Backend", "Qh3Connection"]

MIN_CREDIT: Final = 256 * 1024
"""The least flow-control credit qh3 gets, whatever room the largest message leaves."""
SMALL_DATAGRAM: Final = 256
"""Datagrams this small (ACKs, PINGs, at most a few bytes of stream data) pass while the
application holds its share of the window, up to :data:`SLACK`."""
SLACK: Final = 64 * 1024
"""What small datagrams may add to the application's share of the window."""
_AMPLIFICATION_LIMITED: Final = "packet builder capacity exhausted"
"""What qh3's core raises when its anti-amplification budget ends mid-flight."""


class Qh3Connection:
    """One qh3 connection as a :class:`~macula_nat.connection.backend.QuicConnectionPort`."""

    acks_ride: Final = False
    """qh3's core sends an ACK due after input alone, not with the data queued next: holding
    its output step back for the answer only delays the ACK (measured: two-process round trips
    1.05-1.24x slower, medians of alternating reps)."""

    def __init__(self, quic: QuicConnection, hold_limit: int) -> None:
        self.quic = quic
        self._hold_limit = hold_limit
        self._broken: str | None = None
        """Why qh3's core failed, once it did: the connection is over."""
        self._reported = False
        self._handshake_complete = False

    def _break(self, exc: QuicConnectionError) -> None:
        self._broken = f"qh3 failed: {exc.reason_phrase}"
        self.quic.close(QuicErrorCode.INTERNAL_ERROR, reason_phrase=exc.reason_phrase)

    @property
    def host_cid(self) -> bytes:
        return self.quic.host_cid

    def connect(self, address: Address, now: float) -> None:
        self.quic.connect(address, now)

    def receive_datagrams(self, datagrams: list[bytes], source: Address, now: float) -> None:
        if self._broken is None:
            try:
                self.quic.receive_many_datagrams(datagrams, source, now)
            except QuicConnectionError as exc:
                self._break(exc)

    def datagrams_to_send(self, now: float) -> list[bytes]:
        core = self.quic._core
        datagrams: list[bytes] = []
        if self._broken is not None or core is None:
            return datagrams
        try:
            while (transmit := core.poll_transmit(now)) is not None:
                datagrams.append(transmit[0])
        except RuntimeError as exc:
            if self._handshake_complete or _AMPLIFICATION_LIMITED not in str(exc):
                self._break(QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)))
        return datagrams

    def get_timer(self) -> float | None:
        return None if self._broken is not None else self.quic.get_timer()

    def handle_timer(self, now: float) -> None:
        try:
            self.quic.handle_timer(now)
        except QuicConnectionError as exc:
            self._break(exc)

    def next_event(self) -> backend.Event | None:
        if self._broken is not None:
            if self._reported:
                return None
            self._reported = True
            return backend.Terminated(QuicErrorCode.INTERNAL_ERROR, self._broken)
        while (event := self.quic.next_event()) is not None:
            if (ours := backend.translate(event, events)) is not None:
                if isinstance(ours, backend.HandshakeCompleted):
                    self._handshake_complete = True
                return ours
        return None

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if self._broken is None:
            try:
                self.quic.send_stream_data(stream_id, data, end_stream)
            except QuicConnectionError as exc:  # the core closed first (say, idle)
                self._break(exc)

    def next_stream_id(self, *, unidirectional: bool) -> int:
        return self.quic.get_next_available_stream_id(is_unidirectional=unidirectional)

    def send_ping(self, uid: int) -> None:
        if self._broken is None:
            try:
                self.quic.send_ping(uid)
            except QuicConnectionError as exc:
                self._break(exc)

    def close(self, error_code: int, reason: str, frame_type: int | None = None) -> None:
        self.quic.close(error_code=error_code, frame_type=frame_type, reason_phrase=reason)

    def peer_certificate(self) -> x509.Certificate | None:
        certificate = self.quic.get_peercert()
        return (
            None
            if certificate is None
            else x509.load_der_x509_certificate(certificate.public_bytes())
        )

    def key_schedule(self) -> KeySchedule | None:
        context = self.quic.tls
        return None if context is None else context.key_schedule

    def rtt(self) -> float:
        core = self.quic._core
        smoothed = None if core is None else core.smoothed_rtt
        return 0.0 if smoothed is None else float(smoothed)

    def unsent(self, stream_id: int) -> int:
        return self.quic.get_send_buffer_size(stream_id)

    def expedite_ack(self, now: float) -> None:
        """qh3's core decides when an ACK leaves; there is no deadline to move."""

    def release(self, count: int) -> bool:
        return False  # qh3 granted the credit when it handed the data over

    def accepts(self, held: int, size: int) -> bool:
        if size <= SMALL_DATAGRAM:
            return held < self._hold_limit + SLACK
        return held < self._hold_limit

    def reassembly(self) -> int:
        return 0  # inside qh3's core, which does not say; its credit (half the window) bounds it

    def local_error(self) -> str | None:
        if self._broken is not None:
            return self._broken
        core = self.quic._core
        error = None if core is None else core.local_error
        return None if error is None else f"code {error[0]:#x}: {error[2]}"


class Qh3Backend:
    """qh3 configured for one side of a node (see :func:`~.backend.open_backend`)."""

    name: backend.BackendName = "qh3"

    def __init__(
        self,
        key: NodeKey,
        is_client: bool,
        window: int,
        message_room: int,
        idle_timeout: float,
        cid_length: int,
    ) -> None:
        self._hold_limit = max(window // 2 - SLACK, message_room)
        credit = max(window - self._hold_limit - SLACK, MIN_CREDIT)
        configuration = QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[backend.ALPN],
            idle_timeout=idle_timeout,
            max_data=credit,
            max_stream_data=credit,
            verify_mode=ssl.CERT_NONE,  # no CA: the driver checks the key against the node id
            connection_id_length=cid_length,
        )
        pem = node_certificate(key).public_bytes(serialization.Encoding.PEM)
        configuration.certificate = load_pem_x509_certificates(pem)[0]
        configuration.private_key = load_pem_private_key(
            key.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        if is_client:
            configuration.signature_algorithms = [SignatureAlgorithm.ED25519]
        self._configuration = configuration

    def client(self) -> Qh3Connection:
        return Qh3Connection(QuicConnection(configuration=self._configuration), self._hold_limit)

    def server(self, original_cid: bytes, retry_cid: bytes | None) -> Qh3Connection:
        quic = QuicConnection(
            configuration=self._configuration,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_cid,
        )
        return Qh3Connection(quic, self._hold_limit)
