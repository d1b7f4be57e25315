"""Nodes whose router maps ports on request, in the simulated world of the NAT-pair tests."""

from __future__ import annotations

from typing import Final

import trio

from macula_nat.identity import NodeKey
from macula_nat.net.sim import Preset, add_site
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.portmap.client import PortMapConfig
from macula_nat.relay import RegistryConfig
from macula_nat.system import NatConfig, NatSystem, open_nat_system
from tests.traversal.world import PRIMARY, World

READY_TIMEOUT: Final = 30.0


async def mapped_node(
    world: World, preset: Preset | str, name: str, *, natpmp: bool = True, pcp: bool = True
) -> tuple[NatSystem, NatBox]:
    """A node behind ``preset`` whose innermost router answers NAT-PMP and/or PCP, with port
    mapping on; returns once it holds a mapping and its record is published (with the mapping
    when STUN confirmed it: not behind a carrier's NAT)."""
    site = add_site(world.internet.public, preset, name=name, link=world.site_link)
    nat = site.nats[-1]
    nat.enable_port_mapping(natpmp=natpmp, pcp=pcp)
    config = NatConfig(
        stack=site.host,
        observers=(PRIMARY,),
        detect_timeout=1.0,
        directory=world.directory,
        key=NodeKey.generate(),
        traversal=world.traversal,
        relays=RegistryConfig(probe_window=0.2),
        port_mapping=PortMapConfig(gateway=nat.lan_address),
    )
    system = await world._stack.enter_async_context(open_nat_system(config))
    mapper = system.port_mapper
    assert mapper is not None
    with trio.fail_after(READY_TIMEOUT):
        await system.wait_ready()
        mapping = await mapper.mapping.wait_value(lambda m: m is not None and m.trusted is not None)
        assert mapping is not None
        wanted = mapping.external if mapping.trusted else None
        while True:
            record = await world.directory.resolve_record(system.node_id.text())
            profile = None if record is None else record.profile
            if record is not None and record.home_relay and profile and profile.mapped == wanted:
                break
            await trio.sleep(0.05)
    return system, nat
