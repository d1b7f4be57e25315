"""Connecting nodes through NATs on the simulated internet: methods, upgrade, messages."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection import ConnectionConfig
from macula_nat.connection.backend import BACKENDS, BackendName
from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset
from macula_nat.traversal.config import TraversalConfig

from .world import RELAY, open_world


@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_port_restricted_cones_start_relayed_and_upgrade_to_punched(
    autojump_clock: MockClock, backend: BackendName
) -> None:
    """On each QUIC backend: the connection moves from the relay to the punched path."""
    connection_config = ConnectionConfig(quic_backend=backend)
    async with open_world(traversal=TraversalConfig(connection=connection_config)) as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob")
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            assert accepted.peer_id == alice.node_id
            assert connection.info().connection_method == ConnectionMethod.RELAYED
            await connection.send_message(b"hello over the relay")
            assert await accepted.receive_message() == b"hello over the relay"
            await connection.method.wait_value(lambda m: m == ConnectionMethod.PUNCHED)
            await accepted.method.wait_value(lambda m: m == ConnectionMethod.PUNCHED)
            for i in range(20):
                await connection.send_message(b"direct %d" % i)
            for i in range(20):
                assert await accepted.receive_message() == b"direct %d" % i
            await accepted.send_message(b"back")
            assert await connection.receive_message() == b"back"
            assert connection.link is not None and connection.link.statistics().sent_direct > 0


async def test_a_node_visits_the_targets_home_relay_from_its_one_socket(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        second = await world.add_relay("198.51.100.20")
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice", home_relay=RELAY)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob", home_relay=second.address)
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id, prefer_direct=False)
            accepted = await bob.connector.accept()
            await connection.send_message(b"to bob")
            assert await accepted.receive_message() == b"to bob"
            await accepted.send_message(b"to alice")
            assert await connection.receive_message() == b"to alice"
        home = alice.relays.client
        assert home is not None and home.registration.value is not None
        seen_at_home = world.relay._core.registration(alice.node_id)
        seen_visiting = second._core.registration(alice.node_id)
        method = connection.info().connection_method
        await connection.aclose()
        await trio.sleep(1.0)
        after = second._core.registration(alice.node_id)

    assert method == ConnectionMethod.RELAYED
    assert seen_at_home is not None and seen_visiting is not None
    # the visit rode alice's one socket: both relays see the same mapping of it, the one
    # alice's home registration reports (a socket of its own would get another port)
    assert seen_visiting.address == seen_at_home.address == home.registration.value.observed
    assert after is None  # the visit ended with the connection


@pytest.mark.parametrize("blocked_side", ["initiator", "responder"])
async def test_a_connection_made_while_udp_was_blocked_punches_once_udp_answers_again(
    autojump_clock: MockClock, blocked_side: str
) -> None:
    """Issue 13: while one side's profile says ``udp_blocked`` the pair only relays; when that
    side's UDP answers again (its relay registry reports it, a detection confirms it) the
    connection punches at once, whichever side initiated it."""
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob")
        blocked = alice if blocked_side == "initiator" else bob
        blocked.detector.set_udp_blocked(True)  # as its relay registry reports a TCP fallback
        await trio.sleep(1.0)  # its record is published again, saying so
        with trio.fail_after(60):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await trio.sleep(10.0)
            assert connection.method.value == ConnectionMethod.RELAYED  # nobody punched
            assert alice.coordinator.puncher.statistics().punches == 0
            blocked.detector.set_udp_blocked(False)  # a detection starts; UDP answers it
            answered = trio.current_time()
            await connection.method.wait_value(lambda m: m == ConnectionMethod.PUNCHED)
            await accepted.method.wait_value(lambda m: m == ConnectionMethod.PUNCHED)
            took = trio.current_time() - answered
            await connection.send_message(b"direct now")
            assert await accepted.receive_message() == b"direct now"
    assert took < 5.0
