"""Fresh mappings for port prediction: which observer to ask (pure), and end to end that a
sequential NAT whose port counter moved since registration still gets punched."""

from __future__ import annotations

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio.testing import MockClock

from macula_nat.connection.link import ConnectionMethod
from macula_nat.nat.stun_client import Asked
from macula_nat.net.sim import Preset, add_site
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.fresh_mapping import is_news, pick

from .world import open_world

A = ("192.0.2.1", 3478)
B = ("192.0.2.2", 3478)
C = ("192.0.2.3", 3478)
SEEN = ("203.0.113.5", 40000)


def test_pick_takes_a_destination_never_asked_then_the_one_asked_longest_ago() -> None:
    book = {A: Asked(10.0, SEEN), B: Asked(5.0, SEEN)}
    assert pick([A, B, C], book.get, now=100.0, reuse_after=60.0) == C
    assert pick([A, B], book.get, now=100.0, reuse_after=60.0) == B
    assert pick([A, B], book.get, now=65.0, reuse_after=60.0) == B  # 60 s since
    assert pick([A, B], book.get, now=64.0, reuse_after=60.0) is None  # both too recent
    assert pick([], book.get, now=100.0, reuse_after=60.0) is None


def test_an_answer_repeating_the_previous_one_is_stale() -> None:
    assert is_news(None, SEEN)
    assert is_news(Asked(1.0, None), SEEN)  # asked, never answered
    assert not is_news(Asked(1.0, SEEN), SEEN)  # the old mapping still stood
    assert is_news(Asked(1.0, SEEN), ("203.0.113.5", 40007))


@given(
    st.dictionaries(st.sampled_from([A, B, C]), st.floats(min_value=0, max_value=1000), max_size=3),
    st.floats(min_value=0, max_value=2000),
    st.floats(min_value=0, max_value=500),
)
def test_pick_never_returns_a_destination_asked_within_the_reuse_interval(
    asked_at: dict[tuple[str, int], float], now: float, reuse_after: float
) -> None:
    book = {destination: Asked(at, None) for destination, at in asked_at.items()}
    chosen = pick([A, B, C], book.get, now, reuse_after)
    if chosen is not None and chosen in book:
        assert book[chosen].at <= now - reuse_after
        assert all(book[chosen].at <= book[d].at for d in (A, B, C) if d in book)
    elif chosen is None:
        assert len(book) == 3 and all(a.at > now - reuse_after for a in book.values())


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
        for i in range(drift):  # another program behind the same NAT, over the next minute
            await other.send_to(b"x", (f"198.51.100.{1 + i}", 9000))
        # past the reuse interval: the detector asked the observer from the node's socket
        await trio.sleep(TraversalConfig().mapping_reuse)
        started = trio.current_time()
        connection = await alice.connector.connect(bob.node_id)
        await bob.connector.accept()
        with trio.move_on_after(5):
            await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
        assert connection.info().connection_method is ConnectionMethod.PUNCHED
        assert trio.current_time() - started <= 0.3


@pytest.mark.parametrize("earlier", ["it", "its-peer"])
async def test_a_sequential_pair_is_punched_after_an_earlier_connection(
    earlier: str, autojump_clock: MockClock
) -> None:
    """A punch opens a mapping toward each address probed, so a sequential NAT's counter has
    moved past the registration's port once its node (``it``) or the peer (``its-peer``) has
    connected before, within ``mapping_reuse`` of detection, when every observer address was
    asked lately: the fresh mapping then comes from a new socket, and the pair still punches."""
    async with open_world(seed=3) as world:
        alice = await world.node(Preset.SYMMETRIC_SEQUENTIAL, "alice")
        bob = await world.node(Preset.SYMMETRIC_SEQUENTIAL, "bob")
        carol = await world.node(Preset.SYMMETRIC_SEQUENTIAL, "carol")
        first, second = (
            ((alice, bob), (alice, carol)) if earlier == "it" else ((bob, carol), (alice, carol))
        )
        for a, b in (first, second):
            started = trio.current_time()
            connection = await a.connector.connect(b.node_id)
            await b.connector.accept()
            with trio.move_on_after(5):
                await connection.method.wait_value(lambda m: m is ConnectionMethod.PUNCHED)
            assert connection.info().connection_method is ConnectionMethod.PUNCHED
            assert trio.current_time() - started <= 0.3
