"""A simulated internet with a gateway and nodes behind any NAT: the world of ``make run``, the
NAT-pair tests and the connection benchmarks.

The gateway runs a two-address STUN observer and a relay announced in an embedded directory
(over UDP and TCP/TLS: a node made with ``tcp_fallback`` reaches it over TCP when its UDP is
blocked);
:meth:`World.node` puts a node behind a NAT preset and returns it once it has detected its NAT,
registered with a relay and published its record; :meth:`World.add_relay` adds a relay on a
host of its own (a node can be pinned to it as its home relay). Access links take 5 ms each
way, so two nodes are 20 ms apart and 40 ms through the relay. Run it under
``trio.testing.MockClock(autojump_threshold=0)`` and simulated seconds cost no wall time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final

import attrs
import trio

from macula_nat.directory import Directory, EmbeddedDirectory
from macula_nat.identity import NodeKey
from macula_nat.net.address import ANY_IPV4, ANY_IPV6, Address, ip_version
from macula_nat.net.sim import Internet, LinkProfile, Preset, add_site, open_internet
from macula_nat.net.sim.host import SimHost
from macula_nat.relay import (
    RegistryConfig,
    RelayNode,
    RelayRegistry,
    TcpFallback,
    TcpRelayConfig,
    open_relay,
)
from macula_nat.relay.registry import open_relay_registry
from macula_nat.system import NatConfig, NatSystem, open_nat_system
from macula_nat.traversal.config import TraversalConfig

__all__ = [
    "ALTERNATE",
    "ALTERNATE6",
    "PRIMARY",
    "PRIMARY6",
    "RELAY",
    "RELAY6",
    "SITE_LINK",
    "World",
    "open_world",
]

PRIMARY: Final[Address] = ("198.51.100.10", 3478)
"""The gateway's observer."""
ALTERNATE: Final[Address] = ("198.51.100.11", 3479)
RELAY: Final[Address] = ("198.51.100.10", 3480)
PRIMARY6: Final[Address] = ("2001:db8:0:1::10", 3478)
"""The gateway's observer over IPv6 (in a world opened with ``ipv6=True``)."""
ALTERNATE6: Final[Address] = ("2001:db8:0:1::11", 3479)
RELAY6: Final[Address] = ("2001:db8:0:1::10", 3480)
"""The gateway's relay at its IPv6 address (the same relay as ``RELAY``, dual-stack)."""
SITE_LINK: Final = LinkProfile(latency=0.005)
"""5 ms each way per access link (the gateway's too): 20 ms between two nodes."""
READY_TIMEOUT: Final = 30.0
"""Simulated seconds a node may take to detect, register and publish."""


@attrs.define
class World:
    """The simulated internet and its gateway; nodes live until the world closes."""

    internet: Internet
    directory: EmbeddedDirectory
    relay: RelayNode
    _stack: AsyncExitStack
    traversal: TraversalConfig = attrs.Factory(TraversalConfig)
    site_link: LinkProfile = SITE_LINK

    async def node(
        self, preset: Preset | str, name: str | None = None, *, home_relay: Address | None = None
    ) -> NatSystem:
        """A node behind ``preset``: detected, registered with a relay (``home_relay`` when
        given, else the best), published."""
        site = add_site(self.internet.public, preset, name=name, link=self.site_link)
        return await self.node_at(site.host, home_relay=home_relay)

    async def node_at(
        self,
        host: SimHost,
        *,
        home_relay: Address | None = None,
        tcp_fallback: bool = False,
        directory: Directory | None = None,
    ) -> NatSystem:
        """A node on ``host`` (made by the caller, who keeps its NAT boxes), ready as above.
        A host without an IPv4 address runs its node over IPv6, one with both dual-stack
        (classifying its IPv4 NAT and its IPv6 side, each on its own); the world must have been
        opened with ``ipv6``. With
        ``tcp_fallback`` it reaches its relay over TCP/TLS when no UDP answer comes (the
        gateway's relay is known to it, as a gateway's address is), and its directory through
        that relay. ``directory`` replaces the world's for this node."""
        versions = {ip_version(ip) for ip in host.addresses}
        ipv4 = 4 in versions
        config = NatConfig(
            stack=host,
            listen=(ANY_IPV6 if 6 in versions else ANY_IPV4, 0),
            dual_stack=versions == {4, 6},
            observers=(PRIMARY, PRIMARY6)
            if versions == {4, 6}
            else (PRIMARY if ipv4 else PRIMARY6,),
            detect_timeout=1.0,
            directory=self.directory if directory is None else directory,
            key=NodeKey.generate(),
            traversal=self.traversal,
            relays=RegistryConfig(
                probe_window=0.2,
                home_relay=home_relay,
                tcp_fallback=TcpFallback(relays=(RELAY,)) if tcp_fallback else None,
            ),
        )
        system = await self._stack.enter_async_context(open_nat_system(config))
        with trio.fail_after(READY_TIMEOUT):
            await system.wait_ready()
            await self._published(system)
        return system

    async def add_relay(self, ip: str) -> RelayNode:
        """Another relay, on a public host of its own at ``ip`` (port 3480), announced."""
        host = self.internet.add_host([ip], link=SITE_LINK)
        return await _start_relay(self._stack, self.directory, host, (ip, RELAY[1]))

    async def _published(self, system: NatSystem) -> None:
        """Until ``system``'s record names its profile (a dual-stack node's IPv6 one too) and
        home relay (the directory has no change notification: poll, bounded by the caller's
        timeout)."""
        while True:
            record = await self.directory.resolve_record(system.node_id.text())
            if (
                record is not None
                and record.profile is not None
                and record.home_relay
                and (system.detector6 is None or record.profile6 is not None)
            ):
                return
            await trio.sleep(0.05)


