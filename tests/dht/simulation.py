"""A pure in-memory Mainline network for lookup tests: each node id maps to its routing table.

Every node's table is what a live node's becomes when all other nodes are offered to it as good
nodes in a random order of its own: each bucket keeps the first K offered of the nodes that fall
in it, so offering K random ones of each bucket's range (all it can keep) builds the same table
in O(N log N) rather than O(N^2). Lookups run in synchronous rounds: each round sends what
`Lookup.next_queries` asks for, then every query is answered (from the queried node's table) or,
for a dead node, times out, before the next round.
"""

from __future__ import annotations

import bisect
import collections
import copy
import random
import statistics
from collections.abc import Sequence

import attrs

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.lookup import Lookup
from macula_nat.dht.node_id import ID_BITS, NodeId
from macula_nat.dht.routing_table import K, RoutingTable
from macula_nat.directory.relay_keys import (
    ENOUGH_RELAYS,
    RELAY_SHARDS,
    RELAYS_INFO_HASH,
    SUBKEYS,
    nearest_regions,
    node_shard,
    region_key,
    region_subkey,
    relay_shards,
    shard_key,
    spare_shards,
)
from macula_nat.net.address import Address
from macula_nat.relay.registry import RegistryConfig

from .geography import LANDMARKS, node_place, relay_place, rtt

MAX_ROUNDS = 500
MAX_PROBES = RegistryConfig().max_probes
PROBE_ROUNDS = 2
"""The relay registry's probe rounds a node's choice follows (a minute apart): each round
probes up to ``max_probes`` relays, the ones never measured first."""


@attrs.frozen
class LookupRun:
    """One lookup's outcome and cost."""

    result: list[NodeId]
    expected: list[NodeId]
    rounds: int
    queries: int
    hops: int
    done: bool


@attrs.frozen
class Figures:
    """Averages over many lookups in one network."""

    nodes: int
    lookups: int
    dead: int
    completed: float
    """Fraction of lookups that reached their end (rather than the round limit)."""
    exact: float
    """Fraction of lookups whose result was exactly the K closest live nodes."""
    found_closest: float
    """Fraction of lookups whose nearest result was the closest live node."""
    mean_overlap: float
    mean_rounds: float
    max_rounds: int
    mean_queries: float
    max_queries: int
    mean_hops: float
    max_hops: int


