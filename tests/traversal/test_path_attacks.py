"""Attacks on punched paths, end to end on the simulated internet (issue 11, points 8 and 11b).

The attacker sits at its own public address and talks to full-cone peers (their NATs let
anyone in), so everything it sends reaches them: replays of a captured probe, a probe it
withheld from its peer, and whatever either peer sends it, forwarded to the other.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from trio.testing import MockClock

from macula_nat.net.address import Address
from macula_nat.system import NatSystem
from macula_nat.traversal.punch_wire import Role

from .attacker import (
    ATTACKER,
    attacker_socket,
    capturing_probes,
    direct_pair,
    flood,
    forward,
    last_responder_probe,
    observed,
    punch_of,
    replay_and_forward,
)
from .test_paths import QUICK, both_ways
from .world import open_world


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
def captured() -> Iterator[list[tuple[Role, bytes]]]:
    """Every probe frame any prover makes, with its maker's role: what an on-path attacker
    sees go by."""
    with capturing_probes() as frames:
        yield frames


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
            replay = last_responder_probe(captured)
            socket = await attacker_socket(world)
            await replay_and_forward(socket, nat, a, b, replay, connection, accepted)
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
            replay = last_responder_probe(captured)
            socket = await attacker_socket(world)
            received = await flood(socket, lambda: replay, a, 1000)
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
            received = await flood(socket, lambda: prover.probe(a, trio.current_time()), a, 1000)
        statistics = alice.coordinator.puncher.statistics()
        allowed = statistics.probe_answer_burst + 2.0 * statistics.probe_answer_rate
        assert received <= allowed + 3  # ACKs, and a probe back a second at most
        assert statistics.probes_unanswered >= 1000 - allowed
