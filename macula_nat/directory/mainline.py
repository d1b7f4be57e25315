"""MainlineDirectory: node records as BEP 44 mutable items in the Mainline DHT.

A node's record lives under its own ed25519 key (the node id *is* the BEP 44 key) with the salt
`PROFILE_SALT`, so only the key's holder can write it, and every reader checks the signature
(the DHT node drops forged items before they get here). A reader also refuses a record older
than one it has already accepted for that node (a replay), one whose key is not the node's, and
one past its expiry. Relays announce themselves as peers of every key of a few shards and of
`RELAYS_INFO_HASH`, and a node lists the relays of its own shard, read under one of its keys
picked at random (`relay_keys` says why), kept for `relay_list_ttl` seconds. Given landmarks
(one DHT address per region, the same list on every node of a deployment), a relay is also
announced in its region (its nearest landmark) in every shard, and a node reads its two nearest
regions first: the relays it measures then include the ones near it.

Sequence numbers are milliseconds of the directory's clock (and always above the last one
used), so a restarted node with the same key publishes above its earlier records. Records are
republished by the DHT node until they expire.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
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
from .relay_keys import (
    ENOUGH_RELAYS,
    MAX_REGIONS,
    RELAY_SHARDS,
    RELAYS_INFO_HASH,
    SHARDS_PER_RELAY,
    SUBKEYS,
    nearest_regions,
    node_shard,
    region_key,
    region_subkey,
    relay_shards,
    shard_key,
    shard_keys,
    spare_shards,
)

__all__ = [
    "PROFILE_SALT",
    "RELAYS_INFO_HASH",
    "RELAY_LIST_TTL",
    "MainlineDirectory",
    "MainlineStatistics",
]

logger = logging.getLogger(__name__)

PROFILE_SALT: Final = b"macula-nat/profile"
ANNOUNCES_AT_ONCE: Final = 4
"""A relay's shard announcements run this many at a time: in a small DHT the same few nodes
answer every one of them, and a burst would trip their per-source rate limits."""
RELAY_LIST_TTL: Final = 600.0
"""Seconds a node keeps the relay list it read (the relay registry measures the relays on it
every minute; a relay announced since is seen within this time)."""
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
    relay_lookups: int
    """Relay lists read from the DHT (a list kept for ``relay_list_ttl`` is read once)."""
    global_relay_lookups: int
    """Of which also read the global key, the node's shard and the spare ones listing too few
    relays."""
    landmark_rounds: int
    """Times the landmarks were measured (once per ``relay_list_ttl``)."""
    regions: tuple[int, ...]
    """This node's nearest regions, nearest first, as last measured (none: no landmarks)."""


@attrs.define
class _Counters:
    published: int = 0
    resolves: int = 0
    found: int = 0
    replayed: int = 0
    expired: int = 0
    invalid: int = 0
    relay_lookups: int = 0
    global_relay_lookups: int = 0
    landmark_rounds: int = 0


