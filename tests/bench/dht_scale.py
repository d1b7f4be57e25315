"""DHT at scale (issue 16): the largest networks that run in about a minute each.

Our DHT node code in a swarm of the issue's 1,000 nodes on the simulated internet under virtual
time (a MockClock, in a thread of its own), each host on a link of its own drawn from the
world's geography (`tests.dht.swarm.geographic_link`: round trips between hosts about 20 to 300
ms, so a node's contacts are near and far): lookup success (the nearest answer is the live node
nearest the target), hops, and the median lookup right after 20% of the nodes went away beside
the median before, then after half of them went; and, right after the 20% churn, how long the
live nodes would wait on a silent contact before moving on: one their routing tables measured
(that contact's own RTO), one never measured, beside the node-wide RTO every contact waited
before waits were per contact.
Then the pure simulation (`tests/dht/simulation.py`: routing tables as live nodes build them,
lookups in rounds) at 20,000 nodes: lookup success and hops; and at the issue's 5,000 nodes and
200 relays, relay discovery with regions (24 landmarks, `tests/dht/geography.py`): the busiest
DHT node's relay-list queries over the mean, and how far above the best relay each node's choice
is, beside the same without regions.
"""

from __future__ import annotations

import random
import statistics
from typing import Final

import trio
import trio.testing

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.node import _MIN_SLOW, DhtNode
from macula_nat.dht.node_id import NodeId
from macula_nat.net.sim import open_internet
from tests.dht.simulation import Network, figures, hot_spot, regional_relay_choice
from tests.dht.swarm import Swarm, geographic_link, open_swarm

from .timing import Figure

SWARM_NODES: Final = 1000
SWARM_LOOKUPS: Final = 100
CHURN: Final = 0.2
HEAVY_CHURN: Final = 0.5
UNKNOWN: Final = NodeInfo(NodeId(0), ("192.0.2.1", 6881))
"""A contact no routing table holds."""
PURE_NODES: Final = 20_000
PURE_LOOKUPS: Final = 500
REGION_NODES: Final = 5000
RELAYS: Final = 200


async def _lookups(swarm: Swarm, rng: random.Random) -> tuple[float, float, float]:
    """Success rate, mean hops and median duration of SWARM_LOOKUPS random lookups."""
    alive = [n for n in swarm.nodes if n.server is not None and n.server.alive]
    found, hops, durations = 0, [], []
    for _ in range(SWARM_LOOKUPS):
        source, target = rng.choice(alive), NodeId.random(rng)
        started = trio.current_time()
        result = await source.find_node(target)
        durations.append(trio.current_time() - started)
        nearest = swarm.closest_live(target)
        found += nearest is source or (
            bool(result.nodes) and result.nodes[0].node_id == nearest.node_id
        )
        hops.append(result.hops)
    return found / SWARM_LOOKUPS, statistics.mean(hops), statistics.median(durations)


def _node_wide_rto(node: DhtNode) -> float:
    """What a lookup waited on any silent contact before waits were per contact: the RTO of
    all the node's round trips."""
    assert node._rtt is not None
    return node._rtt.rto(floor=_MIN_SLOW, ceiling=node.config.query_timeout)


def _waits(swarm: Swarm, gone: set[NodeId]) -> tuple[float, float, float]:
    """Medians over the live nodes: the wait on a gone contact the table measured (its own
    RTO), on a contact never measured, and the node-wide RTO."""
    measured, unknown, node_wide = [], [], []
    for node in swarm.nodes:
        if node.node_id in gone:
            continue
        unknown.append(node._slow_after(UNKNOWN))
        node_wide.append(_node_wide_rto(node))
        measured += [
            node._slow_after(entry.node)
            for entry in node.routing_table.entries()
            if entry.node.node_id in gone and entry.rtt is not None
        ]
    return statistics.median(measured), statistics.median(unknown), statistics.median(node_wide)


async def _churn(swarm: Swarm, gone: set[NodeId], fraction: float, rng: random.Random) -> None:
    """Stop random live nodes until ``fraction`` of the swarm is gone."""
    alive = [n for n in swarm.nodes if n.node_id not in gone]
    for node in rng.sample(alive, int(fraction * len(swarm.nodes)) - len(gone)):
        assert node.server is not None
        await node.server.stop()
        gone.add(node.node_id)


