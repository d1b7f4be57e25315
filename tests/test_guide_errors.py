"""The guide's API at every entry point: each call by method (the handles), by module-level call
(``macula_nat.nat_detector``, ...) and, for the detector, by message; and the README's error
table row by row, the same error at each entry point."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from macula_nat import (
    ConnectTimeout,
    Detect,
    DetectionTimeout,
    DirectoryError,
    GetLocalProfile,
    NatConfig,
    NodeKey,
    NoObservers,
    NoRelay,
    NotConnected,
    NotDetected,
    NotFound,
    RegistryConfig,
    RelayRefused,
    RelayRegistry,
    SessionInfo,
    SymmetricNat,
    TraversalError,
    current_system,
    nat_cache,
    nat_connector,
    nat_coordinator,
    nat_detector,
    nat_system,
    open_nat_system,
    relay_node,
)
from macula_nat.directory import EmbeddedDirectory, NodeRecord
from macula_nat.net.sim import Preset, add_site

from .traversal.world import PRIMARY, SITE_LINK, open_world

PUBLIC_IP = "198.51.100.30"
SILENT = ("198.51.100.99", 3478)


async def same_error(*entries: Callable[[], Awaitable[Any]]) -> type[BaseException]:
    """Run each entry point; all must raise the same error class, which is returned."""
    raised: list[type[BaseException]] = []
    for entry in entries:
        with pytest.raises(Exception) as info:
            await entry()
        raised.append(type(info.value))
    assert len(set(raised)) == 1, raised
    return raised[0]


def sync(call: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return call()

    return run


class UnreachableDirectory(EmbeddedDirectory):
    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        raise DirectoryError("gateway unreachable")


async def test_the_detector_rows_by_method_module_call_and_message(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        host = world.internet.add_host([PUBLIC_IP], link=SITE_LINK)
        silent = NatConfig(stack=host, observers=(SILENT,), detect_on_start=False)
        async with open_nat_system(silent) as nat:
            server = nat.detector.server
            assert server is not None
            error = await same_error(
                lambda: nat.detector.detect(),
                lambda: nat_detector.detect(),
                lambda: server.call(Detect()),  # the default 5 s call timeout: no CallTimeout
            )
            assert error is DetectionTimeout
            error = await same_error(
                sync(nat.detector.get_local_profile),
                sync(nat_detector.get_local_profile),
                lambda: server.call(GetLocalProfile()),
                sync(nat.get_public_endpoint),
                sync(nat_system.get_public_endpoint),
            )
            assert error is NotDetected
        none = NatConfig(stack=world.internet.add_host(["198.51.100.31"]), detect_on_start=False)
        async with open_nat_system(none) as nat:
            server = nat.detector.server
            assert server is not None
            error = await same_error(
                lambda: nat.detector.detect(),
                lambda: nat_detector.detect(),
                lambda: server.call(Detect()),
            )
            assert error is NoObservers


async def test_the_cache_and_connection_rows_by_method_and_module_call(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        unknown = NodeKey.generate().node_id
        host = world.internet.add_host([PUBLIC_IP], link=SITE_LINK)
        broken = NatConfig(
            stack=host,
            detect_on_start=False,
            directory=UnreachableDirectory(clock=trio.current_time),
        )
        async with open_nat_system(broken) as nat:
            error = await same_error(
                lambda: nat.cache.get_from_dht("alice"),
                lambda: nat_cache.get_from_dht("alice"),
                lambda: nat.cache.get("alice"),
            )
            assert error is DirectoryError
            warmed = await nat_cache.prewarm(["alice", "bob"], concurrency=1)
            assert set(warmed.failed) == {"alice", "bob"}  # kept, not raised
        node = await world.node(Preset.PORT_RESTRICTED_CONE)
        assert current_system() is node  # entered in this task: the module-level calls' system
        assert await nat_cache.get_from_dht(unknown.text()) == NotFound()
        assert nat_system.get_node_id() == node.node_id == node.get_node_id()
        assert nat_system.get_public_endpoint() == node.detector.get_local_profile().public_address
        error = await same_error(
            lambda: node.connector.connect(unknown, timeout=5.0),
            lambda: nat_connector.connect(unknown.text(), timeout=5.0),
            lambda: nat_coordinator.request_connection(unknown, timeout=5.0),
        )
        assert issubclass(error, TraversalError)
        error = await same_error(
            sync(lambda: node.coordinator.coordinate_punch(node.node_id, unknown)),
            sync(lambda: nat_coordinator.coordinate_punch(node.node_id, unknown.text())),
        )
        assert error is NotConnected
        assert nat_coordinator.get_pending() == node.coordinator.get_pending() == []


async def test_a_running_node_spawns_a_relay_that_other_nodes_use_then_stops_it(
    autojump_clock: MockClock,
) -> None:
    """The README's "A relay at runtime": enable the relay of a running node through the
    guide's ``relay_node.enable``, nodes pinned to it as home relay get sessions through it
    (``request_relay``), the callbacks get ``SessionInfo`` records, and disabling it ends them."""
    started: list[SessionInfo] = []
    ended: list[SessionInfo] = []
    async with open_world() as world:
        host = world.internet.add_host([PUBLIC_IP], link=SITE_LINK)
        config = NatConfig(
            stack=host,
            observers=(PRIMARY,),
            detect_on_start=False,
            detect_timeout=1.0,
            directory=world.directory,
        )
        async with open_nat_system(config) as public:
            with pytest.raises(RuntimeError, match="runs no relay"):
                relay_node.get_stats()
            profile = await nat_detector.detect()
            assert nat_system.get_public_endpoint() == (PUBLIC_IP, profile.public_port)
            relay = await relay_node.enable(
                listen=(PUBLIC_IP, 3480),
                max_sessions=5,
                idle_timeout=120.0,
                on_session_start=started.append,
                on_session_end=ended.append,
            )
            assert public.relay is relay and relay.enabled and relay.settings is not None
            assert relay.settings.idle_timeout == 120.0
            assert "nat_relay" in [c.id for c in await public.supervisor.which_children()]
            assert relay_node.get_stats().sessions == 0
            with pytest.raises(RuntimeError, match="already runs"):
                await public.start_relay()
            home = (PUBLIC_IP, 3480)

            def behind(preset: Preset) -> NatConfig:
                site = add_site(world.internet.public, preset, link=SITE_LINK)
                relays = RegistryConfig(probe_window=0.2, home_relay=home)
                return attrs.evolve(config, stack=site.host, detect_on_start=True, relays=relays)

            async with (
                open_nat_system(behind(Preset.PORT_RESTRICTED_CONE)) as a,
                open_nat_system(behind(Preset.SYMMETRIC_RANDOM)) as b,
            ):
                with trio.fail_after(30):
                    _, a_home = await a.wait_ready()
                    _, b_home = await b.wait_ready()
                assert a_home.endpoint == b_home.endpoint == home
                session = await a.relays.request_relay(b.node_id)
                assert session.peer == b.node_id
                assert [(s.peer_a, s.peer_b) for s in started] == [(a.node_id, b.node_id)]
                assert [(s.peer_a, s.peer_b) for s in relay.sessions()] == [(a.node_id, b.node_id)]
                assert current_system() is b  # the innermost block's
                error = await same_error(
                    lambda: b.relays.request_relay(NodeKey.generate().node_id),
                    lambda: relay_node.request_relay(NodeKey.generate().node_id.text()),
                )
                assert error is RelayRefused  # unknown_target
                a_id, b_id = a.node_id, b.node_id
                await public.stop_relay()
            assert public.relay is None and not relay.enabled
            assert [(s.peer_a, s.peer_b) for s in ended] == [(a_id, b_id)]
            assert ended[0].reason is not None
            assert "nat_relay" not in [c.id for c in await public.supervisor.which_children()]
            await public.stop_relay()  # none left: nothing to do
        lonely = RelayRegistry(world.directory, host, NodeKey.generate())
        with pytest.raises(NoRelay, match="no home relay"):
            await lonely.request_relay(NodeKey.generate().node_id, timeout=1.0)


async def test_the_connect_rows_by_method_and_module_call(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.SYMMETRIC_RANDOM)
        bob = await world.node(Preset.SYMMETRIC_RANDOM)
        assert current_system() is bob
        target = alice.node_id
        error = await same_error(
            lambda: bob.connector.connect(target, fallback_relay=False),
            lambda: nat_connector.connect(target.text(), fallback_relay=False),
            lambda: nat_coordinator.request_connection(target, allow_relay=False),
        )
        assert error is SymmetricNat
        error = await same_error(
            lambda: bob.connector.connect(target, timeout=0.01),
            lambda: nat_connector.connect(target, timeout=0.01),
            lambda: nat_coordinator.request_connection(target.text(), timeout=0.01),
        )
        assert error is ConnectTimeout