def _contact(index: int, node_id: NodeId) -> NodeInfo:
    return NodeInfo(node_id, (f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}", 6881))


def _bucket_samples(own: int, values: list[int], rng: random.Random) -> list[int]:
    """Indexes into sorted ``values`` of K random ids (or all) sharing exactly b leading bits
    with ``own``, for every b: the most any bucket of ``own``'s table can keep from each."""
    chosen: list[int] = []
    for shared in range(ID_BITS):
        width = ID_BITS - shared - 1
        low = ((own >> width) ^ 1) << width  # the half that differs at the next bit
        start, stop = (
            bisect.bisect_left(values, low),
            bisect.bisect_left(values, low + (1 << width)),
        )
        chosen += rng.sample(range(start, stop), min(K, stop - start))
        rest = own >> width << width  # the half ``own`` is in: anyone else left there?
        if bisect.bisect_left(values, rest + (1 << width)) - bisect.bisect_left(values, rest) <= 1:
            break
    return chosen


class Network:
    """Nodes that all know each other as BEP 5 routing tables allow."""

    def __init__(self, ids: Sequence[NodeId], rng: random.Random) -> None:
        self.contacts = sorted(
            (_contact(index, node_id) for index, node_id in enumerate(ids)),
            key=lambda contact: contact.node_id.value,
        )
        values = [contact.node_id.value for contact in self.contacts]
        self.tables: dict[NodeId, RoutingTable] = {}
        for contact in self.contacts:
            table = RoutingTable(contact.node_id, 0.0)
            offered = [
                self.contacts[i] for i in _bucket_samples(contact.node_id.value, values, rng)
            ]
            rng.shuffle(offered)
            for other in offered:
                table.on_response(other, 0.0)
            self.tables[contact.node_id] = table
        self.alive = set(self.tables)

    def with_dead(self, count: int, rng: random.Random) -> Network:
        """This network with ``count`` nodes down, which the others' tables still list."""
        churned = copy.copy(self)
        churned.alive = self.alive - set(
            rng.sample(sorted(self.alive, key=lambda n: n.value), count)
        )
        return churned

    def closest_alive(self, target: NodeId, count: int = K) -> list[NodeId]:
        return sorted(self.alive, key=target.distance)[:count]

    def lookup(
        self, start: NodeId, target: NodeId, answered: collections.Counter[NodeId] | None = None
    ) -> LookupRun:
        """Look ``target`` up from ``start``'s table; ``answered`` counts the queries each
        node answers."""
        lookup = Lookup(target, self.tables[start].closest(target), exclude=start)
        rounds = 0
        for _ in range(MAX_ROUNDS):
            queries = lookup.next_queries(float(rounds))
            if not queries:
                break
            rounds += 1
            for node in queries:
                if node.node_id in self.alive:
                    if answered is not None:
                        answered[node.node_id] += 1
                    lookup.on_response(node, self.tables[node.node_id].closest(target))
                else:
                    lookup.on_timeout(node)
        closest = self.closest_alive(target, K + 1)
        expected = [n for n in closest if n != start][:K]
        stats = lookup.statistics()
        return LookupRun(
            [node.node_id for node in lookup.result],
            expected,
            rounds,
            stats.queries,
            stats.hops,
            lookup.done,
        )


def figures(network: Network, lookups: int, rng: random.Random) -> Figures:
    """Run ``lookups`` lookups of random targets from random live nodes."""
    alive = sorted(network.alive, key=lambda n: n.value)
    runs = [network.lookup(rng.choice(alive), NodeId.random(rng)) for _ in range(lookups)]
    return Figures(
        nodes=len(network.tables),
        lookups=lookups,
        dead=len(network.tables) - len(network.alive),
        completed=statistics.mean(run.done for run in runs),
        exact=statistics.mean(run.result == run.expected for run in runs),
        found_closest=statistics.mean(run.result[:1] == run.expected[:1] for run in runs),
        mean_overlap=statistics.mean(len(set(run.result) & set(run.expected)) for run in runs),
        mean_rounds=statistics.mean(run.rounds for run in runs),
        max_rounds=max(run.rounds for run in runs),
        mean_queries=statistics.mean(run.queries for run in runs),
        max_queries=max(run.queries for run in runs),
        mean_hops=statistics.mean(run.hops for run in runs),
        max_hops=max(run.hops for run in runs),
    )


def relay_endpoint(index: int) -> Address:
    return (f"198.51.{index >> 8 & 255}.{index & 255}", 4433)


def relay_list_load(
    network: Network, relays: int, rng: random.Random, *, sharded: bool = True
) -> collections.Counter[NodeId]:
    """Relay-list queries each node answers when every node reads the relay list once, with
    ``relays`` relays announced as `MainlineDirectory` announces them (``sharded``: each node
    reads one of its shard's keys, picked with ``rng``) or all under the one global key (as
    before sharding)."""
    in_shard = collections.Counter(
        shard for i in range(relays) for shard in relay_shards(relay_endpoint(i))
    )
    load: collections.Counter[NodeId] = collections.Counter()
    for contact in network.contacts:
        me = contact.node_id
        if not sharded:
            network.lookup(me, RELAYS_INFO_HASH, load)
            continue
        shard = node_shard(me)
        network.lookup(me, shard_key(shard, rng.randrange(SUBKEYS)), load)
        found = in_shard[shard]
        if found < ENOUGH_RELAYS:
            for spare in spare_shards(shard):
                network.lookup(me, shard_key(spare, rng.randrange(SUBKEYS)), load)
                found += in_shard[spare]
        if found < ENOUGH_RELAYS:
            network.lookup(me, RELAYS_INFO_HASH, load)
    return load


def hot_spot(load: collections.Counter[NodeId], nodes: int) -> float:
    """The busiest node's share of the queries, over the mean over all ``nodes``."""
    return max(load.values()) / (sum(load.values()) / nodes)


@attrs.frozen
class RelayChoice:
    """Every node's relay choice in a world with regions (`MainlineDirectory` with landmarks)."""

    load: collections.Counter[NodeId]
    """Relay-list queries each DHT node answered."""
    shortfall: list[float]
    """Per node: milliseconds its chosen relay's round trip is above the best relay's."""
    candidates: float
    """Relays a node measured, on average."""


def regional_relay_choice(
    network: Network, relays: int, rng: random.Random, *, jitter: float = 5.0, regions: bool = True
) -> RelayChoice:
    """Each node (placed on the globe with `geography.node_place`) reads the relay list once as
    `MainlineDirectory.list_relays` does with `geography.LANDMARKS` as landmarks, measures each
    relay on it once (the true round trip plus up to ``jitter`` ms; as many as the registry's
    first PROBE_ROUNDS rounds reach, in the list's order) and takes the best measured;
    ``relays`` relays placed with `geography.relay_place`, announced as `announce_relay` does.
    Without ``regions``: as with no landmarks."""
    relay_places = [relay_place(rng) for _ in range(relays)]
    in_shard: dict[int, set[int]] = collections.defaultdict(set)
    in_region: dict[NodeId, set[int]] = collections.defaultdict(set)
    for index, at in enumerate(relay_places):
        endpoint = relay_endpoint(index)
        for shard in relay_shards(endpoint):
            in_shard[shard].add(index)
        (region,) = nearest_regions([rtt(at, mark) for mark in LANDMARKS], 1)
        for shard in range(RELAY_SHARDS):
            in_region[region_key(shard, region_subkey(endpoint, shard), region)].add(index)
    load: collections.Counter[NodeId] = collections.Counter()
    shortfall: list[float] = []
    measured = 0

    def read(me: NodeId, key: NodeId, listed: set[int]) -> dict[int, None]:
        network.lookup(me, key, load)
        return dict.fromkeys(sorted(listed))

    for contact in network.contacts:
        me = contact.node_id
        at = node_place(rng)
        shard = node_shard(me)
        found: dict[int, None] = {}  # in the order list_relays returns them
        nearest = nearest_regions([rtt(at, mark) for mark in LANDMARKS]) if regions else []
        for region in nearest:
            subkey = rng.randrange(SUBKEYS)
            key = region_key(shard, subkey, region)
            listed = read(me, key, in_region[key])
            if len(listed) < ENOUGH_RELAYS:
                for other in range(SUBKEYS):
                    if other != subkey:
                        key = region_key(shard, other, region)
                        listed |= read(me, key, in_region[key])
            found |= listed
        found |= read(me, shard_key(shard, rng.randrange(SUBKEYS)), in_shard[shard])
        if len(found) < ENOUGH_RELAYS:
            for spare in spare_shards(shard):
                found |= read(me, shard_key(spare, rng.randrange(SUBKEYS)), in_shard[spare])
        if len(found) < ENOUGH_RELAYS:
            found |= read(me, RELAYS_INFO_HASH, set(range(relays)))
        probed = list(found)[: MAX_PROBES * PROBE_ROUNDS]
        measured += len(probed)
        chosen = min(probed, key=lambda i: rtt(at, relay_places[i]) + rng.uniform(0, jitter))
        best = min(rtt(at, there) for there in relay_places)
        shortfall.append(rtt(at, relay_places[chosen]) - best)
    return RelayChoice(load, shortfall, measured / len(network.contacts))
