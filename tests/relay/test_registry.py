"""The relay registry: pure selection, and home relays and failover on the simulated internet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.directory import EmbeddedDirectory
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address
from macula_nat.net.demux import Traffic, open_shared_endpoint
from macula_nat.net.sim import Internet, LinkProfile, Preset, add_site, open_internet
from macula_nat.relay import (
    RegistrationFailed,
    RelayClient,
    RelayNode,
    open_relay,
    open_relay_client,
)
from macula_nat.relay.registry import (
    NoRelay,
    RegistryConfig,
    RelayRegistry,
    open_relay_registry,
)
from macula_nat.relay.selection import RelayEstimate, RelayTable, choose, rank, smooth

from .support import PATIENCE, connect, exchange

NODE = NodeKey.from_seed(bytes(32)).node_id
OTHER = NodeKey.from_seed(bytes([1]) * 32).node_id
A: Address = ("192.0.2.1", 7000)
B: Address = ("192.0.2.2", 7000)
C: Address = ("192.0.2.3", 7000)


# -- pure selection ------------------------------------------------------------------------------


@given(previous=st.floats(0, 1e4), sample=st.floats(0, 1e4), gain=st.floats(0.01, 1.0))
def test_the_smoothed_latency_lies_between_the_average_and_the_sample(
    previous: float, sample: float, gain: float
) -> None:
    smoothed = smooth(previous, sample, gain)
    assert min(previous, sample) - 1e-9 <= smoothed <= max(previous, sample) + 1e-9


def test_the_first_sample_is_the_average_and_a_bad_gain_is_refused() -> None:
    assert smooth(None, 42.0) == 42.0
    with pytest.raises(ValueError):
        smooth(1.0, 2.0, 0.0)


@given(
    st.lists(
        st.tuples(st.floats(0, 1000), st.integers(0, 1000), st.integers(0, 2)),
        min_size=1,
        max_size=8,
    ),
    st.integers(0, 1000),
)
def test_ranking_keeps_only_reachable_relays_with_spare_capacity_fastest_first(
    relays: list[tuple[float, int, int]], max_load: int
) -> None:
    estimates = [
        RelayEstimate(("192.0.2.1", 1000 + i), NODE, latency, load, failures)
        for i, (latency, load, failures) in enumerate(relays)
    ]
    ranked = rank(estimates, max_load)
    expected = {
        e.endpoint
        for e in estimates
        if e.failures == 0 and e.load is not None and e.load < max_load
    }
    assert {info.endpoint for info in ranked} == expected
    assert [info.latency_ms for info in ranked] == sorted(info.latency_ms for info in ranked)


def test_the_table_averages_latency_marks_failures_and_restarts_for_a_new_relay() -> None:
    table = RelayTable(gain=0.5)
    table.observe(A, NODE, 100.0, 10, now=1.0)
    assert table.observe(A, NODE, 50.0, 20, now=2.0) == RelayEstimate(A, NODE, 75.0, 20, 0, 2.0)
    assert not table.fail(A, now=3.0).reachable
    assert table.observe(A, NODE, 60.0, 20, now=4.0).latency_ms == pytest.approx(67.5)
    assert table.observe(A, OTHER, 10.0, 0, now=5.0).latency_ms == 10.0  # another relay there
    table.observe(B, NODE, 1.0, 0, now=5.0)
    table.retain([B])
    assert table.get(A) is None and table.get(B) is not None


def test_choose_prefers_the_targets_home_relay_even_when_it_is_full_or_slower() -> None:
    table = RelayTable()
    table.observe(A, NODE, 10.0, 0, now=0.0)
    table.observe(B, OTHER, 80.0, 1000, now=0.0)
    table.observe(C, OTHER, 5.0, 950, now=0.0)

    assert choose(table.estimates(), home=B).endpoint == B
    assert choose(table.estimates()).endpoint == A  # C is faster but full
    table.fail(B, now=1.0)
    assert choose(table.estimates(), home=B).endpoint == A  # home unreachable: the best
    table.fail(A, now=1.0)
    with pytest.raises(NoRelay, match="no reachable relay with load below 900"):
        choose(table.estimates(), home=B)


# -- on the simulated internet -------------------------------------------------------------------

FAST, MIDDLE, SLOW = "198.51.100.10", "198.51.100.20", "198.51.100.30"
LATENCY = {FAST: 0.01, MIDDLE: 0.03, SLOW: 0.06}
CONFIG = RegistryConfig(probe_interval=30.0)


@attrs.define
class _Relay:
    node: RelayNode
    scope: trio.CancelScope

    def kill(self) -> None:
        """Gone without a word: no CLOSE reaches its nodes."""
        self.scope.cancel()


class World:
    def __init__(self, internet: Internet, directory: EmbeddedDirectory) -> None:
        self.internet = internet
        self.directory = directory
        self.relays: dict[str, _Relay] = {}

    def address(self, ip: str) -> Address:
        return self.relays[ip].node.address

    async def node(
        self,
        stack: AsyncExitStack,
        preset: Preset = Preset.PORT_RESTRICTED_CONE,
        *,
        shared: bool = False,
    ) -> RelayRegistry:
        """A node's registry, once it has a home relay; with ``shared``, its registrations ride
        the relay view of one shared socket (as in a NAT system)."""
        site = add_site(self.internet.public, preset)
        endpoint = None
        if shared:
            socket = await site.host.bind()
            endpoint = (await stack.enter_async_context(open_shared_endpoint(socket))).view(
                Traffic.RELAY
            )
        registry = RelayRegistry(
            self.directory, site.host, NodeKey.generate(), config=CONFIG, endpoint=endpoint
        )
        await stack.enter_async_context(open_relay_registry(registry))
        with trio.fail_after(PATIENCE):
            await registry.home.wait_value(lambda home: home is not None)
        return registry

    async def client(self, stack: AsyncExitStack, ip: str) -> RelayClient:
        """A node homed at the relay at ``ip``, on a socket of its own, once registered."""
        site = add_site(self.internet.public, Preset.FULL_CONE)
        client = RelayClient(await site.host.bind(), self.address(ip), NodeKey.generate())
        return await stack.enter_async_context(open_relay_client(client))


@asynccontextmanager
async def open_world(*ips: str, max_sessions: dict[str, int] | None = None) -> AsyncIterator[World]:
    """Relays at ``ips`` (with their latencies), each announcing itself through its own
    registry, and a shared in-process directory."""
    sessions = max_sessions or {}
    async with open_internet(seed=1) as internet, trio.open_nursery() as nursery:
        world = World(internet, EmbeddedDirectory(clock=trio.current_time))

        async def run_relay(ip: str, *, task_status: trio.TaskStatus[_Relay]) -> None:
            host = internet.add_host([ip], link=LinkProfile(latency=LATENCY[ip]))
            relay = RelayNode(host, (ip, 7000), NodeKey.generate())
            registry = RelayRegistry(world.directory, host)
            with trio.CancelScope() as scope:
                async with open_relay(relay), open_relay_registry(registry):
                    await relay.enable(max_sessions=sessions.get(ip, 100))
                    assert await registry.register(relay.node_id, relay.address)
                    task_status.started(_Relay(relay, scope))
                    await trio.sleep_forever()

        for ip in ips:
            world.relays[ip] = await nursery.start(run_relay, ip)
        yield world
        nursery.cancel_scope.cancel()


async def test_a_node_behind_a_nat_takes_the_fastest_relay_as_home_and_publishes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(SLOW, FAST, MIDDLE) as world, AsyncExitStack() as stack:
        registry = await world.node(stack)
        home = registry.home.value
        record = await world.directory.resolve_record(registry.key.node_id.text())  # type: ignore[union-attr]
        measured = {info.endpoint: info.latency_ms for info in registry.relays()}
        client = registry.client

    assert home is not None and home.endpoint == world.address(FAST)
    assert home.node_id == world.relays[FAST].node.node_id
    assert record is not None and record.home_relay == world.address(FAST)
    assert client is not None and client.relay == world.address(FAST)
    assert measured[world.address(MIDDLE)] < measured[world.address(SLOW)]  # measured, not listed


async def test_find_relay_returns_the_targets_home_relay_else_the_best(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(SLOW, FAST, MIDDLE) as world, AsyncExitStack() as stack:
        a = await world.node(stack)
        b = await world.node(stack)
        assert b.key is not None
        of_node = await a.find_relay(b.key.node_id.text())
        elsewhere = NodeKey.generate().node_id.text()  # a node homed at the slow relay
        await world.directory.publish_record(elsewhere, None, 600.0, home_relay=world.address(SLOW))
        of_elsewhere = await a.find_relay(elsewhere)
        of_unknown = await a.find_relay(NodeKey.generate().node_id.text())
        world.relays[SLOW].kill()
        await trio.sleep(CONFIG.probe_interval + 1)  # the measurement goes stale
        when_home_dead = await a.find_relay(elsewhere)

    assert of_node.endpoint == world.address(FAST) and of_node.load == 0
    assert of_elsewhere.endpoint == world.address(SLOW)
    assert of_elsewhere.node_id == world.relays[SLOW].node.node_id
    assert of_unknown.endpoint == world.address(FAST)
    assert when_home_dead.endpoint == world.address(FAST)


async def test_relays_never_measured_are_probed_before_the_measured_ones_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """More relays listed than ``max_probes``: each round measures one not yet measured."""
    async with open_world(SLOW, FAST, MIDDLE) as world:
        site = add_site(world.internet.public, Preset.FULL_CONE)
        config = attrs.evolve(CONFIG, max_probes=1)
        registry = RelayRegistry(world.directory, site.host, config=config)
        measured = []
        for _ in range(3):
            await registry.probe_relays()
            measured.append(len(registry.relays()))
        best = (await registry.probe_relays())[0]
    assert measured == [1, 2, 3]
    assert best.endpoint == world.address(FAST)


async def test_a_full_relay_is_skipped(autojump_clock: trio.testing.MockClock) -> None:
    async with (
        open_world(SLOW, FAST, MIDDLE, max_sessions={FAST: 1}) as world,
        AsyncExitStack() as stack,
    ):
        fast = world.relays[FAST].node
        clients = []
        for _ in range(2):  # two nodes fill the fast relay's one session
            site = add_site(world.internet.public, Preset.FULL_CONE)
            client = RelayClient(await site.host.bind(), fast.address, NodeKey.generate())
            clients.append(await stack.enter_async_context(open_relay_client(client)))
        await connect(*clients)
        assert fast.statistics().sessions == 1
        registry = await world.node(stack)
        home = registry.home.value
        full = await registry.find_relay(NodeKey.generate().node_id.text())

    assert home is not None and home.endpoint == world.address(MIDDLE)
    assert full.endpoint == world.address(MIDDLE)


async def test_the_node_fails_over_when_its_home_relay_dies_and_publishes_the_new_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(SLOW, FAST, MIDDLE) as world, AsyncExitStack() as stack:
        registry = await world.node(stack, Preset.SYMMETRIC_RANDOM)
        assert registry.key is not None
        node_id = registry.key.node_id.text()
        first = registry.home.value
        world.relays[FAST].kill()
        died_at = trio.current_time()
        with trio.fail_after(120.0):
            await registry.home.wait_value(
                lambda home: home is not None and home.endpoint != world.address(FAST)
            )
        took = trio.current_time() - died_at
        second = registry.home.value
        record = await world.directory.resolve_record(node_id)
        client = registry.client
        assert client is not None
        registration = await client.wait_registered()
        statistics = registry.statistics()

    assert first is not None and first.endpoint == world.address(FAST)
    assert second is not None and second.endpoint == world.address(MIDDLE)
    assert record is not None and record.home_relay == world.address(MIDDLE)
    assert registration.relay_id == world.relays[MIDDLE].node.node_id
    assert statistics.failovers == 1
    # noticed by the client's liveness timeout (within a keepalive) plus the grace
    home_client = CONFIG.home_client
    assert took <= home_client.liveness_timeout + home_client.keepalive_interval + 10.0


async def test_no_relay_when_none_is_announced_or_none_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(FAST) as world:
        host = world.internet.add_host()
        empty = RelayRegistry(EmbeddedDirectory(clock=trio.current_time), host)
        with pytest.raises(NoRelay, match="0 known"):
            await empty.find_relay(NODE.text())
        world.relays[FAST].kill()
        registry = RelayRegistry(world.directory, host)
        with pytest.raises(NoRelay, match="1 known, 0 reachable"):
            await registry.find_relay(NODE.text())
        statistics = registry.statistics()

    assert statistics.probe_failures == 1


async def test_a_registered_relay_stays_announced_until_its_registry_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = RegistryConfig(announce_ttl=60.0)
    async with open_internet() as internet:
        directory = EmbeddedDirectory(clock=trio.current_time)
        host = internet.add_host(["198.51.100.99"])
        registry = RelayRegistry(directory, host, config=config)
        relay_id: NodeId = NodeKey.generate().node_id
        async with open_relay_registry(registry):
            assert await registry.register(relay_id, ("198.51.100.99", 7000))
            await trio.sleep(10 * config.announce_ttl)
            while_running = await directory.list_relays()
        await trio.sleep(config.announce_ttl)
        after = await directory.list_relays()

    assert while_running == [("198.51.100.99", 7000)]
    assert registry.statistics().announced >= 10 / config.refresh_fraction
    assert after == []


# -- visits --------------------------------------------------------------------------------------


async def test_the_home_relay_and_a_visited_relay_share_the_nodes_one_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(SLOW, FAST) as world, AsyncExitStack() as stack:
        registry = await world.node(stack, Preset.FULL_CONE, shared=True)
        home = registry.client
        assert home is not None and registry.key is not None
        near = await world.client(stack, FAST)
        far = await world.client(stack, SLOW)
        async with registry.visit(world.address(SLOW)) as visitor:
            out, into = await connect(visitor, far)
            visited = [await exchange(out, into, b"out"), await exchange(into, out, b"back")]
            mine, theirs = await connect(near, home)
            homed = [await exchange(mine, theirs, b"in"), await exchange(theirs, mine, b"back")]
            observed = (await home.wait_registered()).observed
            stray = await world.internet.add_host(["203.0.113.9"]).bind()
            await stray.send_to(bytes([4]) + b"not from a relay", observed)
            await trio.sleep(1.0)
            statistics = registry.statistics()
            seen_at_slow = world.relays[SLOW].node._core.registration(registry.key.node_id)

    assert visitor is not home and visitor.relay == world.address(SLOW)
    assert visitor.endpoint is registry.endpoint and home.endpoint is registry.endpoint
    assert visited == [b"out", b"back"] and homed == [b"in", b"back"]
    assert seen_at_slow is not None and seen_at_slow.address == observed  # the one mapping
    assert statistics.dropped == 1


async def test_visits_to_one_relay_share_one_registration_until_the_last_leaves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(SLOW, FAST) as world, AsyncExitStack() as stack:
        registry = await world.node(stack, shared=True)
        assert registry.key is not None
        node_id = registry.key.node_id
        slow = world.relays[SLOW].node
        registered_before = slow.statistics().registered

        def at_slow() -> bool:
            return slow._core.registration(node_id) is not None

        async with AsyncExitStack() as first, AsyncExitStack() as second:
            a = await first.enter_async_context(registry.visit(slow.address))
            b = await second.enter_async_context(registry.visit(slow.address))
            both = (a is b, slow.statistics().registrations, at_slow())
            await first.aclose()  # the first visitor leaves before the second
            await trio.sleep(1.0)
            one = (a.registration.value is not None, at_slow())
        await trio.sleep(1.0)
        none = (a.registration.value, at_slow(), slow.statistics().registrations)
        registered = slow.statistics().registered - registered_before

    assert both == (True, 1, True)
    assert one == (True, True)
    assert none == (None, False, 0)
    assert registered == 1 and a.statistics().registrations == 1


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "own-sockets"])
async def test_a_visit_to_the_home_relay_uses_the_home_registration(
    autojump_clock: trio.testing.MockClock, shared: bool
) -> None:
    async with open_world(SLOW, FAST) as world, AsyncExitStack() as stack:
        registry = await world.node(stack, shared=shared)
        fast = world.relays[FAST].node
        registered_before = fast.statistics().registered
        async with registry.visit(fast.address) as at_home:
            home = registry.client
        async with registry.visit(world.address(SLOW)) as elsewhere:
            assert elsewhere.registration.value is not None
        registered = fast.statistics().registered - registered_before
        still_home = registry.client

    assert home is not None and at_home is home and still_home is home
    assert registered == 0
    assert (elsewhere.endpoint is home.endpoint) == shared


async def test_a_visit_that_cannot_register_fails_and_a_keyless_registry_cannot_visit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_world(FAST) as world, AsyncExitStack() as stack:
        registry = await world.node(stack, shared=True)
        with pytest.raises(RegistrationFailed, match="not registered within 2"):
            async with registry.visit(("203.0.113.77", 7000), timeout=2.0):
                pass
        keyless = RelayRegistry(world.directory, world.internet.add_host())
        with pytest.raises(ValueError, match="no node key"):
            async with keyless.visit(world.address(FAST)):
                pass
        statistics = registry.statistics()

    assert statistics.home is not None  # the home registration is untouched


async def test_a_relays_alternate_is_of_the_other_ip_version_and_goes_in_its_record(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dual-stack relay announced at one address names the other in its own record (where
    a node homed there finds it); an alternate of the same version is refused at once."""
    async with open_internet(seed=31) as internet:
        host = internet.add_host(["198.51.100.10", "2001:db8::10"])
        directory = EmbeddedDirectory(clock=trio.current_time)
        registry = RelayRegistry(directory, host)
        relay = NodeKey.generate().node_id
        with pytest.raises(ValueError, match="other IP version"):
            registry.add_relay(relay, ("198.51.100.10", 3480), alternate=("198.51.100.11", 3480))
        registry.add_relay(relay, ("198.51.100.10", 3480), alternate=("2001:db8::10", 3480))
        assert await registry._announce_all()
        record = await directory.resolve_record(relay.text())
        assert registry.remove_relay(("198.51.100.10", 3480))
        assert registry._own_alternates == {}
    assert record is not None
    assert record.home_relay == ("198.51.100.10", 3480)
    assert record.home_relay_alternate == ("2001:db8::10", 3480)
