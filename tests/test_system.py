"""The NAT system's tree, its handles, and the Erlang-style module-level calls."""

from __future__ import annotations

import logging

import pytest
import trio
from trio.testing import MockClock

from macula_nat.cli.gateway import gateway_main
from macula_nat.dht.config import DhtConfig
from macula_nat.directory.mainline import MainlineDirectory
from macula_nat.erlang import nat_cache, nat_detector
from macula_nat.gateway import Gateway, GatewayConfig
from macula_nat.identity import NodeKey
from macula_nat.nat.cache import Fresh, NotFound
from macula_nat.nat.errors import NotDetected
from macula_nat.net.endpoint import UdpStack
from macula_nat.net.sim import Internet, Preset, add_site, open_internet
from macula_nat.system import (
    NatConfig,
    NoNatSystem,
    current_system,
    open_nat_system,
    run_nat_system,
)

PRIMARY = ("198.51.100.10", 3478)
ALTERNATE = ("198.51.100.11", 3479)


async def test_a_gateway_and_a_node_behind_a_nat(autojump_clock: MockClock) -> None:
    async with open_internet(seed=5) as internet:
        gateway_host = internet.add_host([PRIMARY[0], ALTERNATE[0]])
        node_host = add_site(internet.public, Preset.RESTRICTED_CONE).host
        gateway_config = NatConfig(
            stack=gateway_host,
            observe=PRIMARY,
            observe_alternate=ALTERNATE,
            detect_on_start=False,
        )
        async with open_nat_system(gateway_config) as gateway:
            assert [c.id for c in await gateway.supervisor.which_children()] == [
                "nat_observer",
                "nat_cache",
                "nat_detector",
                "nat_relay_registry",
                "nat_coordinator",
            ]
            assert gateway.observer is not None
            node_config = NatConfig(stack=node_host, observers=(PRIMARY,), detect_timeout=2.0)
            async with open_nat_system(node_config) as node:
                assert current_system() is node  # the innermost block's system
                profile = await node.detector.profile.wait_value(lambda p: p is not None)
                assert profile.classification == ("ei", "hd", "pp")
                # the module-level calls of the Erlang API act on the current system
                assert nat_detector.get_local_profile() is profile
                assert await nat_detector.detect() is profile
                await nat_cache.put("peer-1", profile)
                assert nat_cache.get("peer-1") == Fresh(profile)
                assert nat_cache.stats().size == 1
                assert await nat_cache.get_from_dht("nobody") == NotFound()
            assert current_system() is gateway
            with pytest.raises(NotDetected):
                nat_detector.get_local_profile()  # the gateway was never asked to detect


async def test_module_level_calls_without_a_system_say_what_to_do(
    autojump_clock: MockClock,
) -> None:
    with pytest.raises(NoNatSystem, match="open_nat_system"):
        nat_detector.get_local_profile()


async def test_the_nursery_start_form_and_the_one_running_system(
    autojump_clock: MockClock,
) -> None:
    async with open_internet(seed=6) as internet:
        host = internet.add_host(["198.51.100.50"])
        config = NatConfig(stack=host, detect_on_start=False)
        async with trio.open_nursery() as nursery:
            system = await nursery.start(run_nat_system, config)
            assert current_system() is system  # not in its block, but the only one running
            second = await nursery.start(run_nat_system, config)
            with pytest.raises(NoNatSystem, match="2 NAT systems"):
                current_system()
            assert second is not system
            nursery.cancel_scope.cancel()
        with pytest.raises(NoNatSystem):
            current_system()


def test_config_refuses_an_alternate_without_a_primary() -> None:
    with pytest.raises(ValueError, match="observe_alternate"):
        NatConfig(observe_alternate=ALTERNATE)


async def start_gateway(
    internet: Internet, nursery: trio.Nursery, config: GatewayConfig
) -> Gateway:
    """A gateway (observer, relay, DHT node) at PRIMARY and ALTERNATE, run in ``nursery``."""
    host = internet.add_host([PRIMARY[0], ALTERNATE[0]])
    gateway: Gateway = await nursery.start(
        lambda task_status: gateway_main(
            config, NodeKey.generate(), stack=host, task_status=task_status
        )
    )
    return gateway


async def test_nodes_find_each_others_profiles_through_the_mainline_dht(
    autojump_clock: MockClock,
) -> None:
    gateway_config = GatewayConfig(listen=PRIMARY, alternate=ALTERNATE)
    async with open_internet(seed=7) as internet, trio.open_nursery() as nursery:
        await start_gateway(internet, nursery, gateway_config)
        dht = DhtConfig(bootstrap=[gateway_config.dht_address])

        def node_config(preset: Preset) -> NatConfig:
            host = add_site(internet.public, preset).host
            return NatConfig(
                stack=host,
                observers=(PRIMARY,),
                detect_timeout=2.0,
                dht=dht,
                landmarks=(gateway_config.dht_address,),
            )

        async with (
            open_nat_system(node_config(Preset.FULL_CONE)) as alice,
            open_nat_system(node_config(Preset.SYMMETRIC_RANDOM)) as bob,
        ):
            profile = await alice.detector.profile.wait_value(lambda p: p is not None)
            assert alice.dht is not None and isinstance(alice.directory, MainlineDirectory)
            assert await alice.directory.regions() == [0]  # the gateway is its one landmark
            await alice.directory.publish_profile(alice.node_id.text(), profile, 600)
            # bob's cache misses, resolves through the DHT, verifies alice's signature
            assert await bob.cache.get_from_dht(alice.node_id.text()) == Fresh(profile)
            assert bob.cache.get_nowait(alice.node_id.text()).value == profile
            children = [c.id for c in await bob.supervisor.which_children()]
            assert children == [
                "nat_dht",
                "nat_cache",
                "nat_detector",
                "nat_dht_read_only",
                "nat_relay_registry",
                "nat_coordinator",
            ]
        nursery.cancel_scope.cancel()