class MainlineDirectory(Directory):
    """Publishes ``key``'s record and resolves others' through ``node`` (which must run).

    ``clock`` gives UNIX seconds, for expiry and sequence numbers (inject one in simulations).
    Relays are announced in ``relay_shards`` shards and listed from this node's shard, the list
    kept ``relay_list_ttl`` seconds (Trio time); ``rng`` picks which of a shard's keys to read.
    ``landmarks`` (DHT addresses, one per region, in the deployment's order) are pinged for
    the regions, again after ``relay_list_ttl``.
    """

    def __init__(
        self,
        node: DhtNode,
        key: NodeKey,
        *,
        salt: bytes = PROFILE_SALT,
        clock: Callable[[], float] = time.time,
        relay_shards: int = RELAY_SHARDS,
        relay_list_ttl: float = RELAY_LIST_TTL,
        rng: random.Random | None = None,
        landmarks: Sequence[Address] = (),
    ) -> None:
        super().__init__()
        if relay_shards < 1:
            raise ValueError(f"relay_shards must be at least 1, not {relay_shards}")
        if not relay_list_ttl >= 0:
            raise ValueError(f"relay_list_ttl must be >= 0 seconds, not {relay_list_ttl!r}")
        self.node = node
        self._key = key
        self._salt = salt
        self._clock = clock
        self._relay_shards = relay_shards
        self._relay_list_ttl = relay_list_ttl
        self._rng = rng if rng is not None else random.Random()
        if len(landmarks) > MAX_REGIONS:
            raise ValueError(f"{len(landmarks)} landmarks: at most {MAX_REGIONS}")
        self._landmarks = tuple(landmarks)
        self._regions: tuple[float, list[int]] | None = None
        self._relay_list: tuple[float, list[Address]] | None = None
        self._seq = 0
        self._seen: OrderedDict[NodeId, int] = OrderedDict()
        self._counters = _Counters()

    def __repr__(self) -> str:
        return f"<MainlineDirectory {self._key.node_id.short()}>"

    @property
    def node_id(self) -> NodeId:
        return self._key.node_id

    @property
    def landmarks(self) -> tuple[Address, ...]:
        """The regions' landmarks, in the deployment's order (none: no regions)."""
        return self._landmarks

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
        home_relay_alternate: Address | None = None,
        profile6: NatProfile | None = None,
    ) -> NodeRecord:
        """Sign and store our record for ``ttl`` seconds (republished until then); returns it as
        peers read it (within BEP 44's 1000 bytes: `NodeRecord.encode`).
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
            home_relay_alternate=home_relay_alternate,
            profile6=profile6,
            candidates=tuple(candidates),
            expires_at=math.ceil(now + ttl),
            seq=self._seq,
        )
        item = self._sign(record)
        record = NodeRecord.decode(item.value, record.seq)  # as peers read it (encode may cut)
        result = await self.node.put(item, republish_until=trio.current_time() + ttl)
        if not result.stored:
            raise DirectoryError(f"no DHT node stored the record (errors: {result.errors})")
        self._counters.published += 1
        logger.debug("%s published seq %d on %d nodes", self, record.seq, result.stored)
        return record

    async def publish_item(self, item: MutableItem, ttl: float) -> None:
        """Store a record another node signed (a relay's part for a node whose UDP is blocked)
        as it is; ValueError for a bad signature or salt, DirectoryError when none stored it."""
        if item.salt != self._salt or not item.verify():
            raise ValueError("not a record item signed by its key")
        result = await self.node.put(item, republish_until=trio.current_time() + ttl)
        if not result.stored:
            raise DirectoryError(f"no DHT node stored the record (errors: {result.errors})")

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
        """Announce a relay at ``endpoint``'s port under its shard keys and the global key (and
        its region's, given landmarks), re-announced for ``ttl`` seconds. The DHT records the
        address its announcements come from (BEP 5 announces carry only a port), so
        ``endpoint`` must be on this host. Raises DirectoryError when no key could be stored
        (one failing is logged: the others find it)."""
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        until = trio.current_time() + ttl
        count = min(SHARDS_PER_RELAY, self._relay_shards)
        shards = relay_shards(endpoint, self._relay_shards, count)
        keys = [RELAYS_INFO_HASH]
        for shard in shards:
            keys += shard_keys(shard, self._relay_shards)
        regions = await self.regions()
        if regions:
            keys += [
                region_key(s, region_subkey(endpoint, s), regions[0], self._relay_shards)
                for s in range(self._relay_shards)
            ]
        elif self._landmarks:
            logger.warning("%r: no landmark answered; relay %s in no region", self, endpoint)
        errors: list[str] = []
        limiter = trio.CapacityLimiter(ANNOUNCES_AT_ONCE)

        async def announce(info_hash: DhtId) -> None:
            async with limiter:
                result = await self.node.announce_peer(
                    info_hash, endpoint[1], republish_until=until
                )
            if not result.stored:
                errors.append(f"{info_hash}: {result.errors}")

        async with trio.open_nursery() as nursery:
            for info_hash in keys:
                nursery.start_soon(announce, info_hash)
        if len(errors) == len(keys):
            raise DirectoryError(f"no DHT node took the relay announcement ({errors})")
        if errors:
            logger.warning("%r: relay %s not announced under %s", self, endpoint, errors)

    async def list_relays(self) -> list[Address]:
        """The relays of this node's nearest regions (given landmarks: under one of its shard's
        keys for the region, all of them when that lists fewer than ENOUGH_RELAYS; each relay
        of a region is under one), then those announced in its shard,
        topped up from the spare shards and the global key when all these are fewer than
        ENOUGH_RELAYS; a list of ENOUGH_RELAYS or more is kept ``relay_list_ttl`` seconds, a
        shorter one read again at the next call."""
        now = trio.current_time()
        if self._relay_list is not None and now < self._relay_list[0] + self._relay_list_ttl:
            await trio.lowlevel.checkpoint()
            return list(self._relay_list[1])
        self._counters.relay_lookups += 1
        shard = node_shard(self.node.node_id, self._relay_shards)
        relays: dict[Address, None] = {}
        for region in await self.regions():
            subkey = self._rng.randrange(SUBKEYS)
            key = region_key(shard, subkey, region, self._relay_shards)
            found = await self._relays_in([key])
            if len(found) < ENOUGH_RELAYS:  # a sparse region: its other relays are under these
                others = [
                    region_key(shard, other, region, self._relay_shards)
                    for other in range(SUBKEYS)
                    if other != subkey
                ]
                found += await self._relays_in(others)
            relays.update(dict.fromkeys(found))
        relays.update(dict.fromkeys(await self._relays_in([self._read_key(shard)])))
        if len(relays) < ENOUGH_RELAYS:
            spares = spare_shards(shard, self._relay_shards)
            relays.update(dict.fromkeys(await self._relays_in([self._read_key(s) for s in spares])))
        if len(relays) < ENOUGH_RELAYS:
            self._counters.global_relay_lookups += 1
            relays.update(dict.fromkeys(await self._relays_in([RELAYS_INFO_HASH])))
        listed = list(relays)
        if len(listed) >= ENOUGH_RELAYS:  # a short list is read again: more may be on their way
            self._relay_list = (now, listed)
        return list(listed)

    def _read_key(self, shard: int) -> DhtId:
        """One of ``shard``'s keys, at random: its readers spread over all of them."""
        return shard_key(shard, self._rng.randrange(SUBKEYS), self._relay_shards)

    async def regions(self) -> list[int]:
        """This node's nearest regions, nearest first (none without landmarks, or when none
        answered): the landmarks pinged at once, kept ``relay_list_ttl`` seconds."""
        if not self._landmarks:
            await trio.lowlevel.checkpoint()
            return []
        now = trio.current_time()
        if self._regions is not None and now < self._regions[0] + self._relay_list_ttl:
            await trio.lowlevel.checkpoint()
            return list(self._regions[1])
        rtts: list[float | None] = [None] * len(self._landmarks)

        async def measure(index: int, landmark: Address) -> None:
            start = trio.current_time()
            if await self.node.ping(landmark) is not None:
                rtts[index] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            for index, landmark in enumerate(self._landmarks):
                nursery.start_soon(measure, index, landmark)
        self._counters.landmark_rounds += 1
        regions = nearest_regions(rtts)
        if regions:
            self._regions = (now, regions)
        return regions

    async def _relays_in(self, keys: list[DhtId]) -> list[Address]:
        """The relays announced under ``keys``, looked up at once."""
        found: list[Address] = []

        async def look_up(info_hash: DhtId) -> None:
            found.extend((await self.node.get_peers(info_hash)).peers)

        async with trio.open_nursery() as nursery:
            for info_hash in keys:
                nursery.start_soon(look_up, info_hash)
        return found

    def statistics(self) -> MainlineStatistics:
        regions = tuple(self._regions[1]) if self._regions is not None else ()
        return MainlineStatistics(**attrs.asdict(self._counters), regions=regions)

    def _sign(self, record: NodeRecord) -> MutableItem:
        value = record.encode()
        signature = self._key.sign(signature_input(record.seq, value, self._salt))
        return MutableItem(self._key.node_id.raw, record.seq, value, signature, self._salt)
