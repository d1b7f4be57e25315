"""Peers announced to this node with announce_peer, per info-hash (BEP 5 "announce_peer").

Pure: the caller passes ``now``. Each announcement lives ``lifetime`` seconds (BitTorrent
clients re-announce about every 30 minutes); both the peers per info-hash and the info-hashes are
capped, dropping the stalest announcement first.
"""

from __future__ import annotations

from typing import Final

from .compact import Address, check_address
from .node_id import NodeId

__all__ = ["PEER_LIFETIME", "PeerStore"]

PEER_LIFETIME: Final = 30 * 60.0


class PeerStore:
    """Announced peer addresses by info-hash, newest announcement last."""

    def __init__(
        self,
        *,
        lifetime: float = PEER_LIFETIME,
        max_peers: int = 200,
        max_info_hashes: int = 4096,
    ) -> None:
        if lifetime <= 0 or max_peers < 1 or max_info_hashes < 1:
            raise ValueError("lifetime, max_peers and max_info_hashes must be positive")
        self._lifetime = lifetime
        self._max_peers = max_peers
        self._max_info_hashes = max_info_hashes
        self._swarms: dict[NodeId, dict[Address, float]] = {}

    def __len__(self) -> int:
        """How many info-hashes have peers."""
        return len(self._swarms)

    def announce(self, info_hash: NodeId, peer: Address, now: float) -> None:
        """Record that ``peer`` is in the swarm of ``info_hash`` as of ``now``."""
        peer = check_address(peer)
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            if len(self._swarms) >= self._max_info_hashes:
                self._evict_swarm(now)
            swarm = self._swarms[info_hash] = {}
        swarm.pop(peer, None)
        swarm[peer] = now + self._lifetime
        if len(swarm) > self._max_peers:
            del swarm[next(iter(swarm))]

    def peers(self, info_hash: NodeId, now: float, limit: int = 50) -> list[Address]:
        """Up to ``limit`` live peers of ``info_hash``, most recently announced first."""
        swarm = self._swarms.get(info_hash, {})
        live = [peer for peer, expires_at in reversed(swarm.items()) if expires_at > now]
        return live[:limit]

    def expire(self, now: float) -> int:
        """Drop announcements that have expired by ``now``; return how many went."""
        dropped = 0
        for info_hash in list(self._swarms):
            swarm = self._swarms[info_hash]
            stale = [peer for peer, expires_at in swarm.items() if expires_at <= now]
            for peer in stale:
                del swarm[peer]
            dropped += len(stale)
            if not swarm:
                del self._swarms[info_hash]
        return dropped

    def _evict_swarm(self, now: float) -> None:
        self.expire(now)
        if len(self._swarms) >= self._max_info_hashes:
            stalest = min(self._swarms, key=lambda h: max(self._swarms[h].values()))
            del self._swarms[stalest]
