"""MainlineDirectory: node records as BEP 44 mutable items in the Mainline DHT.

A node's record lives under its own ed25519 key (the node id *is* the BEP 44 key) with the salt
`PROFILE_SALT`, so only the key's holder can write it, and every reader checks the signature
(the DHT node drops forged items before they get here). A reader also refuses a record older
than one it has already accepted for that node (a replay), one whose key is not the node's, and
one past its expiry. Relays announce themselves as peers of `RELAYS_INFO_HASH` and are listed
with get_peers.

Sequence numbers are milliseconds of the directory's clock (and always above the last one
used), so a restarted node with the same key publishes above its earlier records. Records are
republished by the DHT node until they expire.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Final

import attrs
import trio

from macula_nat.dht.compact import Address
from macula_nat.dht.mutable_item import MutableItem, mutable_target, signature_input
from macula_nat.dht.node import DhtNode
from macula_nat.dht.node_id import NodeId as DhtId
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.profile import NatProfile

from .directory import Directory, DirectoryError
from .record import NodeRecord, RecordError

__all__ = [
    "PROFILE_SALT",
    "RELAYS_INFO_HASH",
    "MainlineDirectory",
    "MainlineStatistics",
]

logger = logging.getLogger(__name__)

PROFILE_SALT: Final = b"macula-nat/profile"
RELAYS_INFO_HASH: Final = DhtId.from_bytes(hashlib.sha1(b"macula-nat relays").digest())
_MAX_SEEN: Final = 10_000
"""Nodes whose highest accepted seq is remembered (least recently resolved forgotten first)."""


@attrs.frozen
class MainlineStatistics:
    published: int
    resolves: int
    found: int
    """Resolves that returned a valid record."""
    replayed: int
    """Records refused because a newer one of that node had been accepted before."""
    expired: int
    invalid: int
    """Correctly signed values that are not records (or under another key)."""


@attrs.define
class _Counters:
    published: int = 0
    resolves: int = 0
    found: int = 0
    replayed: int = 0
    expired: int = 0
    invalid: int = 0


class MainlineDirectory(Directory):
    """Publishes ``key``'s record and resolves others' through ``node`` (which must run).

    ``clock`` gives UNIX seconds, for expiry and sequence numbers (inject one in simulations).
    """

    def __init__(
        self,
        node: DhtNode,
        key: NodeKey,
        *,
        salt: bytes = PROFILE_SALT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.node = node
        self._key = key
        self._salt = salt
        self._clock = clock
        self._seq = 0
        self._seen: OrderedDict[NodeId, int] = OrderedDict()
        self._counters = _Counters()

    def __repr__(self) -> str:
        return f"<MainlineDirectory {self._key.node_id.short()}>"

    @property
    def node_id(self) -> NodeId:
        return self._key.node_id

    def target_of(self, node_id: NodeId) -> DhtId:
        """Where ``node_id``'s record lives in the DHT."""
        return mutable_target(node_id.raw, self._salt)

    async def publish_record(
        self,
        node_id: str,
        profile: NatProfile | None,
        ttl: float,
        *,
        home_relay: Address | None = None,
        candidates: Iterable[Address] = (),
    ) -> NodeRecord:
        """Sign and store our record for ``ttl`` seconds (republished until then); returns it.
        ValueError for another node's id (we hold only our key); DirectoryError when no DHT node
        stored it."""
        if node_id != self._key.node_id.text():
            raise ValueError(f"{self} holds the key of {self._key.node_id}, not of {node_id}")
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        now = self._clock()
        self._seq = max(self._seq + 1, int(now * 1000))
        record = NodeRecord(
            profile=profile,
            home_relay=home_relay,
            candidates=tuple(candidates),
            expires_at=math.ceil(now + ttl),
            seq=self._seq,
        )
        item = self._sign(record)
        result = await self.node.put(item, republish_until=trio.current_time() + ttl)
        if not result.stored:
            raise DirectoryError(f"no DHT node stored the record (errors: {result.errors})")
        self._counters.published += 1
        logger.debug("%s published seq %d on %d nodes", self, record.seq, result.stored)
        return record

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        """``node_id``'s valid record, or None (none found, expired, replayed or invalid);
        ValueError for text that is not a node id."""
        return await self._resolve(NodeId.from_text(node_id))

    async def _resolve(self, node_id: NodeId) -> NodeRecord | None:
        counters = self._counters
        counters.resolves += 1
        result = await self.node.get(self.target_of(node_id), salt=self._salt)
        item = result.item
        if not isinstance(item, MutableItem):
            return None
        if item.public_key != node_id.raw:
            counters.invalid += 1
            return None
        seen = self._seen.get(node_id)
        if seen is not None and item.seq < seen:
            counters.replayed += 1
            logger.info(
                "%s: refused a replayed record of %s (seq %d < %d)",
                self,
                node_id.short(),
                item.seq,
                seen,
            )
            return None
        try:
            record = NodeRecord.decode(item.value, item.seq)
        except RecordError as exc:
            counters.invalid += 1
            logger.info("%s: invalid record of %s: %s", self, node_id.short(), exc)
            return None
        if record.expires_at <= self._clock():
            counters.expired += 1
            return None
        self._seen[node_id] = item.seq
        self._seen.move_to_end(node_id)
        if len(self._seen) > _MAX_SEEN:
            self._seen.popitem(last=False)
        counters.found += 1
        return record

    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        """Announce a relay at ``endpoint``'s port, re-announced for ``ttl`` seconds. The DHT
        records the address its announcements come from (BEP 5 announces carry only a port),
        so ``endpoint`` must be on this host."""
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        until = trio.current_time() + ttl
        result = await self.node.announce_peer(RELAYS_INFO_HASH, endpoint[1], republish_until=until)
        if not result.stored:
            raise DirectoryError(f"no DHT node took the relay announcement ({result.errors})")

    async def list_relays(self) -> list[Address]:
        """The relays announced in the DHT."""
        return list((await self.node.get_peers(RELAYS_INFO_HASH)).peers)

    def statistics(self) -> MainlineStatistics:
        return MainlineStatistics(**attrs.asdict(self._counters))

    def _sign(self, record: NodeRecord) -> MutableItem:
        value = record.encode()
        signature = self._key.sign(signature_input(record.seq, value, self._salt))
        return MutableItem(self._key.node_id.raw, record.seq, value, signature, self._salt)
