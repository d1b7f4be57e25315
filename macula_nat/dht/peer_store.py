"""Peers announced to this node with announce_peer, per info-hash (BEP 5 "announce_peer").

Pure: the caller passes ``now``. Each announcement lives ``lifetime`` seconds (BitTorrent
clients re-announce about every 30 minutes).

Announcements are accounted per source (ARCHITECTURE section 10: an IPv4 address or an IPv6
/64; the announcer's own address is the peer's, BEP 5). A source has one announcement per
info-hash (announcing another port replaces it), at most ``per_source`` in all (beyond that its
oldest goes). A full swarm drops the entry of the source holding the most announcements (ties:
the oldest); a new info-hash when ``max_info_hashes`` swarms exist takes the place of the largest
holder's oldest announcement that is a swarm of its own, and is refused if it has none.
Every step is O(1) or O(``max_peers``), never a scan of the table, and an announcement costs
one small bytes record (compact address and expiry) plus its source's accounting.
"""

from __future__ import annotations

import struct
from typing import Final

from macula_nat.holdings import Holdings
from macula_nat.net.address import source_prefix

from .compact import Address, check_address, decode_peer, encode_peer
from .node_id import NodeId

__all__ = ["PEER_LIFETIME", "PeerStore"]

PEER_LIFETIME: Final = 30 * 60.0

_EXPIRY: Final = struct.Struct("!d")
"""A record is the expiry (a float, 8 bytes) then the compact peer info (6 or 18 bytes)."""


class _Swarm:
    """One info-hash's announcements: source -> record, oldest announcement first."""

    __slots__ = ("info_hash", "records")

    def __init__(self, info_hash: NodeId) -> None:
        self.info_hash = info_hash
        """The one NodeId object this swarm's accounting refers to."""
        self.records: dict[str, bytes] = {}


def _expiry(record: bytes) -> float:
    value: float = _EXPIRY.unpack_from(record)[0]
    return value


class PeerStore:
    """Announced peer addresses by info-hash, newest announcement last, fairly shared."""

    def __init__(
        self,
        *,
        lifetime: float = PEER_LIFETIME,
        max_peers: int = 50,
        max_info_hashes: int = 4096,
        per_source: int = 256,
    ) -> None:
        if lifetime <= 0 or max_peers < 1 or max_info_hashes < 1 or per_source < 1:
            raise ValueError("lifetime, max_peers, max_info_hashes and per_source must be positive")
        self._lifetime = lifetime
        self._max_peers = max_peers
        self._max_info_hashes = max_info_hashes
        self._per_source = per_source
        self._swarms: dict[NodeId, _Swarm] = {}
        self._holdings: Holdings[NodeId] = Holdings()
        self.refused = 0
        """New info-hashes refused because every swarm slot was taken by shared swarms."""

    def __len__(self) -> int:
        """How many info-hashes have peers."""
        return len(self._swarms)

    @property
    def announcements(self) -> int:
        """Announcements held, over all info-hashes."""
        return len(self._holdings)

    @property
    def sources(self) -> int:
        """Sources holding at least one announcement."""
        return self._holdings.sources

    @property
    def largest_holding(self) -> int:
        """Announcements of the source holding the most."""
        return self._holdings.most

    def held_by(self, source: str) -> int:
        """Announcements charged to ``source`` (a `source_prefix`)."""
        return self._holdings.count(source)

    def announce(self, info_hash: NodeId, peer: Address, now: float) -> bool:
        """Record that ``peer`` is in the swarm of ``info_hash`` as of ``now``; False if the
        table had no room for a new info-hash (see the module docstring)."""
        ip, port = check_address(peer)
        source = source_prefix(ip)
        record = _EXPIRY.pack(now + self._lifetime) + encode_peer((ip, port))
        swarm = self._swarms.get(info_hash)
        if swarm is not None and source in swarm.records:
            del swarm.records[source]  # a re-announcement: it becomes the newest
            swarm.records[source] = record
            self._holdings.add(source, swarm.info_hash)
            return True
        if self._holdings.count(source) >= self._per_source:
            self._drop(source, self._holdings.oldest(source))
            swarm = self._swarms.get(info_hash)
        if swarm is None:
            if len(self._swarms) >= self._max_info_hashes and not self._free_a_swarm():
                self.refused += 1
                return False
            swarm = self._swarms[info_hash] = _Swarm(info_hash)
        elif len(swarm.records) >= self._max_peers:
            self._drop(self._most_holding(swarm), swarm.info_hash)
        swarm.records[source] = record
        self._holdings.add(source, swarm.info_hash)
        return True

    def peers(self, info_hash: NodeId, now: float, limit: int = 50) -> list[Address]:
        """Up to ``limit`` live peers of ``info_hash``, most recently announced first."""
        swarm = self._swarms.get(info_hash)
        if swarm is None:
            return []
        live: list[Address] = []
        for record in reversed(swarm.records.values()):
            if len(live) >= limit:
                break
            if _expiry(record) > now:
                live.append(decode_peer(record[_EXPIRY.size :]))
        return live

    def expire(self, now: float) -> int:
        """Drop announcements that have expired by ``now``; return how many went.

        O(info-hashes + expired): each swarm is in announcement order, so its expired
        announcements are the first ones.
        """
        dropped = 0
        for swarm in list(self._swarms.values()):
            stale = []
            for source, record in swarm.records.items():
                if _expiry(record) > now:
                    break
                stale.append(source)
            for source in stale:
                self._drop(source, swarm.info_hash)
            dropped += len(stale)
        return dropped

    def _drop(self, source: str, info_hash: NodeId) -> None:
        swarm = self._swarms[info_hash]
        del swarm.records[source]
        self._holdings.discard(source, swarm.info_hash)
        if not swarm.records:
            del self._swarms[info_hash]

    def _most_holding(self, swarm: _Swarm) -> str:
        """The source in ``swarm`` holding the most announcements overall (ties: the oldest
        announcement). O(max_peers)."""
        count, records = self._holdings.count, swarm.records
        return max(records, key=lambda source: (count(source), -_expiry(records[source])))

    def _free_a_swarm(self) -> bool:
        """Make room for a new info-hash: drop the largest holder's oldest announcement that
        is alone in its swarm. False (nothing dropped) if it has none: its swarms are shared
        with others. O(per_source)."""
        source = self._holdings.largest()
        if source is None:
            return False
        for info_hash in self._holdings.keys(source):
            if len(self._swarms[info_hash].records) == 1:
                self._drop(source, info_hash)
                return True
        return False
