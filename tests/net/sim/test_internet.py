"""The simulated internet end to end, on Trio's mock clock."""

from __future__ import annotations

import errno
import ipaddress

import attrs
import pytest
import trio
import trio.testing

from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.sim import (
    CARRIER_GRADE,
    FULL_CONE,
    PORT_RESTRICTED_CONE,
    SYMMETRIC_RANDOM,
    LinkProfile,
    Preset,
    add_site,
    open_internet,
)
from tests.net.sim.support import bind_at, bind_servers, observe, receive_all, receive_one


@pytest.mark.parametrize("hairpinning", [True, False])
async def test_hairpin_between_two_hosts_behind_one_nat(
    hairpinning: bool, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=1) as internet:
        (server, *_) = await bind_servers(internet)
        nat = internet.add_nat(attrs.evolve(FULL_CONE, hairpinning=hairpinning))
        alice = await nat.add_host().bind()
        bob = await nat.add_host().bind()
        alice_mapped = await observe(alice, server)
        bob_mapped = await observe(bob, server)

        await alice.send_to(b"hairpin", bob_mapped)
        received = await receive_all(bob, limit=1)
        stats = nat.statistics()

    if hairpinning:
        assert received == [(b"hairpin", alice_mapped)]
        assert stats.hairpinned == 1
    else:
        assert received == []
        assert stats.hairpin_refused == 1


async def test_mapping_expires_after_its_lifetime(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=2) as internet:
        (server, *_) = await bind_servers(internet)
        site = add_site(internet.public, Preset.PORT_RESTRICTED_CONE)
        nat = site.nats[0]
        client = await site.host.bind()
        mapped = await observe(client, server)
        lifetime = nat.behavior.mapping_lifetime

        await trio.sleep(lifetime - 1)
        await server.send_to(b"in time", mapped)
        assert await receive_all(client, limit=1, timeout=0.5) == [
            (b"in time", server.local_address)
        ]
        await trio.sleep(1)
        await server.send_to(b"too late", mapped)
        assert await receive_all(client, limit=1) == []

        stats = nat.statistics()
        assert (stats.mappings, stats.mappings_expired, stats.unmapped) == (0, 1, 1)


async def test_keepalives_hold_a_mapping_open(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=3) as internet:
        (server, *_) = await bind_servers(internet)
        site = add_site(internet.public, Preset.SYMMETRIC_RANDOM)
        client = await site.host.bind()
        mapped = await observe(client, server)
        for _ in range(5):
            await trio.sleep(20)
            assert await observe(client, server) == mapped

        await server.send_to(b"still open", mapped)
        assert await receive_all(client, limit=1) == [(b"still open", server.local_address)]
        await trio.sleep(31)
        assert await observe(client, server) != mapped
        assert site.nats[0].statistics().mappings_expired == 1


async def test_cgnat_translates_twice(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=4) as internet:
        (server, *_) = await bind_servers(internet)
        site = add_site(internet.public, Preset.CGNAT_FULL_CONE)
        carrier, home = site.nats
        client = await site.host.bind()

        mapped = await observe(client, server)
        await server.send_to(b"reply", mapped)
        assert await receive_one(client) == (b"reply", server.local_address)

        assert ipaddress.ip_address(home.public_addresses[0]) in ipaddress.ip_network(
            "100.64.0.0/10"
        )
        assert mapped[0] == carrier.public_addresses[0]
        assert ipaddress.ip_address(site.host.addresses[0]).is_private
        for nat in (carrier, home):
            stats = nat.statistics()
            assert (stats.mappings, stats.outbound_translated, stats.inbound_translated) == (
                1,
                1,
                1,
            )
        (home_mapping,) = home.mappings()
        (carrier_mapping,) = carrier.mappings()
        assert home_mapping.internal == (site.host.addresses[0], client.local_address[1])
        assert carrier_mapping.internal == home_mapping.external
        assert carrier_mapping.external == mapped


async def test_two_homes_behind_one_carrier_meet_by_hairpin(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=5) as internet:
        (server, *_) = await bind_servers(internet)
        carrier = internet.add_nat(CARRIER_GRADE, subnet="100.64.0.0/10")
        homes = [carrier.add_nat(FULL_CONE), carrier.add_nat(FULL_CONE)]
        alice = await homes[0].add_host().bind()
        bob = await homes[1].add_host().bind()
        alice_mapped = await observe(alice, server)
        bob_mapped = await observe(bob, server)

        await bob.send_to(b"opening", alice_mapped)
        await alice.send_to(b"hello", bob_mapped)
        assert await receive_one(bob) == (b"hello", alice_mapped)
        await bob.send_to(b"reply", alice_mapped)
        assert await receive_one(alice) == (b"reply", bob_mapped)
        stats = carrier.statistics()
        assert (stats.hairpinned, stats.filtered) == (2, 1)


