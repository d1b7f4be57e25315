"""QUIC connections between nodes: qh3's or aioquic's sans-IO core driven by Trio, mutually
authenticated by node id (see :mod:`macula_nat.connection.driver`)."""

from macula_nat.connection.admission import HandshakeLimits
from macula_nat.connection.certificate import node_certificate, peer_node_id
from macula_nat.connection.driver import (
    ALPN,
    Connection,
    ConnectionConfig,
    ConnectionInfo,
    ConnectionStatistics,
    HandshakeStatistics,
    Listener,
    QuicStream,
    answer,
    connect,
    listen,
)
from macula_nat.connection.errors import (
    ConnectionClosed,
    ConnectionFailed,
    HandshakeTimeout,
    PeerAuthenticationFailed,
)
from macula_nat.connection.link import ConnectionMethod, LinkStatistics, PeerLink

__all__ = [
    "ALPN",
    "Connection",
    "ConnectionClosed",
    "ConnectionConfig",
    "ConnectionFailed",
    "ConnectionInfo",
    "ConnectionMethod",
    "ConnectionStatistics",
    "HandshakeLimits",
    "HandshakeStatistics",
    "HandshakeTimeout",
    "LinkStatistics",
    "Listener",
    "PeerAuthenticationFailed",
    "PeerLink",
    "QuicStream",
    "answer",
    "connect",
    "listen",
    "node_certificate",
    "peer_node_id",
]
