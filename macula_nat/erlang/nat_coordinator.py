"""The Erlang ``macula_nat_coordinator`` module's calls, on the running NAT system.

See :class:`macula_nat.traversal.coordinator.Coordinator` for each call's contract.
"""

from __future__ import annotations

from collections.abc import Iterable

from macula_nat.connection import Connection, ConnectionMethod
from macula_nat.identity import NodeId
from macula_nat.system import current_system
from macula_nat.traversal.puncher import PendingPunch, PunchRef


async def request_connection(
    target: NodeId | str,
    timeout: float = 15.0,
    max_punch_attempts: int = 3,
    allow_relay: bool = True,
) -> tuple[ConnectionMethod, Connection]:
    """``macula_nat_coordinator:request_connection/2``: ``(method, connection)``."""
    return await current_system().coordinator.request_connection(
        _node(target),
        timeout=timeout,
        max_punch_attempts=max_punch_attempts,
        allow_relay=allow_relay,
    )


def coordinate_punch(
    a: NodeId | str, b: NodeId | str, predicted_ports: Iterable[int] = ()
) -> PunchRef:
    """``macula_nat_coordinator:coordinate_punch/3``: start a punch; its reference."""
    return current_system().coordinator.coordinate_punch(
        _node(a), _node(b), predicted_ports=list(predicted_ports)
    )


def get_pending() -> list[PendingPunch]:
    """``macula_nat_coordinator:get_pending/0``: the punches in flight."""
    return current_system().coordinator.get_pending()


def _node(node: NodeId | str) -> NodeId:
    return node if isinstance(node, NodeId) else NodeId.from_text(node)