async def test_a_node_is_read_only_in_the_dht_while_its_profile_says_it_is_unreachable(
    autojump_clock: MockClock,
) -> None:
    gateway_config = GatewayConfig(listen=PRIMARY, alternate=ALTERNATE)
    async with open_internet(seed=9) as internet, trio.open_nursery() as nursery:
        gateway = await start_gateway(internet, nursery, gateway_config)
        dht = DhtConfig(bootstrap=[gateway_config.dht_address])

        def config(host: UdpStack) -> NatConfig:
            return NatConfig(stack=host, observers=(PRIMARY,), detect_timeout=2.0, dht=dht)

        async with (
            open_nat_system(config(internet.add_host(["198.51.100.60"]))) as public,
            open_nat_system(config(add_site(internet.public, Preset.FULL_CONE).host)) as hidden,
        ):
            assert public.dht is not None and hidden.dht is not None
            assert public.dht.read_only and hidden.dht.read_only  # until a profile says
            for node in (public, hidden):
                await node.detector.profile.wait_value(lambda p: p is not None)
            await trio.sleep(0.1)
            assert not public.dht.read_only  # no NAT, no filter: anyone can reach it
            assert hidden.dht.read_only  # even a full cone: the DHT socket has its own mapping
            for dht_node in (public.dht, hidden.dht):
                await dht_node.find_node(dht_node.node_id)  # both query the gateway's node
            table = gateway.dht.routing_table
            assert public.dht.node_id in table and hidden.dht.node_id not in table
            # a restart of the follower re-reads the profile; UDP blocked is a change it follows
            follower = public.registry.whereis("nat_dht_read_only")
            assert follower is not None
            await follower.stop("crash")
            await trio.sleep(0.1)
            assert not public.dht.read_only
            public.detector.set_udp_blocked(True)
            await trio.sleep(0.1)
            assert public.dht.read_only
        nursery.cancel_scope.cancel()


async def test_a_node_that_is_an_observer_is_a_full_dht_node_from_the_start(
    autojump_clock: MockClock,
) -> None:
    """An observer must be reachable, so it never waits for a detection it may never run."""
    async with open_internet(seed=10) as internet:
        host = internet.add_host([PRIMARY[0], ALTERNATE[0]])
        config = NatConfig(stack=host, observe=PRIMARY, detect_on_start=False, dht=DhtConfig())
        async with open_nat_system(config) as gateway:
            assert gateway.dht is not None and not gateway.dht.read_only
            children = [c.id for c in await gateway.supervisor.which_children()]
            assert "nat_dht_read_only" not in children


def _alarms(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]


async def test_cancelling_an_embedded_system_stops_its_actors_before_its_socket(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with open_internet(seed=8) as internet:
        gateway_host = internet.add_host([PRIMARY[0], ALTERNATE[0]])
        gateway_config = NatConfig(
            stack=gateway_host, observe=PRIMARY, observe_alternate=ALTERNATE, detect_on_start=False
        )
        node_host = add_site(internet.public, Preset.RESTRICTED_CONE).host
        node_config = NatConfig(stack=node_host, observers=(PRIMARY,), detect_timeout=2.0)
        async with trio.open_nursery() as outer:
            gateway = await outer.start(run_nat_system, gateway_config)
            async with trio.open_nursery() as nursery:
                node = await nursery.start(run_nat_system, node_config)
                await node.detector.profile.wait_value(lambda p: p is not None)
                nursery.cancel_scope.cancel()  # the host cancels: the nursery.start form
            assert not node.supervisor.alive and node.shared.closed
            with trio.CancelScope() as scope:  # the async-with form, cancelled from outside
                async with open_nat_system(node_config) as again:
                    await again.detector.profile.wait_value(lambda p: p is not None)
                    scope.cancel()
                    await trio.sleep_forever()
            assert again.shared.closed
            outer.cancel_scope.cancel()
        assert not gateway.supervisor.alive and gateway.shared.closed
    assert _alarms(caplog) == []


async def test_cancelling_a_system_on_the_loopback_logs_nothing_alarming(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    config = NatConfig(listen=("127.0.0.1", 0), detect_on_start=False)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            system = await nursery.start(run_nat_system, config)
            assert system.shared.local_address[0] == "127.0.0.1"
            await trio.sleep(0.1)  # the actors settle into their receive loops
            nursery.cancel_scope.cancel()
    assert system.shared.closed
    assert _alarms(caplog) == []


async def test_cancelling_a_gateway_logs_nothing_alarming(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    config = GatewayConfig(listen=PRIMARY, alternate=ALTERNATE)
    async with open_internet(seed=9) as internet:
        host = internet.add_host([PRIMARY[0], ALTERNATE[0]])
        async with trio.open_nursery() as nursery:
            await nursery.start(
                lambda task_status: gateway_main(
                    config, NodeKey.generate(), stack=host, task_status=task_status
                )
            )
            await trio.sleep(5)
            nursery.cancel_scope.cancel()
    assert _alarms(caplog) == []
