"""The iterative Kademlia lookup (BEP 5 "Overview"; Kademlia paper section 2.3), sans-IO.

The caller seeds a `Lookup` with the nodes it knows nearest the target, then loops: send a
query to each node `Lookup.next_queries` returns, report each answer with `Lookup.on_response`
(the nodes it carried) and each timeout with `Lookup.on_timeout`. At most ``alpha`` queries are
outstanding, always to the nearest nodes not yet asked among the ``k`` nearest that have not
failed. The lookup is done when those ``k`` nearest have all answered: no closer node is left to
ask. A query outstanding for its ``slow_after`` seconds is *slow*: it stops holding its slot and
stops counting among the ``k`` nearest, so a gone node stalls the lookup for a few round trips,
not for the whole query timeout (libtorrent's "short timeout"); its answer still counts if it
comes before the lookup ends. ``slow_after`` is one duration for every query, or a function of
the node asked, called as its query is handed out: the caller derives it from the round trips
it measured to that node (a near node turns slow sooner than a far one), and stays the one that
measures.

Hop counts: a seed is hop 0, a node first heard of from a hop-``h`` node is hop ``h + 1``;
`LookupStatistics.hops` is the number of round trips in sequence the result needed.
"""

from __future__ import annotations

import bisect
import enum
import math
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from .compact import NodeInfo
from .node_id import NodeId
from .routing_table import K

__all__ = ["ALPHA", "Lookup", "LookupStatistics", "SlowAfter"]

ALPHA: Final = 3
"""Queries in flight at once (Kademlia's alpha)."""


class _Status(enum.Enum):
    NEW = "new"
    IN_FLIGHT = "in flight"
    SLOW = "slow"
    """In flight past ``slow_after``: still awaited, no longer waited for."""
    RESPONDED = "responded"
    FAILED = "failed"


SlowAfter = float | Callable[[NodeInfo], float]
"""Seconds a query may be outstanding before it is slow: one for all, or per node asked."""

_PENDING: Final = frozenset({_Status.IN_FLIGHT, _Status.SLOW})
_GIVEN_UP: Final = frozenset({_Status.SLOW, _Status.FAILED})


@attrs.define
class _Candidate:
    node: NodeInfo
    distance: int
    hop: int
    status: _Status = _Status.NEW
    slow_at: float = math.inf
    """When its query, once handed out, turns slow (never: inf)."""


@attrs.frozen
class LookupStatistics:
    """What a lookup cost so far."""

    queries: int
    """Queries handed out by `Lookup.next_queries`: the messages sent."""
    responses: int
    timeouts: int
    hops: int
    """Round trips in sequence behind the result: 1 + the largest hop among its nodes."""
    candidates: int
    """Nodes the lookup knows of."""


