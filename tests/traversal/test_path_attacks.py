"""Attacks on punched paths, end to end on the simulated internet (issue 11, points 8 and 11b).

The attacker sits at its own public address and talks to full-cone peers (their NATs let
anyone in), so everything it sends reaches them: replays of a captured probe, a probe it
withheld from its peer, and whatever either peer sends it, forwarded to the other.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from macula_nat.connection import Connection
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpEndpoint
from macula_nat.net.sim import Preset, add_site
from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.interface import Interface
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.system import NatSystem
from macula_nat.traversal.prover import PathProver
from macula_nat.traversal.punch_wire import Role
from macula_nat.traversal.puncher import Punch

from .test_paths import QUICK, both_ways
from .world import World, open_world

ATTACKER: Address = ("203.0.113.66", 4444)


def observed(node: NatSystem) -> Address:
    """Where the internet sees ``node``'s shared socket (its relay registration)."""
    assert node.relays.client is not None
    registration = node.relays.client.registration.value
    assert registration is not None
    return registration.observed


def punch_of(node: NatSystem, peer: NatSystem) -> Punch:
    punch = node.coordinator.puncher.find(peer.node_id)
    assert punch is not None
    return punch


async def attacker_socket(world: World) -> UdpEndpoint:
    host = world.internet.add_host([ATTACKER[0]], link=world.site_link)
    return await host.bind(ATTACKER)


async def forward(socket: UdpEndpoint, a: Address, b: Address) -> None:
    """A man in the middle: whatever comes from ``a`` goes to ``b``, and back."""
    while True:
        data, source = await socket.receive_from()
        if source == a:
            await socket.send_to(data, b)
        elif source == b:
            await socket.send_to(data, a)


async def cut(nat: NatBox, peer: Address, seconds: float) -> None:
    """For ``seconds``, ``nat`` passes nothing to or from ``peer`` (an attacker on the path
    drops what goes between the two directly)."""
    arrived = nat._packet_arrived

    def dropping(interface: Interface, packet: Datagram) -> None:
        if peer not in (packet.source, packet.destination):
            arrived(interface, packet)

    nat._packet_arrived = dropping  # type: ignore[method-assign]
    await trio.sleep(seconds)
    del nat._packet_arrived


async def direct_pair(
    world: World,
) -> tuple[NatBox, NatSystem, NatSystem, Connection, Connection]:
    """alice (behind a full-cone NAT the test can cut, returned first) and bob (full cone too),
    connected directly, and the two ends of their connection."""
    site = add_site(world.internet.public, Preset.FULL_CONE, link=world.site_link)
    alice = await world.node_at(site.host)
    bob = await world.node(Preset.FULL_CONE, "bob")
    with trio.fail_after(30):
        connection = await alice.connector.connect(bob.node_id)
        accepted = await bob.connector.accept()
        await both_ways(connection, accepted, 10, 0.1)  # introduced, consent checks running
    return site.nats[0], alice, bob, connection, accepted


def assert_not_diverted(alice: NatSystem, bob: NatSystem, a: Address, b: Address) -> None:
    """Neither side proved, targets or routes anything at the attacker's address."""
    for node, peer, path in ((alice, bob, b), (bob, alice, a)):
        punch = punch_of(node, peer)
        assert punch.link.remote_address == path
        assert ATTACKER not in punch.proofs
        assert ATTACKER not in punch.prover.proven
        assert ATTACKER not in punch.targets
        assert ATTACKER not in node.coordinator._routes


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Role, bytes]]:
    """Every probe frame any prover makes, with its maker's role: what an on-path attacker
    sees go by."""
    frames: list[tuple[Role, bytes]] = []
    original = PathProver.probe

    def recording(self: PathProver, address: Address, now: float) -> bytes:
        frame = original(self, address, now)
        frames.append((self.role, frame))
        return frame

    monkeypatch.setattr(PathProver, "probe", recording)
    return frames


