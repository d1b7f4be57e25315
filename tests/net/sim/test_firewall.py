"""The stateful firewall: its flow table alone, then boxes on the simulated internet (IPv6)."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.net.sim import FlowTable, open_internet
from tests.net.sim.support import receive_all, receive_one

INSIDE = ("2001:db8:1::10", 40000)
OUTSIDE = ("2001:db8:ff::1", 3478)


def test_unsolicited_datagrams_are_filtered() -> None:
    table = FlowTable(lifetime=30.0)
    assert not table.inbound(OUTSIDE, INSIDE, 0.0)
    assert table.statistics().filtered == 1


def test_a_flow_admits_exactly_its_outside_endpoint() -> None:
    table = FlowTable(lifetime=30.0)
    table.outbound(INSIDE, OUTSIDE, 0.0)
    assert table.inbound(OUTSIDE, INSIDE, 1.0)
    assert not table.inbound((OUTSIDE[0], 3479), INSIDE, 1.0)  # another port: filtered
    assert not table.inbound(("2001:db8:ff::2", 3478), INSIDE, 1.0)  # another IP: filtered
    assert not table.inbound(OUTSIDE, (INSIDE[0], 40001), 1.0)  # to another inside port
    assert table.statistics() == table.statistics().__class__(1, 1, 1, 3)


@given(st.lists(st.floats(0.0, 29.0), max_size=20))
def test_a_flow_lives_lifetime_after_its_last_datagram(gaps: list[float]) -> None:
    table = FlowTable(lifetime=30.0)
    now = 0.0
    table.outbound(INSIDE, OUTSIDE, now)
    for gap in gaps:  # each answer within the lifetime keeps the flow alive
        now += gap
        assert table.inbound(OUTSIDE, INSIDE, now)
    assert not table.inbound(OUTSIDE, INSIDE, now + 30.0)
    assert table.flows() == []


def test_a_non_positive_lifetime_is_refused() -> None:
    with pytest.raises(ValueError, match="lifetime"):
        FlowTable(lifetime=0.0)


async def test_a_host_behind_a_firewall_is_seen_at_its_own_address_and_not_reachable_unasked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=3) as internet:
        server = await internet.add_host(["2001:db8:ff::1"]).bind(("::", 3478))
        firewall = internet.public.add_firewall("2001:db8:1::/64")
        host = firewall.add_host(["2001:db8:1::10"])
        client = await host.bind(("::", 40000))

        await server.send_to(b"unasked", ("2001:db8:1::10", 40000))
        assert await receive_all(client, limit=1) == []

        await client.send_to(b"hello", ("2001:db8:ff::1", 3478))
        assert await receive_one(server) == (b"hello", ("2001:db8:1::10", 40000))
        await server.send_to(b"answer", ("2001:db8:1::10", 40000))
        assert await receive_one(client) == (b"answer", ("2001:db8:ff::1", 3478))
        stats = firewall.statistics()
    assert (stats.flows, stats.admitted, stats.filtered) == (1, 1, 1)


async def test_two_firewalled_hosts_open_a_path_by_sending_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=4) as internet:
        a_wall = internet.public.add_firewall("2001:db8:a::/64")
        b_wall = internet.public.add_firewall("2001:db8:b::/64")
        a = await a_wall.add_host(["2001:db8:a::10"]).bind(("::", 5000))
        b = await b_wall.add_host(["2001:db8:b::10"]).bind(("::", 6000))
        a_at, b_at = ("2001:db8:a::10", 5000), ("2001:db8:b::10", 6000)

        await a.send_to(b"first", b_at)  # opens a's flow; b's firewall drops it
        assert await receive_all(b, limit=1) == []
        await b.send_to(b"second", a_at)  # opens b's flow; a's flow admits it
        assert await receive_one(a) == (b"second", b_at)
        await a.send_to(b"third", b_at)
        assert await receive_one(b) == (b"third", a_at)


async def test_hosts_behind_one_firewall_reach_each_other_directly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=5) as internet:
        firewall = internet.public.add_firewall("2001:db8:c::/64")
        a = await firewall.add_host(["2001:db8:c::10"]).bind(("::", 5000))
        b = await firewall.add_host(["2001:db8:c::11"]).bind(("::", 5000))
        await a.send_to(b"lan", ("2001:db8:c::11", 5000))
        assert await receive_one(b) == (b"lan", ("2001:db8:c::10", 5000))
        assert firewall.flows() == []


async def test_an_address_outside_the_subnet_or_taken_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=6) as internet:
        firewall = internet.public.add_firewall("2001:db8:d::/64")
        with pytest.raises(ValueError, match="outside"):
            firewall.add_host(["2001:db8:e::10"])
        internet.add_host(["2001:db8:d::20"])
        host = internet.add_host(["203.0.113.9"])
        with pytest.raises(ValueError, match="already attached"):
            firewall.attach(host, "2001:db8:d::20")
