"""The Erlang ``macula_nat_system`` module's calls, on the running NAT system.

Starting one is :func:`macula_nat.open_nat_system` (``start_link``); these read the one that
runs (see :func:`macula_nat.system.current_system`).
"""

from __future__ import annotations

from macula_nat.identity import NodeId
from macula_nat.nat.profile import NatProfile
from macula_nat.net import Address
from macula_nat.relay import RelayInfo
from macula_nat.system import current_system


def get_node_id() -> NodeId:
    """``macula_nat_system:get_node_id/0``: this node's id."""
    return current_system().get_node_id()


def get_public_endpoint() -> Address:
    """``macula_nat_system:get_public_endpoint/0``: ``(ip, port)`` as peers see this node;
    ``NotDetected`` before it is known."""
    return current_system().get_public_endpoint()


async def wait_ready() -> tuple[NatProfile, RelayInfo]:
    """The NAT detected and a home relay registered: the node can connect and be connected."""
    return await current_system().wait_ready()
