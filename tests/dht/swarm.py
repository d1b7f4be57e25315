"""A swarm of our DHT nodes on the simulated internet, for the node, swarm and directory tests."""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import attrs
import trio

from macula_nat.actors import run_actor
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import DhtNode, DhtServer
from macula_nat.dht.node_id import NodeId
from macula_nat.net import UdpStack
from macula_nat.net.sim import Internet, LinkProfile

from .geography import node_place, rtt

PORT = 6881
WAVE = 50
"""Nodes joining at once."""


@attrs.define(eq=False)
class Swarm:
    """Running nodes (joined in order, each through a random earlier one) and their nursery."""

    nodes: list[DhtNode]
    nursery: trio.Nursery
    rng: random.Random

    async def add(self, stack: UdpStack, config: DhtConfig, *, join: bool = True) -> DhtNode:
        """Start one more node on ``stack``; with ``join``, bootstrap it through a swarm node."""
        node = DhtNode(stack, config, node_id=NodeId.random(self.rng), rng=self.rng)
        await self.nursery.start(run_actor, DhtServer(node))
        if join and self.nodes:
            await node.bootstrap([self.rng.choice(self.nodes).contact.address])
        self.nodes.append(node)
        return node

    def closest_live(self, target: NodeId) -> DhtNode:
        alive = [n for n in self.nodes if n.server is not None and n.server.alive]
        return min(alive, key=lambda n: n.node_id.distance(target))


_indices = itertools.count(1)

LINK = LinkProfile(latency=0.01, jitter=0.02)
"""Each host's link: 20 to 60 ms round trips between two hosts."""


def geographic_link(rng: random.Random) -> LinkProfile:
    """A host's link on a world-wide internet: one way, a quarter of a round trip between two
    random places of `tests.dht.geography` (plus 0-2 ms jitter). The simulated internet adds
    the two hosts' links, so a round trip between two hosts is the mean of two such world
    round trips (about 5 to 300 ms): a node's contacts range from near to far, each at its own
    distance."""
    return LinkProfile(latency=rtt(node_place(rng), node_place(rng)) / 4000, jitter=0.002)


def public_config(
    internet: Internet, config: DhtConfig, link: LinkProfile = LINK
) -> tuple[UdpStack, DhtConfig]:
    """A fresh public host (in 198.18.0.0/15, RFC 2544's range: 130,000 per process) on
    ``link`` and ``config`` listening on its address."""
    index = next(_indices)
    address = f"198.{18 + (index >> 16)}.{(index >> 8) & 255}.{index & 255}"
    host = internet.add_host([address], link=link)
    return host, attrs.evolve(config, listen=(address, PORT))


@asynccontextmanager
async def open_swarm(
    internet: Internet,
    count: int,
    config: DhtConfig | None = None,
    *,
    seed: int = 0,
    settle: bool = True,
    links: Callable[[random.Random], LinkProfile] | None = None,
) -> AsyncIterator[Swarm]:
    """``count`` public nodes that have joined one by one; with ``settle``, each then looks
    its own id up again, so early nodes learn of later ones (as a refresh would). ``links``
    draws each host's link (e.g. `geographic_link`); default: every host on `LINK`."""
    base = config if config is not None else DhtConfig()
    link_rng = random.Random(f"links {seed}")

    def host() -> tuple[UdpStack, DhtConfig]:
        return public_config(internet, base, LINK if links is None else links(link_rng))

    async with trio.open_nursery() as nursery:
        swarm = Swarm([], nursery, random.Random(seed))
        await swarm.add(*host())
        while len(swarm.nodes) < count:
            # Join in waves: each wave's nodes bootstrap at once through earlier ones.
            wave = min(count - len(swarm.nodes), max(1, len(swarm.nodes) // 2), WAVE)
            async with trio.open_nursery() as joining:
                for _ in range(wave):
                    joining.start_soon(swarm.add, *host())
        if settle:
            await _settle(swarm.nodes)
        yield swarm
        nursery.cancel_scope.cancel()


async def _settle(nodes: Sequence[DhtNode]) -> None:
    for node in nodes:
        await node.find_node(node.node_id)
