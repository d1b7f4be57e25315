"""Connecting nodes through NATs on the simulated internet: methods, upgrade, messages."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset

from .world import open_world


async def test_two_port_restricted_cones_start_relayed_and_upgrade_to_punched(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
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
