"""macula-nat: NAT traversal for Trio, as a supervised actor tree.

Everything the guide names is here: ``from macula_nat import open_nat_system, NatConfig,
NatProfile, ...`` (the README's API table lists each name), and the guide's Erlang modules as
``macula_nat.nat_detector``, ``macula_nat.nat_cache``, ... (:mod:`macula_nat.erlang`).
:mod:`macula_nat.actors` is the runtime everything runs on; ``macula-nat --help`` lists the
command line.

Names are imported on first use (PEP 562), so ``import macula_nat`` (and the command line's
``--help``) does not load the QUIC stack until something needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from macula_nat.actors import (
        Actor,
        ActorExited,
        ActorRef,
        CallTimeout,
        NoProc,
        open_actor,
        run_actor,
    )
    from macula_nat.connection import (
        Connection,
        ConnectionClosed,
        ConnectionFailed,
        ConnectionInfo,
        ConnectionMethod,
        HandshakeTimeout,
        PeerAuthenticationFailed,
    )
    from macula_nat.dht.config import DhtConfig
    from macula_nat.directory import DirectoryError
    from macula_nat.erlang import (
        nat_cache,
        nat_connector,
        nat_coordinator,
        nat_detector,
        nat_system,
        relay_node,
        relay_registry,
    )
    from macula_nat.gateway import Gateway, GatewayConfig, open_gateway
    from macula_nat.identity import NodeId, NodeKey
    from macula_nat.log_levels import UnknownLogger, set_log_level
    from macula_nat.nat.cache import (
        CacheResult,
        CacheStats,
        Fresh,
        NotFound,
        PrewarmResult,
        ProfileCache,
        Stale,
    )
    from macula_nat.nat.detector import (
        AddObservation,
        Detect,
        GetLocalProfile,
        NatDetector,
        NatProfileChanged,
        Refresh,
        Subscribe,
        Unsubscribe,
    )
    from macula_nat.nat.errors import DetectionError, DetectionTimeout, NoObservers, NotDetected
    from macula_nat.nat.profile import Confidence, NatProfile
    from macula_nat.relay import (
        NoRelay,
        RegistrationFailed,
        RegistryConfig,
        RelayConfig,
        RelayError,
        RelayInfo,
        RelayNode,
        RelayRefused,
        RelayRegistry,
        RelaySession,
        RelaySettings,
        RelayTimeout,
        SessionClosed,
        SessionInfo,
    )
    from macula_nat.system import (
        NatConfig,
        NatSystem,
        NoNatSystem,
        current_system,
        open_nat_system,
        run_nat_system,
    )
    from macula_nat.traversal import (
        Connector,
        ConnectTimeout,
        Coordinator,
        NotConnected,
        PendingPunch,
        PunchFailed,
        PunchRef,
        SymmetricNat,
        TraversalConfig,
        TraversalError,
    )

__all__ = [
    "Actor",
    "ActorExited",
    "ActorRef",
    "AddObservation",
    "CacheResult",
    "CacheStats",
    "CallTimeout",
    "Confidence",
    "ConnectTimeout",
    "Connection",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionInfo",
    "ConnectionMethod",
    "Connector",
    "Coordinator",
    "Detect",
    "DetectionError",
    "DetectionTimeout",
    "DhtConfig",
    "DirectoryError",
    "Fresh",
    "Gateway",
    "GatewayConfig",
    "GetLocalProfile",
    "HandshakeTimeout",
    "NatConfig",
    "NatDetector",
    "NatProfile",
    "NatProfileChanged",
    "NatSystem",
    "NoNatSystem",
    "NoObservers",
    "NoProc",
    "NoRelay",
    "NodeId",
    "NodeKey",
    "NotConnected",
    "NotDetected",
    "NotFound",
    "PeerAuthenticationFailed",
    "PendingPunch",
    "PrewarmResult",
    "ProfileCache",
    "PunchFailed",
    "PunchRef",
    "Refresh",
    "RegistrationFailed",
    "RegistryConfig",
    "RelayConfig",
    "RelayError",
    "RelayInfo",
    "RelayNode",
    "RelayRefused",
    "RelayRegistry",
    "RelaySession",
    "RelaySettings",
    "RelayTimeout",
    "SessionClosed",
    "SessionInfo",
    "Stale",
    "Subscribe",
    "SymmetricNat",
    "TraversalConfig",
    "TraversalError",
    "UnknownLogger",
    "Unsubscribe",
    "current_system",
    "nat_cache",
    "nat_connector",
    "nat_coordinator",
    "nat_detector",
    "nat_system",
    "open_actor",
    "open_gateway",
    "open_nat_system",
    "relay_node",
    "relay_registry",
    "run_actor",
    "run_nat_system",
    "set_log_level",
]

_EXPORTS: Final[dict[str, str]] = {
    "NatConfig": "macula_nat.system",
    "NatSystem": "macula_nat.system",
    "NoNatSystem": "macula_nat.system",
    "current_system": "macula_nat.system",
    "open_nat_system": "macula_nat.system",
    "run_nat_system": "macula_nat.system",
    "NodeId": "macula_nat.identity",
    "NodeKey": "macula_nat.identity",
    "Confidence": "macula_nat.nat.profile",
    "NatProfile": "macula_nat.nat.profile",
    "AddObservation": "macula_nat.nat.detector",
    "Detect": "macula_nat.nat.detector",
    "GetLocalProfile": "macula_nat.nat.detector",
    "NatDetector": "macula_nat.nat.detector",
    "NatProfileChanged": "macula_nat.nat.detector",
    "Refresh": "macula_nat.nat.detector",
    "Subscribe": "macula_nat.nat.detector",
    "Unsubscribe": "macula_nat.nat.detector",
    "DetectionError": "macula_nat.nat.errors",
    "DetectionTimeout": "macula_nat.nat.errors",
    "NoObservers": "macula_nat.nat.errors",
    "NotDetected": "macula_nat.nat.errors",
    "CacheResult": "macula_nat.nat.cache",
    "CacheStats": "macula_nat.nat.cache",
    "Fresh": "macula_nat.nat.cache",
    "NotFound": "macula_nat.nat.cache",
    "PrewarmResult": "macula_nat.nat.cache",
    "ProfileCache": "macula_nat.nat.cache",
    "Stale": "macula_nat.nat.cache",
    "DirectoryError": "macula_nat.directory",
    "DhtConfig": "macula_nat.dht.config",
    "ConnectTimeout": "macula_nat.traversal",
    "Connector": "macula_nat.traversal",
    "Coordinator": "macula_nat.traversal",
    "NotConnected": "macula_nat.traversal",
    "PendingPunch": "macula_nat.traversal",
    "PunchFailed": "macula_nat.traversal",
    "PunchRef": "macula_nat.traversal",
    "SymmetricNat": "macula_nat.traversal",
    "TraversalConfig": "macula_nat.traversal",
    "TraversalError": "macula_nat.traversal",
    "Connection": "macula_nat.connection",
    "ConnectionClosed": "macula_nat.connection",
    "ConnectionFailed": "macula_nat.connection",
    "ConnectionInfo": "macula_nat.connection",
    "ConnectionMethod": "macula_nat.connection",
    "HandshakeTimeout": "macula_nat.connection",
    "PeerAuthenticationFailed": "macula_nat.connection",
    "NoRelay": "macula_nat.relay",
    "RegistrationFailed": "macula_nat.relay",
    "RegistryConfig": "macula_nat.relay",
    "RelayConfig": "macula_nat.relay",
    "RelayError": "macula_nat.relay",
    "RelayInfo": "macula_nat.relay",
    "RelayNode": "macula_nat.relay",
    "RelayRefused": "macula_nat.relay",
    "RelayRegistry": "macula_nat.relay",
    "RelaySession": "macula_nat.relay",
    "RelaySettings": "macula_nat.relay",
    "RelayTimeout": "macula_nat.relay",
    "SessionClosed": "macula_nat.relay",
    "SessionInfo": "macula_nat.relay",
    "Gateway": "macula_nat.gateway",
    "GatewayConfig": "macula_nat.gateway",
    "open_gateway": "macula_nat.gateway",
    "Actor": "macula_nat.actors",
    "ActorExited": "macula_nat.actors",
    "ActorRef": "macula_nat.actors",
    "CallTimeout": "macula_nat.actors",
    "NoProc": "macula_nat.actors",
    "open_actor": "macula_nat.actors",
    "run_actor": "macula_nat.actors",
    "UnknownLogger": "macula_nat.log_levels",
    "set_log_level": "macula_nat.log_levels",
}
"""Each root name -> the module that defines it."""

_FACADES: Final = frozenset(
    {
        "nat_cache",
        "nat_connector",
        "nat_coordinator",
        "nat_detector",
        "nat_system",
        "relay_node",
        "relay_registry",
    }
)
"""The guide's Erlang modules, as modules of :mod:`macula_nat.erlang`."""


def __getattr__(name: str) -> Any:
    if name in _FACADES:
        value: Any = importlib.import_module(f"macula_nat.erlang.{name}")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'macula_nat' has no attribute {name!r}")
    globals()[name] = value  # the next access does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
