"""A pure in-memory Mainline network for lookup tests: each node id maps to its routing table.

Every node's table is built the way a live node's fills up: all other nodes offered as good
nodes, in a random order of its own. Lookups run in synchronous rounds: each round sends what
`Lookup.next_queries` asks for, then every query is answered (from the queried node's table) or,
for a dead node, times out, before the next round.
"""

from __future__ import annotations

import copy
import random
import statistics
from collections.abc import Sequence

import attrs

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.lookup import Lookup
from macula_nat.dht.node_id import NodeId
from macula_nat.dht.routing_table import K, RoutingTable

MAX_ROUNDS = 500


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


class Network:
    """Nodes that all know each other as BEP 5 routing tables allow."""

    def __init__(self, ids: Sequence[NodeId], rng: random.Random) -> None:
        self.contacts = [_contact(index, node_id) for index, node_id in enumerate(ids)]
        self.tables: dict[NodeId, RoutingTable] = {}
        for contact in self.contacts:
            table = RoutingTable(contact.node_id, 0.0)
            order = list(self.contacts)
            rng.shuffle(order)
            for other in order:
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

    def lookup(self, start: NodeId, target: NodeId) -> LookupRun:
        """Look ``target`` up from ``start``'s table."""
        lookup = Lookup(target, self.tables[start].closest(target), exclude=start)
        rounds = 0
        for _ in range(MAX_ROUNDS):
            queries = lookup.next_queries(float(rounds))
            if not queries:
                break
            rounds += 1
            for node in queries:
                if node.node_id in self.alive:
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
