"""A node's DHT side is read-only (BEP 43) while its NAT profile says nobody could reach it."""

from __future__ import annotations

import attrs
import pytest
import trio
import trio.testing

from macula_nat.actors import Supervisor, open_actor
from macula_nat.behavior import FilteringBehavior
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import DhtNode
from macula_nat.dht.read_only import reachable
from macula_nat.nat.profile import NatProfile
from macula_nat.net.sim import open_internet

from .swarm import open_swarm, public_config

OPEN = NatProfile("ei", "ei", "pp", "198.51.100.7", 4000, 0.0, "high", nat_present=False)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, True),
        ({"nat_present": True}, False),  # a full cone still maps: the DHT socket's port differs
        ({"filtering": FilteringBehavior.ADDRESS_DEPENDENT}, False),
        ({"filtering": FilteringBehavior.ADDRESS_AND_PORT_DEPENDENT}, False),  # a firewall
        ({"udp_blocked": True}, False),
        ({"nat_present": True, "mapped": ("198.51.100.7", 5000)}, False),  # maps another socket
    ],
)
def test_only_a_host_without_nat_or_filtering_is_reachable(
    change: dict[str, object], expected: bool
) -> None:
    assert reachable(attrs.evolve(OPEN, **change)) is expected


async def test_an_owner_sets_the_mode_unless_the_config_fixed_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=41) as internet, open_swarm(internet, 6) as swarm:
        stack, config = public_config(
            internet, DhtConfig(bootstrap=[swarm.nodes[0].contact.address])
        )
        node = DhtNode(stack, config)
        async with open_actor(Supervisor([node.child_spec()])):
            assert not node.read_only  # alone, a full node
            node.set_read_only(True)
            assert node.statistics().read_only
            assert await node.bootstrap() > 0
            assert all(node.node_id not in other.routing_table for other in swarm.nodes)
            assert await swarm.nodes[0].ping(node.contact.address) is None  # answers nothing
            assert node.statistics().ignored_read_only == 1
            first = node.server
            assert first is not None
            await first.stop("crash")  # restarted: the mode is the node's, not its server's
            await trio.sleep(1)
            assert node.server is not first and node.server is not None and node.server.alive
            assert node.read_only
            node.set_read_only(False)
            await node.find_node(node.node_id)  # its queries no longer say ro=1
            assert any(node.node_id in other.routing_table for other in swarm.nodes)
            assert await swarm.nodes[0].ping(node.contact.address) == node.node_id

        for fixed in (True, False):
            stack, config = public_config(internet, DhtConfig(read_only=fixed))
            pinned = DhtNode(stack, config)
            pinned.set_read_only(not fixed)
            assert pinned.read_only is fixed
