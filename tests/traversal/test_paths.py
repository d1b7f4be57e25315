"""Paths under a live connection: relay -> direct with no message lost, a dead direct path
falling back to the relay and punched again, a NAT rebinding followed."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection import Connection
from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset, add_site
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.system import NatSystem
from macula_nat.traversal.config import TraversalConfig

from .world import World, open_world

QUICK = TraversalConfig(consent_interval=1.0, consent_timeout=3.5, retry_interval=5.0)
"""Liveness on a scale a test can watch: a dead path is dropped within 3.5 s."""


async def stream(sender: Connection, count: int, gap: float) -> None:
    for i in range(count):
        await sender.send_message(b"%d" % i)
        await trio.sleep(gap)


async def expect(receiver: Connection, count: int) -> None:
    for i in range(count):
        assert await receiver.receive_message() == b"%d" % i


async def both_ways(a: Connection, b: Connection, count: int, gap: float) -> None:
    """``count`` messages each way, ``gap`` seconds apart, all checked in order."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream, a, count, gap)
        nursery.start_soon(expect, b, count)
        nursery.start_soon(stream, b, count, gap)
        nursery.start_soon(expect, a, count)


async def pair(world: World, a: Preset, b: Preset) -> tuple[NatSystem, NatSystem]:
    return await world.node(a, "alice"), await world.node(b, "bob")


async def rebinding_pair(world: World, peer: Preset) -> tuple[NatBox, NatSystem, NatSystem]:
    """alice behind an EIM random-port NAT the test can rebind (returned first), and bob."""
    site = add_site(world.internet.public, Preset.EIM_RANDOM_PORT, link=world.site_link)
    return site.nats[0], await world.node_at(site.host), await world.node(peer, "bob")


async def test_an_upgrade_while_messages_flow_loses_none(autojump_clock: MockClock) -> None:
    async with open_world() as world:
        alice, bob = await pair(world, Preset.PORT_RESTRICTED_CONE, Preset.SYMMETRIC_SEQUENTIAL)
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream, connection, 300, 0.005)
                nursery.start_soon(stream, accepted, 300, 0.005)
                nursery.start_soon(expect, accepted, 300)
                nursery.start_soon(expect, connection, 300)
        assert connection.info().connection_method is ConnectionMethod.PUNCHED
        for end in (connection, accepted):
            assert end.link is not None
            statistics = end.link.statistics()
            # the stream started over the relay and finished on the punched path
            assert statistics.sent_relayed > 0 and statistics.sent_direct > 0
            assert statistics.upgrades == 1


async def test_a_dead_direct_path_falls_back_to_the_relay_then_is_punched_again(
    autojump_clock: MockClock,
) -> None:
    async with open_world(traversal=QUICK) as world:
        nat, alice, bob = await rebinding_pair(world, Preset.PORT_RESTRICTED_CONE)
        with trio.fail_after(60):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
            await accepted.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
            before = accepted.info().remote_address
            # alice's NAT forgets every mapping: her packets now leave from a new port that
            # bob's port-restricted NAT drops, and bob's reach a mapping that is gone
            nat.rebind()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream, connection, 200, 0.05)
                nursery.start_soon(expect, accepted, 200)
                await connection.method.wait_value(lambda m: m is ConnectionMethod.RELAYED)
                await accepted.method.wait_value(lambda m: m is ConnectionMethod.RELAYED)
                # the initiator punches again after retry_interval, from its new mapping
                await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
                await accepted.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
        assert accepted.info().remote_address != before
        assert connection.link is not None and accepted.link is not None
        assert connection.link.statistics().fallbacks == 1
        assert accepted.link.statistics().fallbacks == 1
        assert alice.coordinator.statistics().punching.fallbacks == 1


async def test_a_rebinding_behind_a_cone_peer_is_followed_without_the_relay(
    autojump_clock: MockClock,
) -> None:
    async with open_world(traversal=QUICK) as world:
        nat, alice, bob = await rebinding_pair(world, Preset.RESTRICTED_CONE)
        with trio.fail_after(60):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await accepted.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
            before = accepted.info().remote_address
            nat.rebind()
            await both_ways(connection, accepted, 100, 0.05)
        # bob's address-restricted NAT lets alice's new port in: bob follows it directly
        after = accepted.info().remote_address
        assert after is not None and before is not None
        assert after[0] == before[0] and after[1] != before[1]
        assert accepted.info().connection_method is ConnectionMethod.PUNCHED
        assert accepted.link is not None and accepted.link.statistics().fallbacks == 0


