"""The Kademlia routing table of BEP 5 ("Routing Table"): buckets of K = 8 nodes.

Bucket ``i`` of a table ``depth`` buckets deep holds the nodes whose ids share exactly ``i``
leading bits with ours; the last bucket holds every id sharing at least ``depth - 1``, our own
included. Only that last bucket splits, so the table is BEP 5's range buckets with the splits
always taken on our side, and it is finest near our id.

Node states (BEP 5): *good* when it answered one of our queries in the last 15 minutes, or
answered once and queried us in the last 15 minutes; *bad* after ``max_failures`` queries in a
row without an answer; *questionable* otherwise. A full bucket takes a new node in place of a bad
one, splits when it is the last bucket, or else parks the newcomer in a replacement cache, from
which failing nodes are replaced. Questionable nodes are for the caller to ping
(`RoutingTable.nodes_to_ping`), and buckets unchanged for 15 minutes to refresh
(`RoutingTable.refresh_targets`). Pure: the caller passes ``now``.

Each entry also keeps the round trips of our queries it answered (RFC 6298's estimate, fed by
`RoutingTable.on_round_trip`): how long a lookup should wait for that node before moving on.
The estimate lives and goes with the entry, so it costs nothing beyond the table's own bound;
libtorrent's node entries keep a smoothed round trip likewise. RFC 6298 starts a path's
variation at half its first round trip, knowing nothing of it; the table has measured many
paths, so it starts a new contact's at how much its contacts' round trips have varied around
their own means (`RoutingTable.variation`): a contact answers a lookup within a few
milliseconds of its usual time, not within twice it.
"""

from __future__ import annotations

import enum
import heapq
import math
import random
from collections.abc import Callable
from typing import Final

import attrs

from macula_nat.net.rtt import RttEstimate, next_rttvar

from .compact import NodeInfo
from .node_id import ID_BITS, NodeId

__all__ = [
    "GOOD_WINDOW",
    "MAX_FAILURES",
    "REFRESH_INTERVAL",
    "BucketView",
    "K",
    "NodeState",
    "Outcome",
    "RoutingEntry",
    "RoutingTable",
]

K: Final = 8
"""Nodes per bucket (BEP 5)."""
GOOD_WINDOW: Final = 15 * 60.0
"""Seconds a node stays good after answering us (BEP 5)."""
REFRESH_INTERVAL: Final = 15 * 60.0
"""Seconds after which an unchanged bucket is refreshed (BEP 5)."""
MAX_FAILURES: Final = 2
"""Unanswered queries in a row that make a node bad: BEP 5 suggests one retry before discarding."""


class NodeState(enum.Enum):
    """BEP 5's three node states."""

    GOOD = "good"
    QUESTIONABLE = "questionable"
    BAD = "bad"


class Outcome(enum.Enum):
    """What offering a node to the table did."""

    ADDED = "added"
    UPDATED = "updated"
    REPLACED = "replaced"
    """Added in place of a bad node."""
    CACHED = "cached"
    """Its bucket is full of nodes that are not bad: kept in the replacement cache."""
    IGNORED = "ignored"
    """Our own id, a read-only sender (BEP 43), or a known id at another address."""


@attrs.frozen
class RoutingEntry:
    """What the table knows of one node."""

    node: NodeInfo
    last_response: float | None
    """When it last answered one of our queries."""
    last_query: float | None
    """When it last queried us."""
    failures: int
    """Our queries it has failed to answer since its last answer."""
    rtt: RttEstimate | None = None
    """The round trips of our queries it answered (None: none measured yet)."""

    @property
    def last_seen(self) -> float:
        """The latest sign of life (or -inf for none)."""
        response, query = self.last_response, self.last_query
        if response is None:
            return -math.inf if query is None else query
        return response if query is None or response >= query else query


@attrs.frozen
class BucketView:
    """A snapshot of one bucket: ids ``low <= id < high``."""

    index: int
    low: int
    high: int
    nodes: tuple[RoutingEntry, ...]
    replacements: tuple[RoutingEntry, ...]
    last_changed: float


@attrs.define
class _Bucket:
    nodes: dict[NodeId, RoutingEntry] = attrs.field(factory=dict)
    replacements: dict[NodeId, RoutingEntry] = attrs.field(factory=dict)
    last_changed: float = 0.0