async def _start_relay(
    stack: AsyncExitStack,
    directory: EmbeddedDirectory,
    host: SimHost,
    address: Address,
    address6: Address | None = None,
) -> RelayNode:
    """A relay at ``address`` on ``host``, announced in ``directory``, running on ``stack``,
    also over TCP/TLS; with ``address6`` it is dual-stack (one socket on ``::``), announced at
    both."""
    listen = address if address6 is None else (ANY_IPV6, address[1])
    relay = RelayNode(
        host,
        listen,
        NodeKey.generate(),
        dual_stack=address6 is not None,
        tcp=TcpRelayConfig(),
        directory=directory,
    )
    registry = RelayRegistry(directory, host)
    await stack.enter_async_context(open_relay(relay))
    await stack.enter_async_context(open_relay_registry(registry))
    await relay.enable(max_sessions=1000)
    for announced in (address,) if address6 is None else (address, address6):
        if not await registry.register(relay.node_id, announced):
            raise RuntimeError(f"the relay at {announced} could not be announced")
    return relay


@asynccontextmanager
async def open_world(
    seed: int = 1,
    *,
    loss: float = 0.0,
    traversal: TraversalConfig | None = None,
    ipv6: bool = False,
) -> AsyncIterator[World]:
    """A simulated internet seeded with ``seed`` (each access link losing ``loss`` of its
    datagrams) and its gateway, for the ``async with`` block; nodes use ``traversal``. With
    ``ipv6`` the gateway is dual-stack: an observer on IPv6 addresses too, and its relay
    listens on both versions, announced at ``RELAY`` and ``RELAY6``."""
    async with open_internet(seed=seed) as internet, AsyncExitStack() as stack:
        directory = EmbeddedDirectory(clock=trio.current_time)
        ips = [PRIMARY[0], ALTERNATE[0]] + ([PRIMARY6[0], ALTERNATE6[0]] if ipv6 else [])
        host = internet.add_host(ips, name="gateway", link=SITE_LINK)
        families = [(PRIMARY, ALTERNATE, ANY_IPV4)] + (
            [(PRIMARY6, ALTERNATE6, ANY_IPV6)] if ipv6 else []
        )
        for primary, alternate, wildcard in families:
            gateway = NatConfig(
                stack=host,
                listen=(wildcard, 0),
                observe=primary,
                observe_alternate=alternate,
                detect_on_start=False,
                directory=directory,
            )
            await stack.enter_async_context(open_nat_system(gateway))
        relay = await _start_relay(stack, directory, host, RELAY, RELAY6 if ipv6 else None)
        site_link = attrs.evolve(SITE_LINK, loss=loss)
        yield World(internet, directory, relay, stack, traversal or TraversalConfig(), site_link)