async def test_a_replayed_probe_forwarded_both_ways_moves_no_path(
    autojump_clock: MockClock, captured: list[tuple[Role, bytes]]
) -> None:
    """The issue's attack: the attacker drops what goes between alice and bob directly for a
    while, so both paths go quiet, replays one of bob's probes (captured on the way) to alice
    from its own address, and forwards whatever either peer sends it to the other. Before the
    fix alice answered and probed the attacker back, bob answered that probe through it, and
    both moved their paths to the attacker's address."""
    async with open_world(traversal=QUICK) as world:
        nat, alice, bob, connection, accepted = await direct_pair(world)
        with trio.fail_after(60):
            a, b = observed(alice), observed(bob)
            replay = [frame for role, frame in captured if role is Role.RESPONDER][-1]
            socket = await attacker_socket(world)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(forward, socket, a, b)
                nursery.start_soon(cut, nat, b, 4 * QUICK.consent_interval)
                await trio.sleep(2 * QUICK.consent_interval)  # both paths are quiet now
                for _ in range(10):  # delivered to alice long ago, replayed now and then
                    await socket.send_to(replay, a)
                    await trio.sleep(0.5)
                await both_ways(connection, accepted, 20, 0.1)
                nursery.cancel_scope.cancel()
        assert_not_diverted(alice, bob, a, b)
        assert punch_of(alice, bob).prover.statistics().replays >= 10


async def test_a_withheld_probe_forwarded_from_the_attackers_address_proves_nothing(
    autojump_clock: MockClock,
) -> None:
    """An on-path attacker that kept one of bob's probes from alice (so its nonce is fresh to
    her) sends it from its own address and forwards both ways: alice answers and probes it
    back, but bob refuses that probe (it comes from the address it was sent to), and the
    attacker's address is never proven on either side."""
    async with open_world(traversal=QUICK) as world:
        _, alice, bob, connection, accepted = await direct_pair(world)
        with trio.fail_after(60):
            a, b = observed(alice), observed(bob)
            withheld = punch_of(bob, alice).prover.probe(a, trio.current_time())
            socket = await attacker_socket(world)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(forward, socket, a, b)
                await socket.send_to(withheld, a)
                await both_ways(connection, accepted, 20, 0.1)
                nursery.cancel_scope.cancel()
        assert ATTACKER not in punch_of(alice, bob).proofs
        assert ATTACKER not in punch_of(bob, alice).proofs
        assert (connection.info().remote_address, accepted.info().remote_address) == (b, a)
        assert punch_of(bob, alice).prover.statistics().looped >= 1


async def test_a_thousand_replays_in_a_second_get_no_answer(
    autojump_clock: MockClock, captured: list[tuple[Role, bytes]]
) -> None:
    """Before the fix each replay got an ACK and a probe back: 1000 of 1000 answered, twice
    the bytes."""
    async with open_world(traversal=QUICK) as world:
        _, alice, bob, _, _ = await direct_pair(world)
        with trio.fail_after(60):
            a = observed(alice)
            replay = [frame for role, frame in captured if role is Role.RESPONDER][-1]
            socket = await attacker_socket(world)
            received = 0

            async def count() -> None:
                nonlocal received
                while True:
                    await socket.receive_from()
                    received += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(count)
                for _ in range(1000):
                    await socket.send_to(replay, a)
                    await trio.sleep(0.001)
                await trio.sleep(1.0)
                nursery.cancel_scope.cancel()
        assert received == 0
        assert punch_of(alice, bob).prover.statistics().replays >= 1000 - 1


async def test_fresh_probes_from_one_source_are_answered_within_its_rate(
    autojump_clock: MockClock,
) -> None:
    """A peer (it holds the key) floods fresh probes from one address, say to reflect answers
    at a victim there: over the 2 s of the flood and its aftermath the answers stay within the
    per-source burst and rate, each the size of a probe, plus a probe back a second. Before the
    limit each of the 1000 got an ACK."""
    async with open_world(traversal=QUICK) as world:
        _, alice, bob, _, _ = await direct_pair(world)
        with trio.fail_after(60):
            a = observed(alice)
            prover = punch_of(bob, alice).prover
            socket = await attacker_socket(world)
            received = 0

            async def count() -> None:
                nonlocal received
                while True:
                    await socket.receive_from()
                    received += 1

            async with trio.open_nursery() as nursery:
                nursery.start_soon(count)
                for _ in range(1000):
                    await socket.send_to(prover.probe(a, trio.current_time()), a)
                    await trio.sleep(0.001)
                await trio.sleep(1.0)
                nursery.cancel_scope.cancel()
        statistics = alice.coordinator.puncher.statistics()
        allowed = statistics.probe_answer_burst + 2.0 * statistics.probe_answer_rate
        assert received <= allowed + 3  # ACKs, and a probe back a second at most
        assert statistics.probes_unanswered >= 1000 - allowed
