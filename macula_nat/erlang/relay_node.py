"""The Erlang ``macula_relay_node`` module's calls, on the running NAT system.

``enable`` makes the running node a relay for others (:meth:`NatSystem.start_relay`, or new
limits when it already is one); ``request_relay`` asks this node's home relay for a session.
"""

from __future__ import annotations

from typing import Any

from macula_nat.identity import NodeId
from macula_nat.relay import RelayNode, RelaySession, RelayStatistics, SessionInfo
from macula_nat.system import current_system


async def enable(**options: Any) -> RelayNode:
    """``macula_relay_node:enable/1``: relay for others with these options (``max_sessions``,
    ``bandwidth_limit``, ``session_timeout``, ``idle_timeout``, ``on_session_start``,
    ``on_session_end``, ...): starts the relay, or changes its limits when it runs."""
    system = current_system()
    relay = system.relay
    if relay is None:
        return await system.start_relay(**options)
    await relay.enable(**options)
    return relay


async def disable() -> None:
    """``macula_relay_node:disable/0``: stop relaying (sessions end, nodes are told)."""
    await current_system().stop_relay()


async def request_relay(target: NodeId | str, timeout: float = 10.0) -> RelaySession:
    """``macula_relay_node:request_relay/1``: a session to ``target`` through the home relay."""
    return await current_system().relays.request_relay(target, timeout=timeout)


def get_stats() -> RelayStatistics:
    """``macula_relay_node:get_stats/0``: this node's relay's counters; RuntimeError if it
    runs none."""
    return _relay().statistics()


def get_sessions() -> list[SessionInfo]:
    """The sessions this node relays now."""
    return _relay().sessions()


def _relay() -> RelayNode:
    relay = current_system().relay
    if relay is None:
        raise RuntimeError("this node runs no relay: relay_node.enable(...) first")
    return relay
