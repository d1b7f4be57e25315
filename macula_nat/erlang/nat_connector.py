"""The Erlang ``macula_nat_connector`` module's calls, on the running NAT system.

See :class:`macula_nat.traversal.connector.Connector` for each call's contract.
"""

from __future__ import annotations

from macula_nat.connection import Connection
from macula_nat.identity import NodeId
from macula_nat.system import current_system


async def connect(
    target: NodeId | str,
    timeout: float = 10.0,
    prefer_direct: bool = True,
    fallback_relay: bool = True,
    max_attempts: int = 3,
) -> Connection:
    """``macula_nat_connector:connect/2``: a connection to ``target``."""
    return await current_system().connector.connect(
        target, timeout, prefer_direct, fallback_relay, max_attempts
    )


async def disconnect(connection: Connection) -> None:
    """``macula_nat_connector:disconnect/1``."""
    await current_system().connector.disconnect(connection)


async def accept() -> Connection:
    """The next connection another node made to this one."""
    return await current_system().connector.accept()
