"""DHT at scale (issue 16): the largest networks that run in about a minute each.

Our DHT node code in a swarm on the simulated internet under virtual time (a MockClock, in a
thread of its own): lookup success (the nearest answer is the live node nearest the target),
hops, and the median lookup right after 20% of the nodes went away beside the median before.
Then the pure simulation (`tests/dht/simulation.py`: routing tables as live nodes build them,
lookups in rounds) at a larger N: lookup success and hops, and relay discovery: the busiest DHT
node's relay-list queries over the mean, and how far above the best relay each node's choice
is, with regions (24 landmarks) and without.
"""

from __future__ import annotations

import random
import statistics
import sys
from typing import Final

import trio
import trio.testing

from macula_nat.dht.config import DhtConfig
from macula_nat.dht.krpc import GetPeers, encode
from macula_nat.dht.node import open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import RealUdpStack
from macula_nat.net.sim import open_internet
from tests.dht.simulation import Network, figures, hot_spot, regional_relay_choice
from tests.dht.swarm import Swarm, open_swarm

from .timing import Figure

SWARM_NODES: Final = 2000
SWARM_LOOKUPS: Final = 100
CHURN: Final = 0.2
PURE_NODES: Final = 20_000
PURE_LOOKUPS: Final = 500
RELAYS: Final = 200
ANSWER_SECONDS: Final = 3.0
IN_FLIGHT: Final = 32
"""get_peers queries outstanding at once against the loopback node."""


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


async def _swarm() -> list[Figure]:
    rng = random.Random(16)
    async with open_internet(seed=16) as internet, open_swarm(internet, SWARM_NODES) as swarm:
        success, hops, settled = await _lookups(swarm, rng)
        for node in rng.sample(swarm.nodes, int(CHURN * SWARM_NODES)):
            assert node.server is not None
            await node.server.stop()
        churn_success, _, churned = await _lookups(swarm, rng)
    n = f"{SWARM_NODES:,} swarm nodes"
    return [
        Figure(f"DHT lookup success, {n} (sim, virtual time)", 100 * success, "%"),
        Figure(f"DHT lookup success, {n}, right after {CHURN:.0%} churn", 100 * churn_success, "%"),
        Figure(f"DHT hops per lookup, {n} (mean)", hops, "hops"),
        Figure(
            f"DHT median lookup, {n}, after {CHURN:.0%} churn",
            1e3 * churned,
            "ms",
            1e3 * settled,
            "<= 2x (baseline: before the churn)",
        ),
    ]


def _pure() -> list[Figure]:
    rng = random.Random(17)
    network = Network([NodeId.random(rng) for _ in range(PURE_NODES)], rng)
    looked = figures(network, PURE_LOOKUPS, rng)
    choice = regional_relay_choice(network, RELAYS, rng)
    random_relays = regional_relay_choice(network, RELAYS, rng, regions=False)
    n = f"{PURE_NODES:,} nodes"
    return [
        Figure(
            f"DHT lookup finds the nearest node, {n} (pure sim)", 100 * looked.found_closest, "%"
        ),
        Figure(f"DHT hops per lookup, {n} (mean)", looked.mean_hops, "hops"),
        Figure(
            f"relay lists, {n}, {RELAYS} relays, regions: busiest/mean",
            hot_spot(choice.load, PURE_NODES),
            "x",
            goal="<= 3x",
        ),
        Figure(
            f"relay chosen over the best, {n}, regions (worst node)",
            max(choice.shortfall),
            "ms",
            max(random_relays.shortfall),
            "<= 50 ms (baseline: no regions)",
        ),
        Figure(
            f"nodes > 50 ms from the best relay, {n}, regions",
            sum(s > 50 for s in choice.shortfall),
            "nodes",
            goal=f"0 (no regions: {sum(s > 50 for s in random_relays.shortfall)})",
        ),
    ]


async def _answering() -> list[Figure]:
    """get_peers queries one DHT node answers a second on 127.0.0.1 (its table holds the 8
    other nodes, each answer carries them), a client process keeping IN_FLIGHT outstanding."""
    config = DhtConfig(listen=("127.0.0.1", 0), query_rate=1e9, query_burst=1e9)
    stack = RealUdpStack()
    async with open_dht_node(stack, config) as node:
        others = []
        async with trio.open_nursery() as nursery:

            async def join(task_status: trio.TaskStatus[None]) -> None:
                async with open_dht_node(stack, config) as other:
                    await other.bootstrap([node.contact.address])
                    others.append(other)
                    task_status.started()
                    await trio.sleep_forever()

            for _ in range(8):
                await nursery.start(join)
            query = encode(
                GetPeers(transaction_id=b"bq", sender=NodeId(1), info_hash=NodeId.random())
            )
            host, port = node.contact.address
            arguments = [host, str(port), query.hex(), str(ANSWER_SECONDS), str(IN_FLIGHT)]
            client = await trio.run_process(
                [sys.executable, "-c", _CLIENT, *arguments], capture_stdout=True
            )
            answered, elapsed = map(float, client.stdout.split())
            nursery.cancel_scope.cancel()
    return [
        Figure(
            "DHT get_peers answered by one node, 127.0.0.1 (one core)",
            answered / elapsed,
            "q/s",
        )
    ]


_CLIENT: Final = """
import socket, sys, time
host, port, query = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
seconds, in_flight = float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
for _ in range(in_flight):
    s.sendto(query, (host, port))
answered, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    try:
        s.recv(2048)
    except socket.timeout:
        s.sendto(query, (host, port))
        continue
    answered += 1
    s.sendto(query, (host, port))
print(answered, time.perf_counter() - start)
"""
"""The load generator, in a process of its own so the node has its core to itself."""


def _swarm_in_own_run() -> list[Figure]:
    return trio.run(_swarm, clock=trio.testing.MockClock(autojump_threshold=0))


async def run() -> list[Figure]:
    figures_ = await _answering()
    figures_ += await trio.to_thread.run_sync(_swarm_in_own_run)
    return figures_ + await trio.to_thread.run_sync(_pure)