async def _swarm() -> list[Figure]:
    rng = random.Random(16)
    async with (
        open_internet(seed=16) as internet,
        open_swarm(internet, SWARM_NODES, seed=16, links=geographic_link) as swarm,
    ):
        success, hops, settled = await _lookups(swarm, rng)
        gone: set[NodeId] = set()
        await _churn(swarm, gone, CHURN, rng)
        measured_wait, unknown_wait, node_wide_wait = _waits(swarm, gone)
        churn_success, _, churned = await _lookups(swarm, rng)
        await _churn(swarm, gone, HEAVY_CHURN, rng)
        heavy_success, _, heavy = await _lookups(swarm, rng)
    n = f"{SWARM_NODES:,} swarm nodes"
    return [
        Figure(f"DHT lookup success, {n} (sim, world-wide links)", 100 * success, "%"),
        Figure(f"DHT lookup success, {n}, right after {CHURN:.0%} churn", 100 * churn_success, "%"),
        Figure(
            f"DHT lookup success, {n}, right after {HEAVY_CHURN:.0%} churn",
            100 * heavy_success,
            "%",
        ),
        Figure(f"DHT hops per lookup, {n} (mean)", hops, "hops"),
        Figure(
            f"DHT median lookup, {n}, after {CHURN:.0%} churn",
            1e3 * churned,
            "ms",
            1e3 * settled,
            "<= 2x (baseline: before the churn)",
        ),
        Figure(
            f"DHT median lookup, {n}, after {HEAVY_CHURN:.0%} churn",
            1e3 * heavy,
            "ms",
            1e3 * settled,
            "(baseline: before the churn)",
        ),
        Figure(
            f"DHT wait on a gone contact, its own RTO, {SWARM_NODES:,} nodes",
            1e3 * measured_wait,
            "ms",
            1e3 * node_wide_wait,
            "(baseline: the node-wide RTO)",
        ),
        Figure(
            f"DHT wait on a contact never measured, {SWARM_NODES:,} nodes",
            1e3 * unknown_wait,
            "ms",
            1e3 * node_wide_wait,
            "(baseline: the node-wide RTO)",
        ),
    ]


def _pure_lookups() -> list[Figure]:
    rng = random.Random(17)
    network = Network([NodeId.random(rng) for _ in range(PURE_NODES)], rng)
    looked = figures(network, PURE_LOOKUPS, rng)
    n = f"{PURE_NODES:,} nodes"
    return [
        Figure(
            f"DHT lookup finds the nearest node, {n} (pure sim)", 100 * looked.found_closest, "%"
        ),
        Figure(f"DHT hops per lookup, {n} (mean)", looked.mean_hops, "hops"),
    ]


def _relay_regions() -> list[Figure]:
    rng = random.Random(18)
    network = Network([NodeId.random(rng) for _ in range(REGION_NODES)], rng)
    choice = regional_relay_choice(network, RELAYS, rng)
    random_relays = regional_relay_choice(network, RELAYS, rng, regions=False)
    n = f"{REGION_NODES:,}/{RELAYS}"
    return [
        Figure(
            f"relay lists, regions, {n} nodes/relays: busiest/mean",
            hot_spot(choice.load, REGION_NODES),
            "x",
            goal="<= 3x",
        ),
        Figure(
            f"relay chosen over the best, regions, {n} (worst node)",
            max(choice.shortfall),
            "ms",
            max(random_relays.shortfall),
            "<= 50 ms (baseline: no regions)",
        ),
        Figure(
            f"nodes > 50 ms from the best relay, regions, {n}",
            sum(s > 50 for s in choice.shortfall),
            "nodes",
            goal=f"0 (no regions: {sum(s > 50 for s in random_relays.shortfall)})",
        ),
        Figure(f"relays a node measures, regions, {n} (mean)", choice.candidates, "relays"),
        Figure(
            f"DHT queries per relay-list read, regions, {n} (mean)",
            sum(choice.load.values()) / REGION_NODES,
            "queries",
            sum(random_relays.load.values()) / REGION_NODES,
            "(baseline: no regions)",
        ),
    ]


def _swarm_in_own_run() -> list[Figure]:
    return trio.run(_swarm, clock=trio.testing.MockClock(autojump_threshold=0))


async def run() -> list[Figure]:
    figures_ = await trio.to_thread.run_sync(_swarm_in_own_run)
    figures_ += await trio.to_thread.run_sync(_pure_lookups)
    return figures_ + await trio.to_thread.run_sync(_relay_regions)
