"""Relays: the node that forwards opaque datagrams between authenticated node sessions, and the
client a node registers with it through.

See :mod:`.frames` for the wire format, :mod:`.link` and :mod:`.handshake` for authentication,
:mod:`.core` for the relay's rules, :mod:`.node` for its actor tree and :mod:`.client` for the
node's side; :mod:`.tcp_server` and :mod:`.tcp_client` carry the same frames over TCP/TLS (or a
WebSocket) for networks that block UDP.
"""

from .client import (
    ClientConfig,
    ClientStatistics,
    RelayClient,
    RelayClientServer,
    RelayRegistration,
    open_relay_client,
)
from .client_session import RelaySession, SessionStatistics
from .errors import RegistrationFailed, RelayError, RelayRefused, RelayTimeout, SessionClosed
from .frames import MAX_PAYLOAD, FrameError, Reason, is_relay_frame
from .node import RelayNode, SessionInfo, open_relay
from .registry import RegistryConfig, RelayRegistry, TcpFallback, open_relay_registry
from .relayed_directory import RelayedDirectory
from .selection import NoRelay, RelayInfo
from .settings import MIB, RelayConfig, RelaySettings
from .statistics import DropStatistics, FairnessStatistics, RefusalStatistics, RelayStatistics
from .tcp_client import TcpRelayEndpoint, connect_tcp_relay, open_tcp_relay_endpoint
from .tcp_server import TcpListenerStatistics, TcpRelayConfig

__all__ = [
    "MAX_PAYLOAD",
    "MIB",
    "ClientConfig",
    "ClientStatistics",
    "DropStatistics",
    "FairnessStatistics",
    "FrameError",
    "NoRelay",
    "Reason",
    "RefusalStatistics",
    "RegistrationFailed",
    "RegistryConfig",
    "RelayClient",
    "RelayClientServer",
    "RelayConfig",
    "RelayError",
    "RelayInfo",
    "RelayNode",
    "RelayRefused",
    "RelayRegistration",
    "RelayRegistry",
    "RelaySession",
    "RelaySettings",
    "RelayStatistics",
    "RelayTimeout",
    "RelayedDirectory",
    "SessionClosed",
    "SessionInfo",
    "SessionStatistics",
    "TcpFallback",
    "TcpListenerStatistics",
    "TcpRelayConfig",
    "TcpRelayEndpoint",
    "connect_tcp_relay",
    "is_relay_frame",
    "open_relay",
    "open_relay_client",
    "open_relay_registry",
    "open_tcp_relay_endpoint",
]
