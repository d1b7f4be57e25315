"""IPv6 on the simulated internet (issue 13): hosts with global addresses behind stateful
firewalls are detected as "no NAT, filtered" and punch directly; open IPv6 hosts are dialled."""

from __future__ import annotations

import pytest
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.nat.profile import NatProfile
from macula_nat.net.sim import SimHost
from macula_nat.system import NatSystem
from macula_nat.traversal.strategy import Method, choose

from .test_matrix import connect_as_planned
from .world import World, open_world


def firewalled(world: World, prefix: str, name: str) -> SimHost:
    """A host at ``prefix``::10 behind a stateful firewall of its own."""
    wall = world.internet.public.add_firewall(
        f"{prefix}/64", name=f"{name}-fw", link=world.site_link
    )
    return wall.add_host([f"{prefix}10"], name=name)


def profile_of(system: NatSystem) -> NatProfile:
    profile = system.detector.profile.value
    assert profile is not None
    return profile


async def test_a_stateful_ipv6_firewall_is_classified_no_nat_and_filtered(
    autojump_clock: MockClock,
) -> None:
    async with open_world(seed=11, ipv6=True) as world:
        node = await world.node_at(firewalled(world, "2001:db8:a::", "alice"))
        profile = profile_of(node)
    assert not profile.nat_present
    assert (profile.mapping, profile.filtering, profile.allocation) == ("ei", "pd", "pp")
    assert profile.public_address == profile.local_address
    assert profile.public_ip == "2001:db8:a::10"
    assert profile.nat_type == "firewalled, no NAT"


@pytest.mark.parametrize("seed", [12, 13])
async def test_two_firewalled_ipv6_hosts_punch_directly(
    seed: int, autojump_clock: MockClock
) -> None:
    async with open_world(seed=seed, ipv6=True) as world:
        alice = await world.node_at(firewalled(world, "2001:db8:a::", "alice"))
        bob = await world.node_at(firewalled(world, "2001:db8:b::", "bob"))
        plan = choose(profile_of(alice), profile_of(bob))
        assert plan.method is Method.PUNCH and plan.initiator is None  # a simultaneous open
        method = await connect_as_planned(alice, bob, 0.0)
        assert method is ConnectionMethod.PUNCHED


@pytest.mark.parametrize("dialled_first", [True, False], ids=["open-dials", "open-is-dialled"])
async def test_an_open_ipv6_host_and_a_firewalled_one_connect_directly(
    dialled_first: bool, autojump_clock: MockClock
) -> None:
    async with open_world(seed=14, ipv6=True) as world:
        open_host = world.internet.add_host(["2001:db8:c::10"], name="open", link=world.site_link)
        opened = await world.node_at(open_host)
        walled = await world.node_at(firewalled(world, "2001:db8:a::", "walled"))
        assert not profile_of(opened).nat_present and profile_of(opened).filtering == "ei"
        pair = (opened, walled) if dialled_first else (walled, opened)
        method = await connect_as_planned(*pair, 0.0)
        assert method is not ConnectionMethod.RELAYED
