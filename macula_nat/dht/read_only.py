"""Whether a node's DHT side is read-only (BEP 43), as its NAT profile says.

A node behind a NAT, or a firewall that drops what nobody asked for, cannot answer the queries
of nodes that learn of it: in their routing tables it would be a dead entry each lookup waits
on. BEP 43 has such a node query with ``ro=1`` and answer nothing, so nobody keeps it.
`ReadOnlyFollower`, an actor of `open_nat_system`'s tree, keeps a
`~macula_nat.dht.node.DhtNode` whose ``DhtConfig.read_only`` is None read-only until the
profile of the node's IP version says it is reachable from anywhere (`reachable`), and
follows every ``nat_profile_changed`` after.
"""

from __future__ import annotations

import logging
from typing import Any

from macula_nat.actors import Actor, Stop
from macula_nat.behavior import FilteringBehavior
from macula_nat.nat.detector import NatDetector, NatProfileChanged
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import ip_version

from .node import DhtNode

__all__ = ["ReadOnlyFollower", "reachable"]

logger = logging.getLogger(__name__)


def reachable(profile: NatProfile) -> bool:
    """Whether anyone can reach a socket of this host unasked: no NAT in front of it (the
    observed address is its own) and nothing filtering what arrives, with UDP working.

    A port mapping does not count: it opens the node's one socket, not the DHT's."""
    return (
        not profile.nat_present
        and profile.filtering is FilteringBehavior.ENDPOINT_INDEPENDENT
        and not profile.udp_blocked
    )


class ReadOnlyFollower(Actor):
    """Sets ``dht``'s read-only state from ``detector``'s profiles of the DHT's IP version:
    the first one (which is not a change), then each change."""

    def __init__(self, dht: DhtNode, detector: NatDetector) -> None:
        self._dht = dht
        self._detector = detector
        self._version = ip_version(dht.config.listen[0])

    async def init(self) -> None:
        self._detector.subscribe(self.ref)
        self.start_soon(self._follow_first)

    async def _follow_first(self) -> None:
        profile = await self._detector.profile.wait_value(lambda p: p is not None)
        assert profile is not None
        self._follow(profile)

    async def terminate(self, reason: object) -> None:
        self._detector.unsubscribe(self.ref)

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, NatProfileChanged):
            self._follow(message.new)
            return None
        return await super().handle_info(message)

    def _follow(self, profile: NatProfile) -> None:
        if ip_version(profile.public_ip) == self._version:  # a dual-stack node's other side
            self._dht.set_read_only(not reachable(profile))
