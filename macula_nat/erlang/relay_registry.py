"""The Erlang ``macula_relay_registry`` module's calls, on the running NAT system.

See :class:`macula_nat.relay.RelayRegistry` for each call's contract.
"""

from __future__ import annotations

from macula_nat.identity import NodeId
from macula_nat.net import Address
from macula_nat.relay import RelayInfo
from macula_nat.system import current_system


async def register(node_id: NodeId, endpoint: Address) -> bool:
    """``macula_relay_registry:register/2``: announce a relay (and keep announcing it)."""
    return await current_system().relays.register(node_id, endpoint)


async def find_relay(target: str) -> RelayInfo:
    """``macula_relay_registry:find_relay/1``: the relay to reach ``target``."""
    return await current_system().relays.find_relay(target)


def list_relays() -> list[RelayInfo]:
    """The relays measured so far, best first."""
    return current_system().relays.relays()
