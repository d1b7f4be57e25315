"""Fresh mappings for port prediction: which observer to ask (pure), and end to end that a
sequential NAT whose port counter moved since registration still gets punched."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.net.sim import Preset, add_site
from macula_nat.traversal.fresh_mapping import MAX_TARGETS, MappingTargets

from .world import open_world

A = ("192.0.2.1", 3478)
B = ("192.0.2.2", 3478)


def test_pick_takes_the_destination_asked_longest_ago_and_waits_out_reuse() -> None:
    targets = MappingTargets(reuse_after=60.0)
    assert targets.pick(0.0) is None  # nothing known
    targets.add(A)
    targets.add(B)
    targets.add(A)  # known: no-op
    first = targets.pick(0.0)
    second = targets.pick(1.0)
    assert {first, second} == {A, B}
    assert targets.pick(59.0) is None  # both asked within a minute
    assert targets.pick(60.0) == first
    assert targets.pick(61.0) == second


def test_an_answer_repeating_the_previous_one_is_stale() -> None:
    targets = MappingTargets(reuse_after=0.0)
    targets.add(A)
    assert targets.answer(A, ("203.0.113.5", 40000)) == ("203.0.113.5", 40000)
    assert targets.answer(A, ("203.0.113.5", 40000)) is None  # the old mapping still stood
    assert targets.answer(A, ("203.0.113.5", 40007)) == ("203.0.113.5", 40007)


def test_a_negative_reuse_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="reuse_after"):
        MappingTargets(reuse_after=-1.0)


@given(st.lists(st.integers(min_value=1, max_value=65535), max_size=40))
def test_destinations_are_bounded(ports: list[int]) -> None:
    targets = MappingTargets(reuse_after=0.0)
    for port in ports:
        targets.add(("192.0.2.9", port))
    picked = {targets.pick(float(i)) for i in range(2 * MAX_TARGETS)}
    assert len(picked - {None}) == min(len(set(ports)), MAX_TARGETS)


@pytest.mark.parametrize("drift", [0, 30])
async def test_a_sequential_nat_is_punched_after_its_counter_moved(
    drift: int, autojump_clock: MockClock
) -> None:
    """Other flows through the sequential NAT after registration (``drift`` new ports) would
    put the next mapping past every port predicted from the relay's view; the fresh mapping
    taken before the Offer keeps the pair punched, as fast as without the drift."""
    async with open_world(seed=3) as world:
        site = add_site(
            world.internet.public, Preset.SYMMETRIC_SEQUENTIAL, name="alice", link=world.site_link
        )
        alice = await world.node_at(site.host)
        bob = await world.node(Preset.PORT_RESTRICTED_CONE, "bob")
        other = await site.host.bind((site.host.addresses[0], 0))
        for i in range(drift):  # another program behind the same NAT
            await other.send_to(b"x", (f"198.51.100.{1 + i}", 9000))
        started = trio.current_time()
        connection = await alice.connector.connect(bob.node_id)
        await bob.connector.accept()
        with trio.move_on_after(5):
            await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
        assert connection.info().connection_method is ConnectionMethod.PUNCHED
        assert trio.current_time() - started <= 0.3
