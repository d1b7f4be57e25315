"""A node's own inbound QUIC handshakes under spoofed Initials: the coordinator reads QUIC on
the node's shared socket itself, so a flood of Initials from spoofed sources must not take the
slots a genuine direct connect needs. Simulated internet, mock clock."""

from __future__ import annotations

from functools import partial

import trio
from trio.testing import MockClock

from macula_nat.connection.admission import HandshakeLimits
from macula_nat.connection.link import ConnectionMethod
from macula_nat.net import Address
from macula_nat.net.sim import Preset
from macula_nat.system import NatSystem
from macula_nat.traversal import TraversalConfig
from tests.connection.test_attacks import spoofed_flood

from .world import World, open_world


async def shared_address(world: World, node: NatSystem) -> Address:
    """Where other nodes dial ``node``: its shared socket's published address."""
    record = await world.directory.resolve_record(node.node_id.text())
    assert record is not None and record.candidates
    return record.candidates[0]


async def dial_directly(caller: NatSystem, target: NatSystem, message: bytes) -> ConnectionMethod:
    """``caller`` dials ``target``'s shared socket (no relay, no punch) within 2 s and
    ``message`` crosses the connection; the method it connected by."""
    with trio.fail_after(2):
        method, connection = await caller.coordinator.request_connection(
            target.node_id, allow_relay=False, punch=False
        )
        accepted = await target.connector.accept()
        await connection.send_message(message)
        assert await accepted.receive_message() == message
    return method


async def test_a_direct_connect_succeeds_within_2s_under_a_spoofed_initial_flood(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")
        target = await shared_address(world, bob)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(spoofed_flood, world.internet, target, per_second=16, seconds=30)
            )
            await trio.sleep(5)  # the flood has filled what it can
            held_by_flood = bob.coordinator.statistics().direct_handshakes.pending
            method = await dial_directly(alice, bob, b"through the flood")
            nursery.cancel_scope.cancel()
        statistics = bob.coordinator.statistics().direct_handshakes
    assert method is ConnectionMethod.DIRECT
    assert held_by_flood <= statistics.limits.retry_threshold
    assert statistics.retries_sent >= 16


async def test_a_proven_dial_evicts_an_unproven_handshake_when_every_slot_is_taken(
    autojump_clock: MockClock,
) -> None:
    """With as many slots as unproven handshakes may hold, the flood fills them all; the real
    peer proves its address (Retry) and takes one of the flood's. Slots are freed once the
    flood's handshakes time out."""
    limits = HandshakeLimits(max_handshakes=4, per_source=4, retry_threshold=4)
    async with open_world(traversal=TraversalConfig(inbound_handshakes=limits)) as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")
        target = await shared_address(world, bob)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(spoofed_flood, world.internet, target, per_second=16, seconds=10)
            )
            await trio.sleep(5)
            assert bob.coordinator.statistics().direct_handshakes.pending == 4
            method = await dial_directly(alice, bob, b"evicted one")
        assert method is ConnectionMethod.DIRECT
        statistics = bob.coordinator.statistics().direct_handshakes
        assert statistics.evicted >= 1
        await trio.sleep(2 * bob.coordinator.config.connection.handshake_timeout)
        assert bob.coordinator.statistics().direct_handshakes.pending == 0


async def test_a_node_that_retries_every_initial_still_accepts_direct_dials(
    autojump_clock: MockClock,
) -> None:
    """The Retry leaves from the node's shared socket, and the handshake built from the token
    carries the original and Retry connection ids the QUIC client checks."""
    always = HandshakeLimits(retry_threshold=0)
    async with open_world(traversal=TraversalConfig(inbound_handshakes=always)) as world:
        alice = await world.node(Preset.PORT_RESTRICTED_CONE, "alice")
        bob = await world.node(Preset.OPEN_INTERNET, "bob")
        method = await dial_directly(alice, bob, b"after a Retry")
        assert method is ConnectionMethod.DIRECT
        statistics = bob.coordinator.statistics().direct_handshakes
        # qh3's ClientHello (a post-quantum key share) spans two Initials: a Retry for each
        assert statistics.retries_sent in (1, 2)
        assert statistics.pending == 0
