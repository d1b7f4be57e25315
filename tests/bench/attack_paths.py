"""Punch probes and path adoption under attack (issue 11, points 8 and 11b).

Simulated (in-process internet under a MockClock, in a thread of its own so its virtual time
does not touch this run's clock): two full-cone nodes talk directly, and an attacker at its own
public address (their NATs let it in)

- drops what goes between the two directly for a while (both paths go quiet), replays one of
  bob's probes, captured on the way, to alice, and forwards whatever either node sends it to the
  other: how many of the two nodes end up with their path, a proof or a target at the attacker's
  address;
- replays a captured probe 1,000 times in one second: how many answers come back, and their
  bytes against the replays';
- floods 1,000 fresh probes in a second (the key holder, say to reflect answers at a victim):
  the answers a second, and their bytes against the probes'.

Pure: what a refused replay costs :meth:`PathProver.receive`, against a fresh probe answered.
"""

from __future__ import annotations

from typing import Final

import attrs
import trio
import trio.testing

from macula_nat.connection import Connection
from macula_nat.net.address import Address
from macula_nat.net.endpoint import UdpEndpoint
from macula_nat.net.sim import Preset, add_site
from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.interface import Interface
from macula_nat.net.sim.nat_box import NatBox
from macula_nat.sim_world import World, open_world
from macula_nat.system import NatSystem
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.prover import PathProver
from macula_nat.traversal.punch_wire import FRAME_SIZE, KEY_SIZE, LINK_ID_SIZE, Role
from macula_nat.traversal.puncher import Punch

from .timing import Figure, now

ATTACKER: Final[Address] = ("203.0.113.66", 4444)
FLOOD: Final = 1000
QUICK: Final = TraversalConfig(consent_interval=1.0, consent_timeout=3.5, retry_interval=5.0)


@attrs.frozen
class Simulated:
    moved: int
    """Nodes (of 2) whose path, proofs or targets hold the attacker's address afterwards."""
    replays_answered: int
    fresh_answered: int
    fresh_seconds: float
    """Simulated seconds from the flood's first probe to the end of the count."""


def _observed(node: NatSystem) -> Address:
    assert node.relays.client is not None
    registration = node.relays.client.registration.value
    assert registration is not None
    return registration.observed


def _punch(node: NatSystem, peer: NatSystem) -> Punch:
    punch = node.coordinator.puncher.find(peer.node_id)
    assert punch is not None
    return punch


async def _messages(a: Connection, b: Connection, count: int) -> None:
    async def one_way(sender: Connection, receiver: Connection) -> None:
        for i in range(count):
            await sender.send_message(b"%d" % i)
            assert await receiver.receive_message() == b"%d" % i
            await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one_way, a, b)
        nursery.start_soon(one_way, b, a)


async def _cut(nat: NatBox, peer: Address, seconds: float) -> None:
    """For ``seconds``, ``nat`` passes nothing to or from ``peer``."""
    arrived = nat._packet_arrived

    def dropping(interface: Interface, packet: Datagram) -> None:
        if peer not in (packet.source, packet.destination):
            arrived(interface, packet)

    nat._packet_arrived = dropping  # type: ignore[method-assign]
    await trio.sleep(seconds)
    del nat._packet_arrived


async def _forward(socket: UdpEndpoint, a: Address, b: Address) -> None:
    while True:
        data, source = await socket.receive_from()
        if source in (a, b):
            await socket.send_to(data, b if source == a else a)


async def _count(socket: UdpEndpoint, into: list[int]) -> None:
    while True:
        await socket.receive_from()
        into[0] += 1


async def _pair(world: World) -> tuple[NatBox, NatSystem, NatSystem, Connection, Connection]:
    site = add_site(world.internet.public, Preset.FULL_CONE, link=world.site_link)
    alice = await world.node_at(site.host)
    bob = await world.node(Preset.FULL_CONE, "bob")
    with trio.fail_after(30):
        connection = await alice.connector.connect(bob.node_id)
        accepted = await bob.connector.accept()
        await _messages(connection, accepted, 10)
    return site.nats[0], alice, bob, connection, accepted


