"""IPv6 on the simulated internet (issue 13): hosts with global addresses behind stateful
firewalls are detected as "no NAT, filtered" and punch directly; open IPv6 hosts are dialled."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import ip_version
from macula_nat.net.sim import LinkProfile, Preset, SimHost, add_site
from macula_nat.system import NatSystem
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.errors import NoRelay
from macula_nat.traversal.strategy import Method, choose

from .test_matrix import connect_as_planned
from .world import RELAY, RELAY6, World, open_world


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


async def dual_stack(
    world: World, prefix: str, name: str, ipv6_link: LinkProfile | None = None
) -> NatSystem:
    """A node behind a port-restricted IPv4 NAT that also has a global IPv6 address at
    ``prefix``::10 behind a stateful firewall (over ``ipv6_link``): one dual-stack socket."""
    site = add_site(world.internet.public, Preset.PORT_RESTRICTED_CONE, name=name,
                    link=world.site_link)  # fmt: skip
    wall = world.internet.public.add_firewall(
        f"{prefix}/64", name=f"{name}-fw", link=ipv6_link or world.site_link
    )
    wall.attach(site.host, f"{prefix}10")
    return await world.node_at(site.host)


async def ipv4_only(world: World, prefix: str, name: str) -> NatSystem:
    site = add_site(world.internet.public, Preset.PORT_RESTRICTED_CONE, name=name,
                    link=world.site_link)  # fmt: skip
    return await world.node_at(site.host)


async def ipv6_only(world: World, prefix: str, name: str) -> NatSystem:
    return await world.node_at(firewalled(world, prefix, name))


KINDS = {"dual": dual_stack, "ipv4": ipv4_only, "ipv6": ipv6_only}


@pytest.mark.parametrize(
    ("local", "remote", "version"),
    [
        ("dual", "dual", 6),  # both work: IPv6 first
        ("ipv4", "dual", 4),
        ("dual", "ipv4", 4),
        ("ipv6", "dual", 6),
        ("dual", "ipv6", 6),
    ],
)
async def test_dual_stack_pairs_punch_over_the_version_they_share(
    local: str, remote: str, version: int, autojump_clock: MockClock
) -> None:
    async with open_world(seed=15, ipv6=True) as world:
        alice = await KINDS[local](world, "2001:db8:a::", "alice")
        bob = await KINDS[remote](world, "2001:db8:b::", "bob")
        assert await connect_as_planned(alice, bob, 0.0) is ConnectionMethod.PUNCHED
        (connection,) = alice.coordinator.connections()
        (accepted,) = bob.coordinator.connections()
        assert ip_version(connection.info().remote_address[0]) == version
        assert ip_version(accepted.info().remote_address[0]) == version


async def test_a_dual_stack_node_publishes_both_versions_and_both_relay_addresses(
    autojump_clock: MockClock,
) -> None:
    async with open_world(seed=16, ipv6=True) as world:
        node = await dual_stack(world, "2001:db8:a::", "alice")
        record = await world.directory.resolve_record(node.node_id.text())
    assert record is not None
    assert {ip_version(ip) for ip, _ in record.candidates} == {4, 6}
    assert ("2001:db8:a::10", node.shared.local_address[1]) in record.candidates
    assert {record.home_relay, record.home_relay_alternate} == {RELAY, RELAY6}


async def test_ipv6_only_to_ipv4_only_fails_with_a_clear_no_relay(
    autojump_clock: MockClock,
) -> None:
    async with open_world(seed=17, ipv6=True) as world:
        six = await ipv6_only(world, "2001:db8:a::", "six")
        four = await ipv4_only(world, "", "four")
        with pytest.raises(NoRelay, match="another IP version"):
            await six.connector.connect(four.node_id)
        other = await ipv6_only(world, "2001:db8:b::", "other")  # nothing broke on the way
        assert await connect_as_planned(six, other, 0.0) is ConnectionMethod.PUNCHED


@pytest.mark.parametrize(("head_start", "version"), [(0.25, 6), (0.0, 4)])
async def test_the_head_start_lets_a_slower_ipv6_path_win(
    head_start: float, version: int, autojump_clock: MockClock
) -> None:
    """IPv6 20 ms slower each way than IPv4: with the head start IPv6 still carries the
    connection (Happy Eyeballs prefers it); without, the faster IPv4 path is proven first."""
    slow = LinkProfile(latency=0.015)
    async with open_world(
        seed=18, ipv6=True, traversal=TraversalConfig(ipv6_head_start=head_start)
    ) as world:
        alice = await dual_stack(world, "2001:db8:a::", "alice", slow)
        bob = await dual_stack(world, "2001:db8:b::", "bob", slow)
        assert await connect_as_planned(alice, bob, 0.0) is ConnectionMethod.PUNCHED
        (connection,) = alice.coordinator.connections()
        assert ip_version(connection.info().remote_address[0]) == version


async def test_a_dual_stack_node_classifies_and_publishes_both_versions(
    autojump_clock: MockClock,
) -> None:
    """Its IPv4 NAT and its IPv6 firewall, each detected on its own (at once), both in its
    record; a change of the IPv6 one is a ``nat_profile_changed`` on the node's one topic, and
    republishes the IPv6 profile only."""
    mapping = ("2001:db8:a::10", 40000)
    async with open_world(seed=19, ipv6=True) as world:
        node = await dual_stack(world, "2001:db8:a::", "alice")
        record = await world.directory.resolve_record(node.node_id.text())
        assert node.detector6 is not None
        six = node.detector6.profile.value
        async with node.detector.changes.subscription() as changes:
            node.detector6.set_mapped(mapping)  # as a router's pinhole on request would
            change = changes.receive_nowait()  # published as the mapping was set
            with trio.fail_after(30):
                while True:
                    later = await world.directory.resolve_record(node.node_id.text())
                    if later is not None and later.profile6 == change.new:
                        break
                    await trio.sleep(0.05)
    four = profile_of(node)
    assert (four.nat_present, four.filtering, ip_version(four.public_ip)) == (True, "pd", 4)
    assert six is not None and not six.nat_present and six.nat_type == "firewalled, no NAT"
    assert six.public_ip == "2001:db8:a::10"
    assert record is not None and (record.profile, record.profile6) == (four, six)
    assert change.old == six and change.new.mapped == mapping
    assert later.profile == four


async def test_symmetric_ipv4_nats_with_ipv6_firewalls_punch_over_ipv6(
    autojump_clock: MockClock,
) -> None:
    """Classified on IPv4 alone this pair is relay-only; with each side's IPv6 profile the
    plan is a punch over IPv6, and it holds."""
    async with open_world(seed=20, ipv6=True) as world:
        nodes = []
        for prefix, name in (("2001:db8:a::", "alice"), ("2001:db8:b::", "bob")):
            site = add_site(world.internet.public, Preset.SYMMETRIC_RANDOM, name=name,
                            link=world.site_link)  # fmt: skip
            wall = world.internet.public.add_firewall(
                f"{prefix}/64", name=f"{name}-fw", link=world.site_link
            )
            wall.attach(site.host, f"{prefix}10")
            nodes.append(await world.node_at(site.host))
        alice, bob = nodes
        assert choose(profile_of(alice), profile_of(bob)).method is Method.RELAY
        assert await connect_as_planned(alice, bob, 0.0) is ConnectionMethod.PUNCHED
        (connection,) = alice.coordinator.connections()
        assert ip_version(connection.info().remote_address[0]) == 6
