"""NAT traversal: how two nodes get a path, and the connections that ride it.

Pure parts: :mod:`.strategy` (the decision table over two profiles), :mod:`.prediction` (port
prediction and birthday plans), :mod:`.punch_wire` (signalling and probe frames),
:mod:`.prover` (which peer addresses are proven). Actors and handles: :mod:`.puncher`,
:mod:`.coordinator` (``macula_nat_coordinator``), :mod:`.connector` (``macula_nat_connector``).
A running node has them as ``nat.coordinator`` and ``nat.connector``.
"""

from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.connector import Connector
from macula_nat.traversal.coordinator import Coordinator, CoordinatorStatistics
from macula_nat.traversal.errors import (
    ConnectTimeout,
    NoRelay,
    NotConnected,
    PunchFailed,
    SymmetricNat,
    TraversalError,
)
from macula_nat.traversal.puncher import PendingPunch, PunchRef

__all__ = [
    "ConnectTimeout",
    "Connector",
    "Coordinator",
    "CoordinatorStatistics",
    "NoRelay",
    "NotConnected",
    "PendingPunch",
    "PunchFailed",
    "PunchRef",
    "SymmetricNat",
    "TraversalConfig",
    "TraversalError",
]
