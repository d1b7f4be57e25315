"""Why a connection to a node could not be made (the Erlang connector's error atoms)."""

from __future__ import annotations

from macula_nat.relay import selection

__all__ = [
    "ConnectTimeout",
    "NoRelay",
    "NotConnected",
    "PunchFailed",
    "SymmetricNat",
    "TraversalError",
]


class TraversalError(Exception):
    """A connection to a node could not be made."""


class PunchFailed(TraversalError):
    """Every punch attempt failed and relaying was not allowed."""


class SymmetricNat(TraversalError):
    """Both sides allocate random ports (no direct path exists) and relaying was not allowed."""


class NoRelay(TraversalError, selection.NoRelay):
    """A relay is needed (to carry traffic, or the punch signalling) and none is reachable.

    Also a :class:`macula_nat.relay.NoRelay`, which the relay registry raises."""


class ConnectTimeout(TraversalError):
    """No connection within the caller's timeout."""


class NotConnected(TraversalError):
    """The call needs a connection to that node, and there is none."""
