"""A simulated internet with one gateway (observer, relay) and nodes behind any NAT preset."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import trio

from macula_nat.directory import EmbeddedDirectory
from macula_nat.identity import NodeKey
from macula_nat.net.sim import Internet, LinkProfile, Preset, add_site, open_internet
from macula_nat.net.sim.host import SimHost
from macula_nat.relay import RegistryConfig, RelayNode, RelayRegistry, open_relay
from macula_nat.relay.registry import open_relay_registry
from macula_nat.system import NatConfig, NatSystem, open_nat_system
from macula_nat.traversal.config import TraversalConfig

PRIMARY = ("198.51.100.10", 3478)
ALTERNATE = ("198.51.100.11", 3479)
RELAY = ("198.51.100.10", 3480)
GATEWAY_LINK = LinkProfile(latency=0.005)
SITE_LINK = LinkProfile(latency=0.005)
"""5 ms each way per access link: a 20 ms round trip between two nodes."""


@attrs.define
class World:
    internet: Internet
    directory: EmbeddedDirectory
    stack: AsyncExitStack
    relay: RelayNode
    traversal: TraversalConfig = attrs.Factory(TraversalConfig)
    site_link: LinkProfile = SITE_LINK

    async def node(self, preset: Preset | str, name: str | None = None) -> NatSystem:
        """A node behind ``preset``, detected, published and registered with the relay."""
        site = add_site(self.internet.public, preset, name=name, link=self.site_link)
        return await self.node_at(site.host)

    async def node_at(self, host: SimHost) -> NatSystem:
        """A node on ``host`` (made by the caller, who keeps its NAT boxes), ready as above."""
        config = NatConfig(
            stack=host,
            observers=(PRIMARY,),
            detect_timeout=1.0,
            directory=self.directory,
            key=NodeKey.generate(),
            traversal=self.traversal,
            relays=RegistryConfig(probe_window=0.2),
        )
        system = await self.stack.enter_async_context(open_nat_system(config))
        with trio.fail_after(30):
            await system.detector.profile.wait_value(lambda p: p is not None)
            await system.relays.home.wait_value(lambda h: h is not None)
            await self.published(system)
        return system

    async def published(self, system: NatSystem) -> None:
        """Wait until ``system``'s record names its profile and home relay."""
        for _ in range(1000):
            record = await self.directory.resolve_record(system.node_id.text())
            if record is not None and record.profile is not None and record.home_relay:
                return
            await trio.sleep(0.05)
        raise AssertionError(f"{system.node_id.short()} never published its record")


@asynccontextmanager
async def open_world(
    seed: int = 1, *, loss: float = 0.0, traversal: TraversalConfig | None = None
) -> AsyncIterator[World]:
    """The internet, the gateway, and a stack that closes the nodes made with ``world.node``."""
    async with open_internet(seed=seed) as internet, AsyncExitStack() as stack:
        directory = EmbeddedDirectory(clock=trio.current_time)
        host = internet.add_host([PRIMARY[0], ALTERNATE[0]], link=GATEWAY_LINK)
        gateway = NatConfig(
            stack=host,
            observe=PRIMARY,
            observe_alternate=ALTERNATE,
            detect_on_start=False,
            directory=directory,
        )
        await stack.enter_async_context(open_nat_system(gateway))
        relay = RelayNode(host, RELAY, NodeKey.generate())
        registry = RelayRegistry(directory, host)
        await stack.enter_async_context(open_relay(relay))
        await stack.enter_async_context(open_relay_registry(registry))
        await relay.enable(max_sessions=1000)
        assert await registry.register(relay.node_id, relay.address)
        site_link = attrs.evolve(SITE_LINK, loss=loss)
        yield World(internet, directory, stack, relay, traversal or TraversalConfig(), site_link)