async def test_a_direct_connection_survives_a_rebinding_of_the_dialler(
    autojump_clock: MockClock,
) -> None:
    async with open_world(traversal=QUICK) as world:
        nat, alice, bob = await rebinding_pair(world, Preset.OPEN_INTERNET)
        with trio.fail_after(60):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            assert connection.info().connection_method is ConnectionMethod.DIRECT
            before = accepted.info().remote_address
            nat.rebind()
            await both_ways(connection, accepted, 100, 0.05)
        after = accepted.info().remote_address
        assert after != before
        assert accepted.info().connection_method is ConnectionMethod.DIRECT


async def test_a_connection_without_a_possible_punch_stays_on_the_relay(
    autojump_clock: MockClock,
) -> None:
    async with open_world() as world:
        alice, bob = await pair(world, Preset.SYMMETRIC_RANDOM, Preset.SYMMETRIC_RANDOM)
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await connection.send_message(b"via the relay")
            assert await accepted.receive_message() == b"via the relay"
            await trio.sleep(10)
        assert connection.info().connection_method is ConnectionMethod.RELAYED
        assert connection.info().remote_address is None
        assert alice.coordinator.statistics().punching.punches == 0


def test_quick_liveness_settings_are_valid() -> None:
    assert attrs.evolve(QUICK, consent_timeout=1.0).consent_timeout == 1.0


async def test_replayed_and_forged_probes_cannot_hijack_the_path(
    autojump_clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker on the internet sends bob's genuine probes (and forges ACKs) to alice from
    its own address: the attacker cannot answer her nonce itself, so her connection never moves
    to it. (It does not forward alice's probe back to bob, and bob's port-restricted NAT would
    drop it anyway: test_path_attacks has the forwarding attacker, between full-cone peers.)"""
    sent: list[bytes] = []
    async with open_world() as world:
        alice = await world.node(Preset.FULL_CONE, "alice")
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob")
        original = type(bob.coordinator.puncher)._send_probe

        async def recording(self: Any, punch: Any, target: Any, via: Any = None) -> None:
            if self is bob.coordinator.puncher:
                sent.append(punch.prover.probe(target, trio.current_time()))
            await original(self, punch, target, via)

        monkeypatch.setattr(type(bob.coordinator.puncher), "_send_probe", recording)
        attacker_host = world.internet.add_host(["203.0.113.66"], link=world.site_link)
        attacker = await attacker_host.bind(("203.0.113.66", 4444))
        with trio.fail_after(30):
            connection = await alice.connector.connect(bob.node_id)
            accepted = await bob.connector.accept()
            await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
            path = connection.info().remote_address
            assert sent and alice.relays.client is not None
            registration = alice.relays.client.registration.value
            assert registration is not None
            target = registration.observed  # alice's shared socket, as the internet sees it
            before = alice.coordinator.puncher.find(bob.node_id)
            assert before is not None
            received_before = before.prover.statistics()
            for _ in range(5):
                for frame in sent:  # replays of bob's genuine probes
                    await attacker.send_to(frame, target)
                for frame in sent:  # and forged ACKs: bob's frames with the ACK bit set
                    await attacker.send_to(bytes([frame[0] | 0x02]) + frame[1:], target)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stream, connection, 50, 0.1)
                nursery.start_soon(expect, accepted, 50)
        assert connection.info().remote_address == path != ("203.0.113.66", 4444)
        punch = alice.coordinator.puncher.find(bob.node_id)
        assert punch is not None
        assert ("203.0.113.66", 4444) not in punch.proofs  # never proven, so never followed
        after = punch.prover.statistics()
        assert after.probes_received >= received_before.probes_received + 5 * len(sent)
        assert after.rejected >= received_before.rejected + 5 * len(sent)  # the forged ACKs
