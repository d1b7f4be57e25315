"""The iterative lookup: its rules by hand, then convergence in simulated networks."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.lookup import Lookup
from macula_nat.dht.node_id import NodeId
from macula_nat.dht.routing_table import K

from .simulation import Network, figures
from .strategies import node_ids

TARGET = NodeId(0)


def node(distance: int) -> NodeInfo:
    """A node at ``distance`` from TARGET (= 0)."""
    return NodeInfo(NodeId(distance), (f"10.0.{distance >> 8 & 255}.{distance & 255}", 6881))


def ids(nodes: list[NodeInfo]) -> list[int]:
    return [n.node_id.value for n in nodes]


def test_no_seeds_is_done_at_once() -> None:
    lookup = Lookup(TARGET, [])
    assert lookup.done
    assert lookup.next_queries(0.0) == []
    assert lookup.result == []
    assert lookup.statistics().hops == 0


def test_alpha_nearest_first_and_nearer_answers_jump_the_queue() -> None:
    lookup = Lookup(TARGET, [node(d) for d in (90, 10, 80, 20, 70, 30)])
    first = lookup.next_queries(0.0)
    assert ids(first) == [10, 20, 30]
    assert lookup.next_queries(0.0) == []  # three in flight
    assert lookup.on_response(first[0], [node(5), node(6), node(100)])
    assert ids(lookup.next_queries(1.0)) == [5]
    assert lookup.on_response(first[1], [])
    assert lookup.on_response(first[2], [])
    assert ids(lookup.next_queries(2.0)) == [6, 70]
    assert ids(lookup.in_flight) == [5, 6, 70]


def test_done_when_the_k_nearest_answered() -> None:
    seeds = [node(d) for d in range(1, 13)]
    lookup = Lookup(TARGET, seeds, k=4, alpha=2)
    for _ in range(10):
        batch = lookup.next_queries(0.0)
        for n in batch:
            lookup.on_response(n, [])
        if not batch:
            break
    assert lookup.done
    assert ids(lookup.result) == [1, 2, 3, 4]
    assert lookup.statistics().queries == 4  # nodes 5..12 never needed asking


def test_timeouts_drop_nodes_and_pull_in_the_next() -> None:
    lookup = Lookup(TARGET, [node(d) for d in (1, 2, 3, 4)], k=2, alpha=2)
    one, two = lookup.next_queries(0.0)
    assert lookup.on_timeout(one)
    assert not lookup.on_timeout(one)  # already failed
    assert not lookup.on_response(one, [node(0)])  # too late: ignored
    assert lookup.on_response(two, [])
    assert ids(lookup.next_queries(1.0)) == [3]
    assert not lookup.done
    lookup.on_response(node(3), [])
    assert lookup.done
    assert ids(lookup.result) == [2, 3]
    stats = lookup.statistics()
    assert (stats.queries, stats.responses, stats.timeouts) == (3, 2, 1)


def test_unsolicited_answers_change_nothing() -> None:
    lookup = Lookup(TARGET, [node(1)])
    assert not lookup.on_response(node(1), [node(0)])  # not asked yet
    assert not lookup.on_response(node(7), [node(0)])  # never heard of
    assert ids(lookup.next_queries(0.0)) == [1]


def test_slow_queries_free_their_slot() -> None:
    lookup = Lookup(TARGET, [node(d) for d in (1, 2, 3)], alpha=1, slow_after=2.0)
    assert ids(lookup.next_queries(0.0)) == [1]
    assert lookup.next_queries(1.9) == []
    assert ids(lookup.next_queries(2.0)) == [2]
    assert lookup.on_response(node(1), [])  # a late answer still counts
    assert ids(lookup.in_flight) == [2]


def test_a_silent_node_does_not_hold_up_the_end_of_a_lookup() -> None:
    """A slow node no longer counts among the k nearest: the lookup is done without it (a gone
    node costs ``slow_after``, not the whole query timeout), and it wakes the driver in time."""
    lookup = Lookup(TARGET, [node(d) for d in (1, 2, 3)], k=2, alpha=3, slow_after=0.1)
    assert ids(lookup.next_queries(0.0)) == [1, 2]
    assert lookup.slow_at() == 0.1
    lookup.on_response(node(2), [])
    assert not lookup.done  # node 1 may still answer
    assert ids(lookup.next_queries(0.1)) == [3]  # node 1 turned slow: the next takes its place
    lookup.on_response(node(3), [])
    assert lookup.done
    assert ids(lookup.result) == [2, 3]
    assert ids(lookup.in_flight) == [1]  # still awaited, no longer waited for
    assert lookup.slow_at() is None


def test_a_slow_answer_that_comes_in_time_is_used() -> None:
    lookup = Lookup(TARGET, [node(d) for d in (1, 2)], k=2, alpha=2, slow_after=0.1)
    lookup.next_queries(0.0)
    lookup.on_response(node(2), [])
    lookup.next_queries(0.2)
    assert lookup.on_response(node(1), [node(0)])  # late, and it knew a nearer node
    assert not lookup.done
    assert ids(lookup.next_queries(0.3)) == [0]


def test_each_query_turns_slow_after_its_own_time() -> None:
    """Per node: a near node (small RTO) that went silent is passed after its own time, while
    a far one (big RTO) still holds its slot past the time a node-wide RTO would give both."""
    wait = {1: 0.05, 2: 0.5, 3: 1.0, 4: 1.0}
    lookup = Lookup(
        TARGET,
        [node(d) for d in (1, 2, 3, 4)],
        k=3,
        alpha=2,
        slow_after=lambda n: wait[n.node_id.value],
    )
    assert ids(lookup.next_queries(0.0)) == [1, 2]
    assert lookup.slow_at() == 0.05
    assert lookup.next_queries(0.04) == []
    assert ids(lookup.next_queries(0.05)) == [3]  # node 1 is slow after its own 0.05 s
    assert lookup.slow_at() == 0.5  # node 2's time, not node 3's 0.05 + 1.0
    assert lookup.next_queries(0.3) == []  # node 2 (far) still holds its slot at 0.3 s
    assert lookup.on_response(node(2), [])
    assert ids(lookup.next_queries(0.35)) == [4]
    assert lookup.slow_at() == 1.05
    assert lookup.on_response(node(1), [])  # the slow near node's late answer still counts
    assert ids(lookup.in_flight) == [3, 4]


def test_a_bad_slow_after_is_refused_before_anything_is_sent() -> None:
    with pytest.raises(ValueError, match="slow_after"):
        Lookup(TARGET, [node(1)], slow_after=-1.0)
    with pytest.raises(ValueError, match="slow_after"):
        Lookup(TARGET, [node(1)], slow_after=math.nan)
    lookup = Lookup(TARGET, [node(1), node(2)], slow_after=lambda n: 1.0 - n.node_id.value)
    with pytest.raises(ValueError, match="slow_after"):
        lookup.next_queries(0.0)  # node 2's is -1.0
    assert lookup.statistics().queries == 0
    assert lookup.in_flight == []


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.floats(0.0, 3.0), min_size=1, max_size=24),
    st.integers(1, 4),
    st.lists(
        st.tuples(st.floats(0.0, 1.0), st.sampled_from(["wait", "answer", "fail"])), max_size=60
    ),
)
def test_slots_are_held_each_for_its_own_slow_after(
    waits: list[float], alpha: int, steps: list[tuple[float, str]]
) -> None:
    """Whatever the per-node times and events: a query holds one of the ``alpha`` slots from
    when it is handed out until exactly its own ``slow_after`` later (or its answer), new ones
    go out only into free slots, and `Lookup.slow_at` is the earliest of those times."""
    lookup = Lookup(
        TARGET,
        [node(d) for d in range(1, len(waits) + 1)],
        k=4,
        alpha=alpha,
        slow_after=lambda n: waits[n.node_id.value - 1],
    )
    slow_at: dict[int, float] = {}  # outstanding queries: when each turns slow
    holding: set[int] = set()  # those not yet past it when the lookup last looked
    now = 0.0
    for gap, event in steps:
        now += gap
        holding = {d for d in holding if slow_at[d] > now}
        sent = ids(lookup.next_queries(now))
        assert len(sent) <= alpha - len(holding)
        for d in sent:
            slow_at[d] = now + waits[d - 1]
        holding |= set(sent)
        assert lookup.slow_at() == min((slow_at[d] for d in holding), default=None)
        assert sorted(ids(lookup.in_flight)) == sorted(slow_at)
        if event != "wait" and slow_at:
            oldest = min(slow_at, key=slow_at.__getitem__)
            del slow_at[oldest]
            holding.discard(oldest)
            if event == "answer":
                assert lookup.on_response(node(oldest), [])
            else:
                assert lookup.on_timeout(node(oldest))


def test_exclude_and_duplicates() -> None:
    lookup = Lookup(TARGET, [node(1), node(1), node(2)], exclude=NodeId(2))
    assert lookup.statistics().candidates == 1
    (first,) = lookup.next_queries(0.0)
    lookup.on_response(first, [node(2), node(1), node(3)])
    assert lookup.statistics().candidates == 2


def test_hops_count_round_trips_behind_the_result() -> None:
    lookup = Lookup(TARGET, [node(100)], k=1)
    (seed,) = lookup.next_queries(0.0)
    lookup.on_response(seed, [node(50)])
    (second,) = lookup.next_queries(0.0)
    lookup.on_response(second, [node(10)])
    (third,) = lookup.next_queries(0.0)
    lookup.on_response(third, [])
    assert lookup.done
    assert lookup.statistics().hops == 3


def test_far_candidates_are_forgotten_beyond_the_cap() -> None:
    lookup = Lookup(TARGET, [node(d) for d in range(1, 40)], k=2, max_candidates=10)
    assert lookup.statistics().candidates == 10
    with pytest.raises(ValueError):
        Lookup(TARGET, [], k=8, max_candidates=4)
    with pytest.raises(ValueError):
        Lookup(TARGET, [], alpha=0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(node_ids, min_size=2, max_size=120, unique=True), node_ids, st.data())
def test_lookups_find_exactly_the_k_closest(
    network_ids: list[NodeId], target: NodeId, data: st.DataObject
) -> None:
    """With full tables and no failures, every lookup ends at the true K closest."""
    network = Network(network_ids, random.Random(data.draw(st.integers(0, 2**32))))
    start = data.draw(st.sampled_from(network_ids))
    run = network.lookup(start, target)
    assert run.done
    assert run.result == run.expected
    assert run.queries <= len(network_ids) - 1


@pytest.fixture(scope="module")
def thousand() -> Network:
    rng = random.Random(1000)
    return Network([NodeId.random(rng) for _ in range(1000)], rng)


def test_thousand_nodes_converge_in_fewer_than_log2_n_rounds(thousand: Network) -> None:
    result = figures(thousand, 300, random.Random(1))
    assert result.completed == 1.0
    assert result.exact == 1.0
    assert result.mean_rounds < math.log2(1000) / 2
    assert result.max_rounds <= math.log2(1000)
    assert result.mean_hops <= result.mean_rounds
    assert result.mean_queries < 2 * K


def test_thousand_nodes_with_a_fifth_dead(thousand: Network) -> None:
    rng = random.Random(2)
    result = figures(thousand.with_dead(200, rng), 300, rng)
    assert result.completed == 1.0
    assert result.found_closest >= 0.99
    assert result.mean_overlap >= 7.0
    assert result.mean_rounds < math.log2(1000)
    assert result.mean_queries < 3 * K
