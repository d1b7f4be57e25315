"""A node's own inbound QUIC handshakes under spoofed Initials: the coordinator reads QUIC on
the node's shared socket itself, so a flood of Initials from spoofed sources must not take the
slots a genuine direct connect needs. Simulated internet, mock clock."""

from __future__ import annotations

from functools import partial

import trio
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset
from tests.connection.test_attacks import spoofed_flood

from .world import open_world


async def test_a_direct_connect_succeeds_within_2s_under_a_spoofed_initial_flood(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")
        record = await world.directory.resolve_record(bob.node_id.text())
        assert record is not None
        target = record.candidates[0]  # what alice dials: bob's shared socket
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(spoofed_flood, world.internet, target, per_second=16, seconds=30)
            )
            await trio.sleep(5)  # the flood has filled what it can
            held_by_flood = bob.coordinator.statistics().direct_handshakes.pending
            with trio.fail_after(2):
                method, connection = await alice.coordinator.request_connection(
                    bob.node_id, allow_relay=False, punch=False
                )
                accepted = await bob.connector.accept()
                await connection.send_message(b"through the flood")
                assert await accepted.receive_message() == b"through the flood"
            nursery.cancel_scope.cancel()
        statistics = bob.coordinator.statistics().direct_handshakes
    assert method is ConnectionMethod.DIRECT
    assert held_by_flood <= statistics.limits.retry_threshold
    assert statistics.retries_sent >= 16