async def _simulated() -> Simulated:
    captured: list[bytes] = []
    original = PathProver.probe

    def recording(self: PathProver, address: Address, at: float) -> bytes:
        frame = original(self, address, at)
        if self.role is Role.RESPONDER:
            captured.append(frame)
        return frame

    PathProver.probe = recording  # type: ignore[method-assign]
    try:
        async with open_world(traversal=QUICK) as world:
            nat, alice, bob, connection, accepted = await _pair(world)
            a, b = _observed(alice), _observed(bob)
            host = world.internet.add_host([ATTACKER[0]], link=world.site_link)
            socket = await host.bind(ATTACKER)
            replay = captured[-1]
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_forward, socket, a, b)
                    nursery.start_soon(_cut, nat, b, 4 * QUICK.consent_interval)
                    await trio.sleep(2 * QUICK.consent_interval)
                    for _ in range(10):
                        await socket.send_to(replay, a)
                        await trio.sleep(0.5)
                    await _messages(connection, accepted, 20)
                    nursery.cancel_scope.cancel()
                moved = 0
                for node, peer in ((alice, bob), (bob, alice)):
                    punch = _punch(node, peer)
                    held = (punch.link.remote_address, *punch.proofs, *punch.targets)
                    moved += ATTACKER in held
                replies = [0]
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_count, socket, replies)
                    for _ in range(FLOOD):
                        await socket.send_to(replay, a)
                        await trio.sleep(1 / FLOOD)
                    await trio.sleep(1.0)
                    nursery.cancel_scope.cancel()
                fresh = [0]
                prover = _punch(bob, alice).prover
                start = trio.current_time()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_count, socket, fresh)
                    for _ in range(FLOOD):
                        await socket.send_to(prover.probe(a, trio.current_time()), a)
                        await trio.sleep(1 / FLOOD)
                    await trio.sleep(1.0)
                    nursery.cancel_scope.cancel()
                seconds = trio.current_time() - start
    finally:
        PathProver.probe = original  # type: ignore[method-assign]
    return Simulated(moved, replies[0], fresh[0], seconds)


def _simulated_in_own_run() -> Simulated:
    return trio.run(_simulated, clock=trio.testing.MockClock(autojump_threshold=0))


def _receive_cost(n: int) -> tuple[float, float]:
    """Seconds per :meth:`PathProver.receive` of a replay (refused) and of a fresh probe."""
    link, key = bytes(LINK_ID_SIZE), bytes(KEY_SIZE)
    alice = PathProver(link, key, Role.INITIATOR)
    bob = PathProver(link, key, Role.RESPONDER, max_seen=n + 1)
    source: Address = ("198.51.100.1", 4000)
    probes = [alice.probe(("203.0.113.2", 5000), 0.0) for _ in range(n)]
    start = now()
    for probe in probes:
        bob.receive(probe, source, 0.0)
    fresh = now() - start
    start = now()
    for probe in probes:
        bob.receive(probe, source, 0.0)
    return (now() - start) / n, fresh / n


async def run() -> list[Figure]:
    simulated = await trio.to_thread.run_sync(_simulated_in_own_run)
    replay, fresh = min(_receive_cost(5_000) for _ in range(3))
    limit, burst = QUICK.probe_answer_rate, QUICK.probe_answer_burst
    seconds = simulated.fresh_seconds
    allowed = burst + limit * seconds
    return [
        Figure(
            "under attack: nodes (of 2) diverted by a replayed, forwarded probe",
            simulated.moved,
            "nodes",
            goal="0",
        ),
        Figure(
            f"under attack: answers to {FLOOD} replays in 1 s, per second",
            simulated.replays_answered / 2.0,
            "answer/s",
            goal=f"rate-limited (<= {limit:g}/s sustained): replays get none",
        ),
        Figure(
            "under attack: bytes answered / bytes of replays",
            simulated.replays_answered * FRAME_SIZE / (FLOOD * FRAME_SIZE),
            "x",
            goal="<= 1x",
        ),
        Figure(
            f"under attack: answers to {FLOOD} fresh probes from one source in 1 s",
            simulated.fresh_answered,
            "answers",
            goal=f"<= {allowed:g} (burst {burst:g} + {limit:g}/s x {seconds:g} s)",
        ),
        Figure(
            "under attack: bytes answered / bytes of fresh probes (one source)",
            simulated.fresh_answered * FRAME_SIZE / (FLOOD * FRAME_SIZE),
            "x",
            goal="<= 1x",
        ),
        Figure(
            "under attack: PathProver.receive of a replay (refused), vs a fresh probe",
            replay * 1e6,
            "us",
            fresh * 1e6,
            "<= 1x",
        ),
    ]


if __name__ == "__main__":

    async def _main() -> None:
        for figure in await run():
            print(figure.render(), flush=True)

    trio.run(_main)