async def test_one_way_latency_is_the_sum_of_the_links(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=6) as internet:
        server_host = internet.add_host(link=LinkProfile(latency=0.005))
        nat = internet.add_nat(
            PORT_RESTRICTED_CONE,
            link=LinkProfile(latency=0.020),
            lan_link=LinkProfile(latency=0.001),
        )
        client_host = nat.add_host(link=LinkProfile(latency=0.010))
        server = await bind_at(server_host)
        client = await client_host.bind()

        start = trio.current_time()
        await client.send_to(b"ping", server.local_address)
        _, mapped = await receive_one(server)
        outbound = trio.current_time() - start
        await server.send_to(b"pong", mapped)
        await receive_one(client)
        round_trip = trio.current_time() - start

    assert outbound == pytest.approx(0.036)
    assert round_trip == pytest.approx(0.072)


async def test_loss_rate_is_roughly_as_configured(autojump_clock: trio.testing.MockClock) -> None:
    count = 2000
    async with open_internet(seed=7) as internet:
        sender = await internet.add_host(link=LinkProfile(loss=0.1)).bind()
        receiver_host = internet.add_host(receive_buffer=count)
        receiver = await bind_at(receiver_host)
        for index in range(count):
            await sender.send_to(index.to_bytes(2, "big"), receiver.local_address)
        received = await receive_all(receiver, limit=count)
        stats = internet.statistics()

    assert 0.08 * count < count - len(received) < 0.12 * count
    assert stats.lost == count - len(received)
    assert stats.delivered == len(received)


