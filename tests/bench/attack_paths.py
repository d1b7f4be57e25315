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

from macula_nat.net.address import Address
from macula_nat.traversal.prover import PathProver
from macula_nat.traversal.punch_wire import FRAME_SIZE, KEY_SIZE, LINK_ID_SIZE, Role

from ..traversal.attacker import (
    ATTACKER,
    attacker_socket,
    capturing_probes,
    direct_pair,
    flood,
    last_responder_probe,
    observed,
    punch_of,
    replay_and_forward,
)
from ..traversal.test_paths import QUICK
from ..traversal.world import open_world
from .timing import Figure, now

FLOOD: Final = 1000


@attrs.frozen
class Simulated:
    moved: int
    """Nodes (of 2) whose path, proofs or targets hold the attacker's address afterwards."""
    replays_answered: int
    fresh_answered: int
    fresh_seconds: float
    """Simulated seconds from the flood's first probe to the end of the count."""


async def _simulated() -> Simulated:
    with capturing_probes() as captured:
        async with open_world(traversal=QUICK) as world:
            nat, alice, bob, connection, accepted = await direct_pair(world)
            a, b = observed(alice), observed(bob)
            socket = await attacker_socket(world)
            replay = last_responder_probe(captured)
            with trio.fail_after(120):
                await replay_and_forward(socket, nat, a, b, replay, connection, accepted)
                moved = 0
                for node, peer in ((alice, bob), (bob, alice)):
                    punch = punch_of(node, peer)
                    held = (punch.link.remote_address, *punch.proofs, *punch.targets)
                    moved += ATTACKER in held
                replies = await flood(socket, lambda: replay, a, FLOOD)
                prover = punch_of(bob, alice).prover
                start = trio.current_time()
                fresh = await flood(socket, lambda: prover.probe(a, trio.current_time()), a, FLOOD)
                seconds = trio.current_time() - start
    return Simulated(moved, replies, fresh, seconds)


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


def _bytes_answered(of: str, answered: int) -> Figure:
    """What a flood of ``FLOOD`` frames got back, in bytes against its own: above 1x, an
    amplifier."""
    return Figure(
        f"under attack: bytes answered / bytes of {of}",
        answered * FRAME_SIZE / (FLOOD * FRAME_SIZE),
        "x",
        goal="<= 1x",
    )


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
        _bytes_answered("replays", simulated.replays_answered),
        Figure(
            f"under attack: answers to {FLOOD} fresh probes from one source in 1 s",
            simulated.fresh_answered,
            "answers",
            goal=f"<= {allowed:g} (burst {burst:g} + {limit:g}/s x {seconds:g} s)",
        ),
        _bytes_answered("fresh probes (one source)", simulated.fresh_answered),
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