class RoutingTable:
    """Buckets of up to ``k`` nodes around ``own_id``."""

    def __init__(
        self,
        own_id: NodeId,
        now: float,
        *,
        k: int = K,
        good_window: float = GOOD_WINDOW,
        refresh_interval: float = REFRESH_INTERVAL,
        max_failures: int = MAX_FAILURES,
        replacements: int = K,
    ) -> None:
        if k < 1 or max_failures < 1 or replacements < 0:
            raise ValueError("k and max_failures must be positive, replacements not negative")
        self._own_id = own_id
        self._k = k
        self._good_window = good_window
        self._refresh_interval = refresh_interval
        self._max_failures = max_failures
        self._replacement_size = replacements
        self._buckets = [_Bucket(last_changed=now)]
        self._variation: float | None = None

    @property
    def own_id(self) -> NodeId:
        """The id the table is built around."""
        return self._own_id

    @property
    def k(self) -> int:
        """The bucket size."""
        return self._k

    @property
    def depth(self) -> int:
        """How many buckets the table has."""
        return len(self._buckets)

    def __len__(self) -> int:
        return sum(len(bucket.nodes) for bucket in self._buckets)

    def __contains__(self, node_id: object) -> bool:
        return isinstance(node_id, NodeId) and node_id in self._bucket_for(node_id).nodes

    def bucket_index(self, node_id: NodeId) -> int:
        """The bucket that ``node_id`` belongs in."""
        return min(self._own_id.common_prefix_length(node_id), len(self._buckets) - 1)

    def bucket_range(self, index: int) -> tuple[int, int]:
        """Bucket ``index`` holds ids ``low <= id < high``."""
        if not 0 <= index < len(self._buckets):
            raise IndexError(f"no bucket {index} in a table {len(self._buckets)} deep")
        if index == len(self._buckets) - 1:
            shift = ID_BITS - index
            prefix = self._own_id.value >> shift
        else:
            shift = ID_BITS - index - 1
            prefix = (self._own_id.value >> shift) ^ 1
        return prefix << shift, (prefix + 1) << shift

    def buckets(self) -> list[BucketView]:
        """A snapshot of every bucket, the farthest from our id first."""
        return [
            BucketView(
                index,
                *self.bucket_range(index),
                tuple(bucket.nodes.values()),
                tuple(bucket.replacements.values()),
                bucket.last_changed,
            )
            for index, bucket in enumerate(self._buckets)
        ]

    @property
    def variation(self) -> float | None:
        """Seconds by which a contact's round trip differs from its smoothed one, smoothed over
        all contacts as RFC 6298 smooths RTTVAR (None: no contact answered twice yet)."""
        return self._variation

    def entry(self, node_id: NodeId) -> RoutingEntry | None:
        """What the table holds on ``node_id`` (replacement cache excluded), or None."""
        return self._bucket_for(node_id).nodes.get(node_id)

    def entries(self) -> list[RoutingEntry]:
        """Every node in the buckets."""
        return [entry for bucket in self._buckets for entry in bucket.nodes.values()]

    def state_of(self, entry: RoutingEntry, now: float) -> NodeState:
        """``entry``'s BEP 5 state at ``now``."""
        if entry.failures >= self._max_failures:
            return NodeState.BAD
        if entry.last_response is not None and (
            now - entry.last_response < self._good_window
            or (entry.last_query is not None and now - entry.last_query < self._good_window)
        ):
            return NodeState.GOOD
        return NodeState.QUESTIONABLE

    def on_response(self, node: NodeInfo, now: float) -> Outcome:
        """``node`` answered one of our queries: it is good, and welcome if there is room."""
        return self._offer(node, now, responded=True)

    def on_query(self, node: NodeInfo, now: float, *, read_only: bool = False) -> Outcome:
        """``node`` queried us. A read-only sender (BEP 43) is never added."""
        if read_only:
            return Outcome.IGNORED
        return self._offer(node, now, responded=False)

    def round_trips(self, node: NodeInfo) -> RttEstimate | None:
        """The estimate of ``node``'s round trips, from its entry at that address in a bucket
        or the replacement cache (None: not held, or not measured)."""
        bucket = self._bucket_for(node.node_id)
        entry = bucket.nodes.get(node.node_id) or bucket.replacements.get(node.node_id)
        return entry.rtt if entry is not None and entry.node.address == node.address else None

    def on_round_trip(self, node: NodeInfo, rtt: float) -> RttEstimate | None:
        """One of our queries to ``node`` was answered ``rtt`` seconds after it was sent (we
        never send a query twice, so every answer is a sample under Karn's rule): the estimate
        of its entry, in a bucket or the replacement cache, takes it (a first one starts at
        `variation`), and so does `variation` when the entry had one. Returns the new estimate,
        or None when the table holds no entry for ``node`` at that address (nothing is kept)."""
        bucket = self._bucket_for(node.node_id)
        for entries in (bucket.nodes, bucket.replacements):
            entry = entries.get(node.node_id)
            if entry is not None:
                if entry.node.address != node.address:
                    return None
                if entry.rtt is None:
                    estimate = RttEstimate.first(rtt, self._variation)
                else:
                    estimate = entry.rtt.updated(rtt)
                    deviation = abs(entry.rtt.srtt - rtt)
                    self._variation = (
                        deviation
                        if self._variation is None
                        else next_rttvar(self._variation, deviation)
                    )
                entries[node.node_id] = attrs.evolve(entry, rtt=estimate)
                return estimate
        return None

    def on_failure(self, node_id: NodeId, now: float) -> NodeState | None:
        """Our query to ``node_id`` went unanswered. A node that turns bad gives its place to
        the best node in the replacement cache, if any. Returns its new state, or None when
        the table does not hold it."""
        bucket = self._bucket_for(node_id)
        cached = bucket.replacements.get(node_id)
        if cached is not None:
            failed = attrs.evolve(cached, failures=cached.failures + 1)
            if failed.failures >= self._max_failures:
                del bucket.replacements[node_id]
            else:
                bucket.replacements[node_id] = failed
            return None
        entry = bucket.nodes.get(node_id)
        if entry is None:
            return None
        entry = attrs.evolve(entry, failures=entry.failures + 1)
        bucket.nodes[node_id] = entry
        state = self.state_of(entry, now)
        if state is NodeState.BAD and bucket.replacements:
            del bucket.nodes[node_id]
            self._promote(bucket, now)
        return state

    def would_accept(self, node_id: NodeId, now: float) -> bool:
        """Whether a new ``node_id`` would get a place in a bucket now (worth a ping to verify
        a node heard of in a lookup), rather than be ignored or cached."""
        if node_id == self._own_id or node_id in self:
            return False
        index = self.bucket_index(node_id)
        bucket = self._buckets[index]
        return (
            len(bucket.nodes) < self._k
            or any(self.state_of(e, now) is NodeState.BAD for e in bucket.nodes.values())
            or (index == len(self._buckets) - 1 and index < ID_BITS - 1)
        )

    def closest(self, target: NodeId, count: int | None = None) -> list[NodeInfo]:
        """Up to ``count`` (default k) nodes nearest ``target`` by XOR, bad ones left out:
        where our own lookups start."""
        return self._closest(target, count, lambda entry: entry.failures < self._max_failures)

    def closest_good(
        self, target: NodeId, now: float, count: int | None = None, *, ipv6: bool | None = None
    ) -> list[NodeInfo]:
        """Up to ``count`` (default k) good nodes nearest ``target``: what find_node, get_peers
        and get answers carry (BEP 5); with ``ipv6``, only nodes of that family (BEP 32's
        ``nodes6`` or ``nodes``, each up to k)."""
        return self._closest(
            target,
            count,
            lambda entry: (
                self.state_of(entry, now) is NodeState.GOOD
                and (ipv6 is None or entry.node.is_ipv6 == ipv6)
            ),
        )

    def nodes_to_ping(self, now: float) -> list[NodeInfo]:
        """Per bucket, its least recently seen questionable node (BEP 5 pings them one at a time
        until one fails or all are good). Skip those already being pinged."""
        chosen = []
        for bucket in self._buckets:
            questionable = [
                entry
                for entry in bucket.nodes.values()
                if self.state_of(entry, now) is NodeState.QUESTIONABLE
            ]
            if questionable:
                chosen.append(min(questionable, key=lambda entry: entry.last_seen).node)
        return chosen

    def refresh_targets(self, now: float, rng: random.Random) -> list[NodeId]:
        """A random id in each bucket unchanged for the refresh interval, to look up with
        find_node (BEP 5). Their refresh clocks restart at ``now``."""
        targets = []
        for index, bucket in enumerate(self._buckets):
            if now - bucket.last_changed >= self._refresh_interval:
                low, high = self.bucket_range(index)
                targets.append(NodeId(low + rng.randrange(high - low)))
                bucket.last_changed = now
        return targets

    def _bucket_for(self, node_id: NodeId) -> _Bucket:
        return self._buckets[self.bucket_index(node_id)]

    def _closest(
        self, target: NodeId, count: int | None, keep: Callable[[RoutingEntry], bool]
    ) -> list[NodeInfo]:
        wanted = self._k if count is None else count
        candidates = (
            entry for bucket in self._buckets for entry in bucket.nodes.values() if keep(entry)
        )
        nearest = heapq.nsmallest(
            wanted, candidates, key=lambda entry: entry.node.node_id.value ^ target.value
        )
        return [entry.node for entry in nearest]

    def _offer(self, node: NodeInfo, now: float, *, responded: bool) -> Outcome:
        node_id = node.node_id
        if node_id == self._own_id:
            return Outcome.IGNORED
        index = self.bucket_index(node_id)
        bucket = self._buckets[index]
        known = bucket.nodes.get(node_id)
        if known is not None:
            if known.node.address != node.address:
                return Outcome.IGNORED
            if responded:
                bucket.nodes[node_id] = attrs.evolve(known, last_response=now, failures=0)
                bucket.last_changed = now
            else:
                bucket.nodes[node_id] = attrs.evolve(known, last_query=now)
            return Outcome.UPDATED
        cached = bucket.replacements.pop(node_id, None)
        if cached is None:
            entry = RoutingEntry(node, now if responded else None, None if responded else now, 0)
        elif cached.node.address != node.address:
            bucket.replacements[node_id] = cached
            return Outcome.IGNORED
        elif responded:
            entry = attrs.evolve(cached, last_response=now, failures=0)
        else:
            entry = attrs.evolve(cached, last_query=now)
        return self._insert(entry, index, now)

    def _insert(self, entry: RoutingEntry, index: int, now: float) -> Outcome:
        node_id = entry.node.node_id
        for _ in range(ID_BITS):  # each pass but the last splits the table one level deeper
            bucket = self._buckets[index]
            if len(bucket.nodes) < self._k:
                bucket.nodes[node_id] = entry
                bucket.last_changed = now
                return Outcome.ADDED
            bad = next(
                (
                    other
                    for other, known in bucket.nodes.items()
                    if known.failures >= self._max_failures
                ),
                None,
            )
            if bad is not None:
                del bucket.nodes[bad]
                bucket.nodes[node_id] = entry
                bucket.last_changed = now
                return Outcome.REPLACED
            if index < len(self._buckets) - 1 or index >= ID_BITS - 1:
                break
            self._split()
            index = self.bucket_index(node_id)
        self._cache(self._buckets[index], entry)
        return Outcome.CACHED

    def _split(self) -> None:
        """Split the last bucket: ids sharing exactly ``depth - 1`` bits with ours stay, the
        rest move to a new last bucket."""
        old = self._buckets[-1]
        near = _Bucket(last_changed=old.last_changed)
        self._buckets.append(near)
        deepest = len(self._buckets) - 1
        for source, destination in ((old.nodes, near.nodes), (old.replacements, near.replacements)):
            for node_id in [n for n in source if self.bucket_index(n) == deepest]:
                destination[node_id] = source.pop(node_id)
        self._promote(old, old.last_changed)
        self._promote(near, near.last_changed)

    def _cache(self, bucket: _Bucket, entry: RoutingEntry) -> None:
        if self._replacement_size == 0:
            return
        bucket.replacements[entry.node.node_id] = entry
        if len(bucket.replacements) > self._replacement_size:
            # Entries are (re)inserted as they are heard from: the first is the stalest.
            del bucket.replacements[next(iter(bucket.replacements))]

    def _promote(self, bucket: _Bucket, now: float) -> None:
        """Fill free places in ``bucket`` from its cache, nodes that answered us first."""
        for _ in range(self._k - len(bucket.nodes)):
            if not bucket.replacements:
                return
            best = max(
                bucket.replacements.values(),
                key=lambda e: (e.last_response is not None, e.last_seen),
            )
            del bucket.replacements[best.node.node_id]
            bucket.nodes[best.node.node_id] = best
            bucket.last_changed = now
