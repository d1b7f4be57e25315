"""The connector's and coordinator's promises: clear errors, the Erlang calls, the profile
republished when the NAT changes."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection import ConnectionFailed
from macula_nat.connection.link import ConnectionMethod
from macula_nat.directory import DirectoryError, EmbeddedDirectory
from macula_nat.directory.record import NodeRecord
from macula_nat.net.sim import Preset, add_site
from macula_nat.system import NatSystem
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.errors import (
    ConnectTimeout,
    NoRelay,
    NotConnected,
    PunchFailed,
    SymmetricNat,
)

from .world import open_world


async def until_nothing_pending(system: NatSystem) -> None:
    for _ in range(100):
        if not system.coordinator.get_pending():
            return
        await trio.sleep(0.1)
    raise AssertionError("a punch is still pending after 10 s")


async def test_two_symmetric_nats_without_relaying_raise_symmetric_nat(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.SYMMETRIC_RANDOM)
        bob = await world.node(Preset.SYMMETRIC_RANDOM)
        with pytest.raises(SymmetricNat, match="relaying is not allowed"):
            await alice.connector.connect(bob.node_id, fallback_relay=False)
        assert alice.coordinator.statistics().connections == 0


async def test_a_punch_that_cannot_succeed_without_relaying_raises_punch_failed(
    autojump_clock: MockClock,
) -> None:
    hopeless = TraversalConfig(birthday_sockets=1, birthday_probes=1, punch_window=0.5)
    async with open_world(traversal=hopeless) as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.SYMMETRIC_RANDOM)
        with trio.fail_after(60), pytest.raises(PunchFailed, match="punch attempts"):
            await alice.connector.connect(bob.node_id, fallback_relay=False, max_attempts=1)


async def test_without_a_relay_a_punch_needing_signalling_raises_no_relay(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        await world.relay.disable()
        with trio.fail_after(60):
            await alice.relays.home.wait_value(lambda home: home is None)
            with pytest.raises(NoRelay):
                await alice.connector.connect(bob.node_id, timeout=30)


async def test_a_connection_not_made_in_time_raises_connect_timeout(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        with pytest.raises(ConnectTimeout, match=r"within 0\.01 s"):
            await alice.connector.connect(bob.node_id, timeout=0.01)


async def test_bad_arguments_are_refused_before_any_traffic(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.FULL_CONE)
        with pytest.raises(ValueError, match="itself"):
            await alice.connector.connect(alice.node_id)
        with pytest.raises(ValueError, match="no path"):
            await alice.connector.connect(alice.node_id, prefer_direct=False, fallback_relay=False)
        with pytest.raises(ValueError, match="max_attempts"):
            await alice.connector.connect(alice.node_id, max_attempts=0)
        with pytest.raises(ValueError):
            await alice.connector.connect("not a node id")


async def test_prefer_direct_false_keeps_the_connection_on_the_relay(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        connection = await alice.connector.connect(bob.node_id, prefer_direct=False)
        await trio.sleep(5)
        assert connection.info().connection_method is ConnectionMethod.RELAYED
        assert alice.coordinator.statistics().punching.punches == 0
        await alice.connector.disconnect(connection)
        await alice.connector.disconnect(connection)  # idempotent
        with pytest.raises(trio.ClosedResourceError):
            await connection.send_message(b"after disconnect")


async def test_coordinate_punch_and_get_pending(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        carol = await world.node(Preset.FULL_CONE)
        with pytest.raises(ValueError, match="its own punches"):
            alice.coordinator.coordinate_punch(bob.node_id, carol.node_id)
        with pytest.raises(NotConnected):
            alice.coordinator.coordinate_punch(alice.node_id, bob.node_id)
        method, connection = await alice.coordinator.request_connection(bob.node_id)
        assert method is ConnectionMethod.RELAYED  # punching goes on in the background
        assert [p.peer for p in alice.coordinator.get_pending()] == [bob.node_id]
        await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
        await until_nothing_pending(alice)
        ref = alice.coordinator.coordinate_punch(alice.node_id, bob.node_id, predicted_ports=[9])
        [pending] = alice.coordinator.get_pending()
        assert pending.ref == ref and pending.peer == bob.node_id
        assert bob.detector.profile.value is not None
        assert (bob.detector.profile.value.public_ip, 9) in pending.targets
        await until_nothing_pending(alice)
        statistics = alice.coordinator.statistics()
        assert (statistics.outbound, statistics.relayed, statistics.connections) == (1, 1, 1)
        assert statistics.punching.upgrades == 1


async def test_a_changed_nat_profile_is_republished(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        site = add_site(world.internet.public, Preset.EIM_RANDOM_PORT, link=world.site_link)
        alice = await world.node_at(site.host)
        before = await world.directory.resolve_record(alice.node_id.text())
        assert before is not None and before.profile is not None
        site.nats[0].rebind()  # a NAT reboot: every public port changes
        await alice.detector.detect(force=True)
        with trio.fail_after(10):
            while True:
                after = await world.directory.resolve_record(alice.node_id.text())
                assert after is not None and after.profile is not None
                if after.profile.public_port != before.profile.public_port:
                    break
                await trio.sleep(0.1)
        assert after.home_relay == before.home_relay  # the rest of the record is kept


async def test_a_coordinator_crash_costs_its_connections_and_nothing_else(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        connection = await alice.connector.connect(bob.node_id)
        profile, home = alice.detector.profile.value, alice.relays.home.value
        server = alice.coordinator.server
        assert server is not None
        await server.stop("provoked crash")
        with trio.fail_after(30):
            await connection.wait_closed()
            with pytest.raises(ConnectionFailed, match="ended"):
                await connection.send_message(b"lost with its coordinator")
            for _ in range(100):  # the supervisor restarts it
                if alice.coordinator.server not in (server, None):
                    break
                await trio.sleep(0.01)
            # the rest of the node went on, and the new incarnation connects again
            assert alice.detector.profile.value is profile
            assert alice.relays.home.value == home
            again = await alice.connector.connect(bob.node_id)
            await again.send_message(b"after the restart")
        assert alice.coordinator.statistics().connections == 1


def test_every_connect_error_is_a_traversal_error_and_no_relay_also_the_registrys() -> None:
    from macula_nat.relay import NoRelay as RegistryNoRelay
    from macula_nat.traversal.errors import TraversalError

    for error in (SymmetricNat, NoRelay, PunchFailed, ConnectTimeout, NotConnected):
        assert issubclass(error, TraversalError)
    assert issubclass(NoRelay, RegistryNoRelay)


class DirectoryDown:
    """A directory that cannot answer lookups (publishing still works)."""

    def __init__(self, inner: EmbeddedDirectory) -> None:
        self._inner = inner

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        raise DirectoryError("the directory is down")

    async def publish_record(self, *args: Any, **kwargs: Any) -> None:
        await self._inner.publish_record(*args, **kwargs)


async def test_a_target_profile_is_cached_and_stands_in_when_the_directory_cannot_answer(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        first = await alice.connector.connect(bob.node_id)
        assert alice.cache.get_nowait(bob.node_id.text()).value == bob.detector.profile.value
        await alice.connector.disconnect(first)
        monkeypatch.setattr(alice.coordinator, "directory", DirectoryDown(world.directory))
        with trio.fail_after(30):
            again = await alice.connector.connect(bob.node_id)
            await again.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)


async def test_a_peer_that_refuses_us_fails_the_connect_with_a_plain_connection_error(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE)
        bob.coordinator._accept_peer = lambda peer: peer != alice.node_id
        with trio.fail_after(60), pytest.raises(ConnectionFailed):  # not an ExceptionGroup
            await alice.connector.connect(bob.node_id)
        assert alice.coordinator.statistics().connections == 0


async def test_wait_ready_returns_the_detected_profile_and_the_home_relay(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.RESTRICTED_CONE)
        profile, home = await alice.wait_ready()
        assert profile is alice.detector.profile.value
        assert home == alice.relays.home.value
        assert home.endpoint == world.relay.address
