"""Crashes of a node's relay registry and coordinator, and a malicious home relay's session
notices: what each costs, and that nothing else is lost (issue 11, points 10 and 11a)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import ActorRef
from macula_nat.connection import Connection, ConnectionFailed
from macula_nat.connection.link import ConnectionMethod
from macula_nat.identity import NodeKey
from macula_nat.net.sim import Preset
from macula_nat.relay.frames import RelayAccepted
from macula_nat.system import NatSystem

from .relayed_load import load, tasks_alive
from .world import RELAY, World, open_world

RECOVERY: float = 5.0
"""Simulated seconds a crash may cost a connection whose owner survived (issue 11, point 10)."""


def crash(ref: ActorRef, how: str) -> None:
    """Crash the actor ``ref``: ``cast`` makes a handler raise (``terminate`` runs), ``kill``
    cancels it where it stands (nothing of it runs)."""
    if how == "kill":
        ref._kill()
    else:
        ref.cast("a message no handler expects")


async def restarted(old: ActorRef, current: Callable[[], ActorRef | None]) -> None:
    """Until the supervisor has started a new incarnation (bounded: 100 looks)."""
    for _ in range(100):
        ref = current()
        if ref is not None and ref is not old and ref.alive:
            return
        await trio.sleep(0.01)
    raise AssertionError("not restarted")


async def exchange(sender: Connection, receiver: Connection, tag: bytes, count: int) -> None:
    """``count`` messages each way; each arrives once, in order."""
    for i in range(count):
        await sender.send_message(b"%s %d" % (tag, i))
    for i in range(count):
        assert await receiver.receive_message() == b"%s %d" % (tag, i)


async def relayed_pair(world: World, visit: bool) -> tuple[NatSystem, NatSystem]:
    """Alice and bob on port-restricted cones: both homed on the gateway's relay, or (``visit``)
    bob homed on a second relay that alice visits."""
    alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice", home_relay=RELAY)
    bob_home = (await world.add_relay("198.51.100.20")).address if visit else RELAY
    bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob", home_relay=bob_home)
    return alice, bob


@pytest.mark.parametrize("how", ["cast", "kill"])
@pytest.mark.parametrize("visit", [False, True], ids=["home", "visit"])
async def test_relayed_connections_carry_data_again_soon_after_the_registry_crashes(
    autojump_clock: MockClock, how: str, visit: bool
) -> None:
    async with open_world() as world:
        alice, bob = await relayed_pair(world, visit)
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id, prefer_direct=False)
            accepted = await bob.connector.accept()
            await exchange(connection, accepted, b"before", 5)
        server = alice.relays.server
        assert server is not None
        crash(server, how)
        await restarted(server, lambda: alice.relays.server)
        # messages sent at once: none lost (QUIC resends what the crash dropped), none twice
        with trio.fail_after(RECOVERY):
            await exchange(connection, accepted, b"to bob", 5)
            await exchange(accepted, connection, b"to alice", 5)
        assert connection.method.value == ConnectionMethod.RELAYED
        # the restarted registry holds the home relay again and a new connection works
        with trio.fail_after(RECOVERY):
            await alice.relays.home.wait_value(lambda home: home is not None)
        stats = alice.relays.statistics()
        assert stats.home is not None and stats.home.endpoint == RELAY


@pytest.mark.parametrize("how", ["cast", "kill"])
@pytest.mark.parametrize("punched", [False, True], ids=["relayed", "punched"])
@pytest.mark.parametrize("side", ["initiator", "responder"])
async def test_a_peer_learns_of_a_coordinator_crash_within_seconds(
    autojump_clock: MockClock, how: str, punched: bool, side: str
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob")
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id, prefer_direct=punched)
            accepted = await bob.connector.accept()
            await exchange(connection, accepted, b"before", 3)
            if punched:
                await accepted.method.wait_value(lambda m: m == ConnectionMethod.PUNCHED)
        crashed, waiting = (alice, accepted) if side == "initiator" else (bob, connection)
        server = crashed.coordinator.server
        assert server is not None
        crash(server, how)
        crashed_at = trio.current_time()
        with trio.fail_after(RECOVERY):  # the peer waits for a message: it hears of the crash
            with pytest.raises(ConnectionFailed):
                await waiting.receive_message()
        told_after = trio.current_time() - crashed_at
        await restarted(server, lambda: crashed.coordinator.server)
        with trio.fail_after(30):
            again = await alice.connector.connect(bob.node_id, prefer_direct=punched)
            fresh = await bob.connector.accept()
            await exchange(again, fresh, b"after", 3)
    assert told_after < RECOVERY


NOTICES: int = 5000
MAX_NEW_TASKS: int = 200


async def test_a_home_relays_flood_of_session_notices_spawns_a_bounded_number_of_tasks(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice, bob = await relayed_pair(world, visit=False)
        await trio.sleep(1.0)
        before = tasks_alive()
        # the relay is malicious: it tells alice of sessions nobody opened, 1,000 a second
        registration = world.relay._core.registration(alice.node_id)
        assert registration is not None
        stranger = NodeKey.generate().node_id
        peak = 0
        for i in range(NOTICES):
            notice = RelayAccepted(0, 1_000_000 + i, stranger)
            await world.relay._send(registration.link.seal(notice), registration.address)
            await trio.sleep(0.001)  # paced: alice's socket buffer takes every one
            if i % 100 == 0:
                peak = max(peak, tasks_alive())
        for _ in range(10):
            await trio.sleep(0.1)
            peak = max(peak, tasks_alive())
        statistics = alice.coordinator.statistics()
        refused = statistics.refused_sessions
        # the flood's sessions give up their handshakes; then a genuine one gets through
        await trio.sleep(alice.coordinator.config.connection.handshake_timeout * 2)
        assert alice.coordinator.statistics().relayed_handshakes == 0
        with trio.fail_after(30):
            connection = await bob.connector.connect(alice.node_id, prefer_direct=False)
            accepted = await alice.connector.accept()
            await exchange(connection, accepted, b"genuine", 2)
    assert peak - before <= MAX_NEW_TASKS, (before, peak)
    assert refused >= NOTICES - statistics.max_relayed_handshakes - 64


async def test_a_relay_session_that_never_handshakes_costs_nothing_else(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice, bob = await relayed_pair(world, visit=False)
        mallory = await world.node(Preset.PORT_RESTRICTED_CONE, "mallory", home_relay=RELAY)
        with trio.fail_after(30):
            connection = await bob.connector.connect(alice.node_id, prefer_direct=False)
            accepted = await alice.connector.accept()
        server = alice.coordinator.server
        client = mallory.relays.client
        assert client is not None
        # mallory opens a relay session to alice and never sends an Initial over it
        silent = await client.request_relay(alice.node_id)
        await trio.sleep(alice.coordinator.config.connection.handshake_timeout * 2 + 1)
        with trio.fail_after(RECOVERY):
            await exchange(connection, accepted, b"still here", 3)
        statistics = alice.coordinator.statistics()
        await silent.aclose()
    assert alice.coordinator.server is server  # alice's coordinator never crashed
    assert statistics.relayed_handshakes == 0 and statistics.connections == 1


async def test_random_kills_under_load_cost_only_the_connections_they_take(
    autojump_clock: MockClock,
) -> None:
    """The load test of ``tests/bench/attack_load.py`` (``relayed_load``), scaled down (24
    connections, 20 s)."""
    report = await load(
        clients=6, servers=6, per_client=4, connections=24, duration=20.0, kill_every=2.0
    )
    assert sum(report.kills.values()) >= 8 and report.failed > 0 and report.survivors > 0
    assert report.sent > 0 and report.lost == report.duplicated == report.reordered == 0
    assert report.unexpected_failures == report.silent_ends == 0
    assert report.max_latency < RECOVERY and report.max_time_to_fail < RECOVERY
    assert all(error.startswith("ConnectionClosed") for error in report.errors), report.errors
    assert report.tasks_after <= report.tasks_before
