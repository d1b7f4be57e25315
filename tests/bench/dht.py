"""DHT benchmarks: put/get latency in a 20-node swarm on 127.0.0.1 (real sockets), and hops and
messages per lookup in a 1,000-node swarm on the simulated internet (under a MockClock, run in
a thread of its own so its virtual time does not touch the caller's clock)."""

from __future__ import annotations

import random
import statistics
from typing import Final

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from macula_nat.dht import bencoding
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.mutable_item import MutableItem
from macula_nat.dht.node import DhtNode, open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import RealUdpStack
from macula_nat.net.sim import open_internet
from tests.dht.simulation import Network, hot_spot, relay_list_load
from tests.dht.swarm import open_swarm

from .timing import Figure, now

LAB_NODES: Final = 20
ROUNDS: Final = 20
SIM_NODES: Final = 1000
SIM_LOOKUPS: Final = 100
LOAD_NODES: Final = 5000
LOAD_RELAYS: Final = 200
CONFIG: Final = DhtConfig(listen=("127.0.0.1", 0), query_rate=1e6, query_burst=1e6)


async def _lab() -> list[Figure]:
    nodes: list[DhtNode] = []
    async with trio.open_nursery() as nursery:
        stack = RealUdpStack()

        async def run(task_status: trio.TaskStatus[DhtNode]) -> None:
            async with open_dht_node(stack, CONFIG) as node:
                task_status.started(node)
                await trio.sleep_forever()

        for _ in range(LAB_NODES):
            node = await nursery.start(run)
            if nodes:
                await node.bootstrap([nodes[0].contact.address])
            nodes.append(node)
        for node in nodes:
            await node.find_node(node.node_id)
        rng = random.Random(1)
        key = Ed25519PrivateKey.generate()
        puts, gets = [], []
        for seq in range(1, ROUNDS + 1):
            writer, reader = rng.sample(nodes, 2)
            item = MutableItem.sign(key, bencoding.encode(b"x" * 200), seq, b"bench")
            start = now()
            await writer.put(item)
            puts.append(now() - start)
            start = now()
            got = await reader.get(item.target, salt=b"bench")
            gets.append(now() - start)
            assert got.item == item
        nursery.cancel_scope.cancel()
    return [
        Figure(
            f"DHT put latency, {LAB_NODES} nodes on 127.0.0.1 (median)",
            1e3 * statistics.median(puts),
            "ms",
        ),
        Figure(
            f"DHT get latency, {LAB_NODES} nodes on 127.0.0.1 (median)",
            1e3 * statistics.median(gets),
            "ms",
        ),
    ]


async def _simulated() -> list[Figure]:
    rng = random.Random(7)
    hops, messages = [], []
    async with open_internet(seed=7) as internet, open_swarm(internet, SIM_NODES) as swarm:
        for _ in range(SIM_LOOKUPS):
            result = await rng.choice(swarm.nodes).find_node(NodeId.random(rng))
            hops.append(result.hops)
            messages.append(result.queries)
    return [
        Figure(
            f"DHT hops per lookup, {SIM_NODES} simulated nodes (mean)",
            statistics.mean(hops),
            "hops",
            goal="about log2(N) = 10",
        ),
        Figure(
            f"DHT messages per lookup, {SIM_NODES} simulated nodes (mean)",
            statistics.mean(messages),
            "queries",
        ),
    ]


def _relay_discovery() -> list[Figure]:
    """The busiest DHT node's share of relay-list lookups, one per node, sharded or not."""
    rng = random.Random(9)
    network = Network([NodeId.random(rng) for _ in range(LOAD_NODES)], rng)
    sharded = hot_spot(relay_list_load(network, LOAD_RELAYS, rng), LOAD_NODES)
    one_key = hot_spot(relay_list_load(network, LOAD_RELAYS, rng, sharded=False), LOAD_NODES)
    return [
        Figure(
            f"DHT relay lists, {LOAD_NODES:,} nodes, {LOAD_RELAYS} relays: busiest/mean",
            sharded,
            "x",
            one_key,
            "<= 3x (one key: the baseline)",
        )
    ]


def _simulated_in_own_run() -> list[Figure]:
    return trio.run(_simulated, clock=trio.testing.MockClock(autojump_threshold=0))


async def run() -> list[Figure]:
    figures = await _lab()
    figures += await trio.to_thread.run_sync(_simulated_in_own_run)
    figures += _relay_discovery()
    return figures