async def test_jitter_reorders_within_its_bounds(autojump_clock: trio.testing.MockClock) -> None:
    count = 50
    async with open_internet(seed=8) as internet:
        sender = await internet.add_host(link=LinkProfile(latency=0.010, jitter=0.020)).bind()
        receiver = await bind_at(internet.add_host())
        sent_at: dict[bytes, float] = {}
        delays: list[float] = []
        order: list[int] = []

        async def receive() -> None:
            for _ in range(count):
                payload, _ = await receive_one(receiver)
                delays.append(trio.current_time() - sent_at[payload])
                order.append(int.from_bytes(payload, "big"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for index in range(count):
                payload = index.to_bytes(2, "big")
                sent_at[payload] = trio.current_time()
                await sender.send_to(payload, receiver.local_address)
                await trio.sleep(0.001)

    assert sorted(order) == list(range(count))
    assert order != sorted(order)
    assert all(0.010 <= delay < 0.030 + 1e-9 for delay in delays)


async def _trace(seed: int) -> list[tuple[float, int, bytes, Address]]:
    """Arrivals (time since start, server, payload, source) in a busy little scenario: lossy
    jittery links, random ports, two NATs."""
    trace: list[tuple[float, int, bytes, Address]] = []
    start = trio.current_time()

    async def record(index: int, server: UdpEndpoint) -> None:
        for _ in range(100):
            payload, source = await server.receive_from()
            trace.append((round(trio.current_time() - start, 9), index, payload, source))

    async with open_internet(seed=seed) as internet:
        servers = await bind_servers(internet, link=LinkProfile(latency=0.01, jitter=0.02))
        lossy = LinkProfile(latency=0.005, jitter=0.01, loss=0.2)
        clients = [
            await add_site(internet.public, preset, link=lossy).host.bind()
            for preset in (Preset.SYMMETRIC_RANDOM, Preset.EIM_RANDOM_PORT)
        ]
        async with trio.open_nursery() as nursery:
            for index, server in enumerate(servers):
                nursery.start_soon(record, index, server)
            for round_ in range(10):
                for client in clients:
                    for server in servers:
                        await client.send_to(bytes([round_]), server.local_address)
                await trio.sleep(0.003)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    return sorted(trace, key=lambda arrival: arrival[:2])


async def test_same_seed_same_trace(autojump_clock: trio.testing.MockClock) -> None:
    first = await _trace(seed=99)
    again = await _trace(seed=99)
    other = await _trace(seed=100)

    assert first == again
    assert 0 < len(first) < 160
    assert other != first


async def test_hosts_on_one_lan_talk_directly(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=9) as internet:
        nat = internet.add_nat(SYMMETRIC_RANDOM)
        alice = await nat.add_host().bind()
        bob_host = nat.add_host()
        bob = await bob_host.bind((bob_host.addresses[0], 5000))

        await alice.send_to(b"lan", bob.local_address)
        _, source = await receive_one(bob)

        assert ipaddress.ip_address(source[0]) in nat.network.subnet  # type: ignore[operator]
        assert nat.statistics().outbound_translated == 0


async def test_undeliverable_datagrams_are_counted(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=10) as internet:
        nat = internet.add_nat(FULL_CONE)
        inside = await nat.add_host().bind()
        outside_host = internet.add_host()
        outside = await outside_host.bind()

        await outside.send_to(b"x", ("198.51.100.99", 1))
        await inside.send_to(b"x", ("10.99.0.5", 1))
        await inside.send_to(b"x", (nat.lan_address, 1))
        await outside.send_to(b"x", (outside_host.addresses[0], 9))
        await outside.send_to(b"x", (nat.public_addresses[0], 9))
        await trio.sleep(1)
        stats = internet.statistics()
        nat_stats = nat.statistics()

    assert (stats.sent, stats.unroutable, stats.no_listener, stats.delivered) == (5, 2, 2, 0)
    assert nat_stats.unmapped == 1


async def test_full_receive_buffer_drops_arrivals(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=11) as internet:
        sender = await internet.add_host().bind()
        receiver = await bind_at(internet.add_host(receive_buffer=4))
        for index in range(10):
            await sender.send_to(bytes([index]), receiver.local_address)
        await trio.sleep(0.1)
        received = await receive_all(receiver, limit=10)

        assert [payload for payload, _ in received] == [bytes([i]) for i in range(4)]
        assert internet.statistics().overflowed == 6


async def test_leaving_the_internet_closes_its_endpoints(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=12) as internet:
        host = internet.add_host()
        endpoint = await host.bind()

    with pytest.raises(trio.ClosedResourceError):
        await endpoint.receive_from()
    with pytest.raises(trio.ClosedResourceError):
        await host.bind()


async def test_wildcard_and_specific_binds_conflict_like_linux(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=13) as internet:
        host = internet.add_host(["203.0.113.10", "203.0.113.11"])
        await host.bind(("203.0.113.10", 4000))
        await host.bind(("203.0.113.11", 4000))
        await host.bind(("0.0.0.0", 5000))
        for taken in (("0.0.0.0", 4000), ("203.0.113.10", 5000)):
            with pytest.raises(OSError) as raised:
                await host.bind(taken)
            assert raised.value.errno == errno.EADDRINUSE
        with pytest.raises(OSError) as raised:
            await host.bind(("203.0.113.99", 0))
        assert raised.value.errno == errno.EADDRNOTAVAIL
        ephemeral = await host.bind()
        assert 32768 <= ephemeral.local_address[1] <= 60999


async def test_a_multihomed_host_sends_from_the_right_address(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=14) as internet:
        nat = internet.add_nat(FULL_CONE)
        lan_peer = await bind_at(nat.add_host())
        public_peer = await bind_at(internet.add_host())
        router = internet.add_host(["203.0.113.40", "203.0.113.41"])
        lan_ip = router.attach(nat.network)
        anywhere = await router.bind()
        second = await router.bind(("203.0.113.41", 0))

        await anywhere.send_to(b"a", lan_peer.local_address)
        await anywhere.send_to(b"b", public_peer.local_address)
        await second.send_to(b"c", public_peer.local_address)

        assert await receive_one(lan_peer) == (b"a", (lan_ip, anywhere.local_address[1]))
        assert await receive_one(public_peer) == (
            b"b",
            ("203.0.113.40", anywhere.local_address[1]),
        )
        assert await receive_one(public_peer) == (b"c", second.local_address)
        assert router.addresses == ("203.0.113.40", "203.0.113.41", lan_ip)


async def test_ipv6_hosts_talk_and_families_stay_apart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=15) as internet:
        a_host = internet.add_host(["2001:db8::1", "203.0.113.60"])
        b_host = internet.add_host(["2001:DB8::2"])
        a = await a_host.bind(("::", 0))
        b = await b_host.bind(("::", 7000))
        a4 = await a_host.bind()

        await a.send_to(b"six", ("2001:db8:0::2", 7000))
        assert await receive_one(b) == (b"six", ("2001:db8::1", a.local_address[1]))
        with pytest.raises(ValueError):
            await a4.send_to(b"four", b.local_address)


async def test_topology_rejects_nonsense(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=16) as internet:
        internet.add_host(["203.0.113.70"])
        nat = internet.add_nat(FULL_CONE, subnet="192.168.7.0/24")
        with pytest.raises(ValueError):
            internet.add_host(["203.0.113.70"])
        with pytest.raises(ValueError):
            nat.add_host(["10.0.0.5"])
        with pytest.raises(ValueError):
            internet.add_host([])
        with pytest.raises(ValueError):
            internet.add_host("203.0.113.73")
        with pytest.raises(ValueError):
            internet.add_host(receive_buffer=0)
        with pytest.raises(ValueError):
            internet.add_host(["203.0.113.71", "203.0.113.70"])
        with pytest.raises(ValueError):
            internet.add_host(["203.0.113.72", "203.0.113.72"])
        assert internet.public.addresses == ("203.0.113.70", nat.public_addresses[0])
        assert nat.lan_address == "192.168.7.1"
        assert nat.add_host().addresses == ("192.168.7.2",)


@pytest.mark.parametrize(("depth", "arrives"), [(63, True), (64, False)])
async def test_ttl_bounds_nat_chains(
    depth: int, arrives: bool, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_internet(seed=17) as internet:
        server = await bind_at(internet.add_host())
        nat = internet.add_nat(FULL_CONE)
        for _ in range(depth - 1):
            nat = nat.add_nat(FULL_CONE)
        client = await nat.add_host().bind()

        await client.send_to(b"deep", server.local_address)
        received = await receive_all(server, limit=1)

        assert len(received) == int(arrives)
        assert internet.statistics().unroutable == int(not arrives)
