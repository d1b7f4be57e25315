"""Drives a sans-IO `Lookup` over real queries, and the frozen results operations return.

`run_lookup` keeps up to alpha queries in flight (each its own task), feeds every answer or
timeout back into the lookup, wakes when a query turns slow to send the next, and stops (slow
queries still pending are dropped) when the lookup is done, has nobody left to ask, or has
sent ``max_queries`` (plus at most alpha - 1 sent in the same round): the loop is bounded by it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import attrs
import trio

from .compact import Address, NodeInfo
from .krpc import Response
from .lookup import Lookup
from .mutable_item import Item

__all__ = ["GetResult", "LookupResult", "PeersResult", "PutResult", "run_lookup"]

Ask = Callable[[NodeInfo], Awaitable[Response | None]]
"""Query one node; its response, or None for a timeout or an error."""


@attrs.frozen
class LookupResult:
    """The nearest nodes found, and what finding them cost."""

    nodes: tuple[NodeInfo, ...]
    """Up to k nodes that answered, nearest the target first."""
    hops: int
    """Round trips in sequence behind the result."""
    queries: int
    """Messages this lookup sent."""
    responses: int
    timeouts: int
    done: bool
    """The k nearest nodes all answered (False: the lookup ran out of nodes or queries)."""


@attrs.frozen
class PeersResult:
    """What get_peers found: announced peers of the info-hash."""

    peers: tuple[Address, ...]
    lookup: LookupResult


@attrs.frozen
class GetResult:
    """The newest verified item found under a target (None: no node had one)."""

    item: Item | None
    lookup: LookupResult


@attrs.frozen
class PutResult:
    """How many of the nodes nearest the target stored the item, and the errors others sent."""

    stored: int
    errors: tuple[int, ...]
    """KRPC error codes received (e.g. 302 from a node holding a newer seq)."""
    lookup: LookupResult


def result_of(lookup: Lookup) -> LookupResult:
    stats = lookup.statistics()
    return LookupResult(
        nodes=tuple(lookup.result),
        hops=stats.hops,
        queries=stats.queries,
        responses=stats.responses,
        timeouts=stats.timeouts,
        done=lookup.done,
    )


async def run_lookup(lookup: Lookup, ask: Ask, max_queries: int) -> LookupResult:
    """Run ``lookup`` to its end through ``ask``; see the module docstring for the bound."""
    wake = trio.lowlevel.ParkingLot()

    async def query(node: NodeInfo) -> None:
        response = await ask(node)
        if response is None:
            lookup.on_timeout(node)
        else:
            lookup.on_response(node, response.all_nodes)
        wake.unpark_all()

    async with trio.open_nursery() as nursery:
        # Each pass starts queries or waits for one to end or turn slow; there are at most
        # max_queries + alpha - 1 queries, each ending or turning slow once, so this many
        # passes always suffice.
        for _ in range(4 * max_queries + 2):
            if lookup.statistics().queries < max_queries:
                for node in lookup.next_queries(trio.current_time()):
                    nursery.start_soon(query, node)
            if lookup.done or not lookup.in_flight:
                break
            slow_at = lookup.slow_at()
            with trio.move_on_at(math.inf if slow_at is None else slow_at):
                await wake.park()
        nursery.cancel_scope.cancel()
    return result_of(lookup)
