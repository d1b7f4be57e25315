"""An attacker on the path of two directly connected full-cone peers (issue 11, points 8 and 11b).

The scenario both ``test_path_attacks.py`` and the ``attack_paths`` bench run: the attacker sits
at its own public address and talks to full-cone peers (their NATs let anyone in), so everything
it sends reaches them; it can drop what goes between them, replay a probe it captured, and
forward whatever either peer sends it to the other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

import trio

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
from .world import World

ATTACKER: Final[Address] = ("203.0.113.66", 4444)


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


@contextmanager
def capturing_probes() -> Iterator[list[tuple[Role, bytes]]]:
    """Every probe frame any prover makes while inside, with its maker's role: what an on-path
    attacker sees go by."""
    frames: list[tuple[Role, bytes]] = []
    original = PathProver.probe

    def recording(self: PathProver, address: Address, now: float) -> bytes:
        frame = original(self, address, now)
        frames.append((self.role, frame))
        return frame

    PathProver.probe = recording  # type: ignore[method-assign]
    try:
        yield frames
    finally:
        PathProver.probe = original  # type: ignore[method-assign]


def last_responder_probe(captured: list[tuple[Role, bytes]]) -> bytes:
    """The newest of bob's (the responder's) captured probes: the one the attacker replays."""
    return [frame for role, frame in captured if role is Role.RESPONDER][-1]


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


async def replay_and_forward(
    socket: UdpEndpoint,
    nat: NatBox,
    a: Address,
    b: Address,
    replay: bytes,
    connection: Connection,
    accepted: Connection,
) -> None:
    """The issue's attack: drop what goes between alice (at ``a``, behind ``nat``) and bob (at
    ``b``) directly for a while, so both paths go quiet, replay ``replay`` (one of bob's probes,
    captured on the way) to alice from the attacker's address ten times, and forward whatever
    either peer sends it to the other, while 20 messages go each way on the connection."""
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forward, socket, a, b)
        nursery.start_soon(cut, nat, b, 4 * QUICK.consent_interval)
        await trio.sleep(2 * QUICK.consent_interval)  # both paths are quiet now
        for _ in range(10):  # delivered to alice long ago, replayed now and then
            await socket.send_to(replay, a)
            await trio.sleep(0.5)
        await both_ways(connection, accepted, 20, 0.1)
        nursery.cancel_scope.cancel()


async def flood(socket: UdpEndpoint, frame: Callable[[], bytes], to: Address, count: int) -> int:
    """Send ``count`` frames made by ``frame`` to ``to``, evenly over one second, wait one
    second more, and return how many datagrams came back to ``socket`` meanwhile."""
    received = 0

    async def tally() -> None:
        nonlocal received
        while True:
            await socket.receive_from()
            received += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(tally)
        for _ in range(count):
            await socket.send_to(frame(), to)
            await trio.sleep(1 / count)
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    return received