class Lookup:
    """One iterative lookup of ``target``; see the module docstring for the protocol."""

    def __init__(
        self,
        target: NodeId,
        seeds: Iterable[NodeInfo],
        *,
        k: int = K,
        alpha: int = ALPHA,
        slow_after: SlowAfter | None = None,
        exclude: NodeId | None = None,
        max_candidates: int | None = None,
    ) -> None:
        if k < 1 or alpha < 1:
            raise ValueError(f"k and alpha must be positive, got k={k} alpha={alpha}")
        self._target = target
        self._k = k
        self._alpha = alpha
        if not callable(slow_after) and slow_after is not None:
            _check_slow_after(slow_after)
        self._slow_after = slow_after
        self._exclude = exclude
        self._max_candidates = max(16 * k, k) if max_candidates is None else max_candidates
        if self._max_candidates < k:
            raise ValueError(f"max_candidates must be at least k={k}")
        self._by_id: dict[NodeId, _Candidate] = {}
        self._order: list[_Candidate] = []
        self._queries = 0
        self._responses = 0
        self._timeouts = 0
        self._add(seeds, hop=0)

    @property
    def target(self) -> NodeId:
        """The id being looked up."""
        return self._target

    @property
    def done(self) -> bool:
        """Whether the ``k`` nearest nodes that have not failed have all answered."""
        return all(c.status is _Status.RESPONDED for c in self._nearest_alive())

    @property
    def result(self) -> list[NodeInfo]:
        """The up to ``k`` nearest nodes that answered, nearest first."""
        answered = (c.node for c in self._order if c.status is _Status.RESPONDED)
        return [node for node, _ in zip(answered, range(self._k), strict=False)]

    @property
    def in_flight(self) -> list[NodeInfo]:
        """Nodes queried and not yet answered nor timed out (slow ones included)."""
        return [c.node for c in self._order if c.status in _PENDING]

    def slow_at(self) -> float | None:
        """When the next query in flight turns slow (None: none will)."""
        # The same times next_queries compares with: at that time the query is slow, exactly.
        at = min((c.slow_at for c in self._order if c.status is _Status.IN_FLIGHT), default=None)
        return None if at is None or at == math.inf else at

    def statistics(self) -> LookupStatistics:
        """The lookup's cost so far."""
        hops = max((c.hop for c in self._nearest_alive()), default=-1) + 1
        return LookupStatistics(
            queries=self._queries,
            responses=self._responses,
            timeouts=self._timeouts,
            hops=hops,
            candidates=len(self._order),
        )

    def next_queries(self, now: float) -> list[NodeInfo]:
        """The nodes to query now (possibly none); they count as in flight from ``now``, each
        until ``now`` plus its ``slow_after``."""
        for c in self._order:
            if c.status is _Status.IN_FLIGHT and c.slow_at <= now:
                c.status = _Status.SLOW
        if self.done:
            return []
        busy = sum(1 for c in self._order if c.status is _Status.IN_FLIGHT)
        free = self._alpha - busy
        if free <= 0:
            return []
        chosen = [c for c in self._nearest_alive() if c.status is _Status.NEW][:free]
        # Every duration first: a bad one raises before any query counts as handed out.
        waits = [self._slow_wait(c.node) for c in chosen]
        for candidate, wait in zip(chosen, waits, strict=True):
            candidate.status = _Status.IN_FLIGHT
            candidate.slow_at = now + wait
        self._queries += len(chosen)
        return [c.node for c in chosen]

    def on_response(self, node: NodeInfo, nodes: Iterable[NodeInfo]) -> bool:
        """``node`` answered with ``nodes``. False (and nothing changes) unless a query to it
        was in flight."""
        candidate = self._by_id.get(node.node_id)
        if candidate is None or candidate.status not in _PENDING:
            return False
        candidate.status = _Status.RESPONDED
        self._responses += 1
        self._add(nodes, hop=candidate.hop + 1)
        return True

    def on_timeout(self, node: NodeInfo) -> bool:
        """The query to ``node`` got no answer in time. False unless one was in flight."""
        candidate = self._by_id.get(node.node_id)
        if candidate is None or candidate.status not in _PENDING:
            return False
        candidate.status = _Status.FAILED
        self._timeouts += 1
        return True

    def _slow_wait(self, node: NodeInfo) -> float:
        slow_after = self._slow_after
        if slow_after is None:
            return math.inf
        if callable(slow_after):
            return _check_slow_after(slow_after(node))
        return slow_after

    def _nearest_alive(self) -> list[_Candidate]:
        nearest: list[_Candidate] = []
        for candidate in self._order:
            if candidate.status not in _GIVEN_UP:
                nearest.append(candidate)
                if len(nearest) == self._k:
                    break
        return nearest

    def _add(self, nodes: Iterable[NodeInfo], hop: int) -> None:
        for node in nodes:
            known = self._by_id.get(node.node_id)
            if known is not None:
                known.hop = min(known.hop, hop)
                continue
            if node.node_id == self._exclude:
                continue
            candidate = _Candidate(node, node.node_id.value ^ self._target.value, hop)
            bisect.insort(self._order, candidate, key=lambda c: c.distance)
            self._by_id[node.node_id] = candidate
        self._trim()

    def _trim(self) -> None:
        """Forget the farthest never-queried nodes beyond ``max_candidates``."""
        excess = len(self._order) - self._max_candidates
        if excess <= 0:
            return
        for index in range(len(self._order) - 1, -1, -1):
            if excess == 0:
                break
            candidate = self._order[index]
            if candidate.status is _Status.NEW:
                del self._order[index]
                del self._by_id[candidate.node.node_id]
                excess -= 1


def _check_slow_after(seconds: float) -> float:
    if not seconds >= 0:
        raise ValueError(f"slow_after must be >= 0 seconds, not {seconds!r}")
    return seconds
