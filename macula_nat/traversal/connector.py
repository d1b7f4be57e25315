"""Connector: the Python mirror of the Erlang ``macula_nat_connector``.

The user-facing way to reach a node by id: it fetches the target's record (profile, candidates,
home relay), picks the strategy and falls back as the guide describes: a direct dial when the
target accepts unsolicited datagrams, else the relay at once with punching in the background,
else (relaying not allowed) punching only. The work is the :class:`~.coordinator.Coordinator`'s;
the connector states the caller's preferences and keeps the Erlang names.
"""

from __future__ import annotations

import logging

from macula_nat.connection import Connection
from macula_nat.identity import NodeId
from macula_nat.traversal.coordinator import Coordinator

__all__ = ["Connector"]

logger = logging.getLogger(__name__)


class Connector:
    """Connects this node (the ``coordinator``'s) to others."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    def __repr__(self) -> str:
        return f"<Connector {self.coordinator.key.node_id.short()}>"

    async def connect(
        self,
        target: NodeId | str,
        timeout: float = 10.0,
        prefer_direct: bool = True,
        fallback_relay: bool = True,
        max_attempts: int = 3,
    ) -> Connection:
        """A connection to ``target`` (a node id, or its text form).

        ``prefer_direct``: dial or punch for a direct path (False: stay on the relay).
        ``fallback_relay``: carry traffic over a relay until (or instead of) a direct path.
        ``max_attempts``: punch attempts. Raises :class:`~.errors.SymmetricNat`,
        :class:`~.errors.NoRelay`, :class:`~.errors.PunchFailed` or
        :class:`~.errors.ConnectTimeout` (after ``timeout`` seconds).
        """
        if not (prefer_direct or fallback_relay):
            raise ValueError("with neither prefer_direct nor fallback_relay there is no path")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        node = target if isinstance(target, NodeId) else NodeId.from_text(target)
        logger.debug(
            "%r: connecting to %s (prefer_direct=%s, fallback_relay=%s, max_attempts=%d)",
            self,
            node.short(),
            prefer_direct,
            fallback_relay,
            max_attempts,
        )
        try:
            method, connection = await self.coordinator.request_connection(
                node,
                timeout=timeout,
                max_punch_attempts=max_attempts,
                allow_relay=fallback_relay,
                punch=prefer_direct,
            )
        except Exception as exc:
            logger.info("%r: no connection to %s: %s", self, node.short(), exc)
            raise
        logger.info("%r: connected to %s (%s)", self, node.short(), method)
        return connection

    async def disconnect(self, connection: Connection) -> None:
        """Close ``connection`` (idempotent)."""
        logger.debug("%r: disconnecting %r", self, connection)
        await connection.aclose()

    async def accept(self) -> Connection:
        """The next connection another node made to this one."""
        return await self.coordinator.accept()
