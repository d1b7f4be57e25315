"""The routing table against a brute-force model, and BEP 5's node states by hand."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.node_id import ID_BITS, NodeId
from macula_nat.dht.routing_table import K, NodeState, Outcome, RoutingEntry, RoutingTable
from macula_nat.net.rtt import RttEstimate

from .strategies import node_ids

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWN = NodeId(0)


def info(node_id: NodeId | int, port: int = 6881) -> NodeInfo:
    if isinstance(node_id, int):
        node_id = NodeId(node_id)
    return NodeInfo(
        node_id, (f"10.{port % 256}.{(node_id.value >> 8) % 256}.{node_id.value % 256}", port)
    )


def at_prefix(own: NodeId, shared: int, low_bits: int) -> NodeId:
    """An id sharing exactly ``shared`` leading bits with ``own``."""
    flip = 1 << (ID_BITS - 1 - shared)
    return NodeId((own.value ^ flip) & ~(flip - 1) | (low_bits & (flip - 1)))


@st.composite
def clustered_ids(draw: st.DrawFn, own: NodeId) -> list[NodeId]:
    """Ids near ``own`` as often as far from it, so the table splits deep."""
    shared = st.one_of(st.integers(0, 6), st.integers(0, ID_BITS - 1))
    ids = draw(
        st.lists(
            st.builds(at_prefix, st.just(own), shared, st.integers(0, (1 << ID_BITS) - 1)),
            max_size=120,
        )
    )
    return ids


def expected_depth(own: NodeId, offered: set[NodeId]) -> int:
    """BEP 5's splits, order-independent for good nodes: the last bucket (ids sharing at least
    depth - 1 bits with ours) splits whenever it would hold more than K."""
    for depth in range(1, ID_BITS):
        if sum(own.common_prefix_length(n) >= depth - 1 for n in offered) <= K:
            return depth
    return ID_BITS


@FAST
@given(st.data())
def test_table_matches_brute_force_model(data: st.DataObject) -> None:
    own = data.draw(node_ids)
    offered_ids = data.draw(clustered_ids(own))
    table = RoutingTable(own, 0.0)
    for node_id in offered_ids:
        table.on_response(info(node_id), 0.0)
    offered = set(offered_ids) - {own}

    depth = expected_depth(own, offered)
    assert table.depth == depth
    buckets = table.buckets()
    # The ranges tile the id space, and ours is in the last bucket.
    edges = sorted((b.low, b.high) for b in buckets)
    assert edges[0][0] == 0 and edges[-1][1] == 1 << ID_BITS
    assert all(a[1] == b[0] for a, b in itertools.pairwise(edges))
    assert buckets[-1].low <= own.value < buckets[-1].high
    for bucket in buckets:
        ids = {entry.node.node_id for entry in bucket.nodes}
        assert len(ids) <= K
        assert all(bucket.low <= n.value < bucket.high for n in ids)
        if bucket.index < depth - 1:
            region = {n for n in offered if own.common_prefix_length(n) == bucket.index}
            assert len(ids) == min(K, len(region))
        else:
            region = {n for n in offered if own.common_prefix_length(n) >= bucket.index}
            assert ids == region or depth == ID_BITS
        assert ids <= region
        cached = {entry.node.node_id for entry in bucket.replacements}
        assert cached <= region - ids
    assert len(table) == sum(len(b.nodes) for b in buckets)

    target = data.draw(node_ids)
    count = data.draw(st.integers(0, 20))
    everyone = [entry.node for entry in table.entries()]
    nearest = sorted(everyone, key=lambda node: node.node_id.distance(target))[:count]
    assert table.closest(target, count) == nearest
    assert table.closest_good(target, 0.0, count) == nearest


@FAST
@given(node_ids, st.lists(st.tuples(st.integers(0, 40), st.integers(0, 3), st.floats(0, 400))))
def test_invariants_under_any_sequence_of_events(
    own: NodeId, events: list[tuple[int, int, float]]
) -> None:
    """Answers, queries, read-only queries and failures in any order, with time passing."""
    table = RoutingTable(own, 0.0, replacements=3)
    pool = [at_prefix(own, n % 5, n * 0x9E3779B97F4A7C15) for n in range(41)]
    now = 0.0
    for which, kind, step in events:
        now += step
        node = info(pool[which])
        if kind == 0:
            assert table.on_response(node, now) is not Outcome.IGNORED
            entry = table.entry(node.node_id)
            assert entry is None or table.state_of(entry, now) is NodeState.GOOD
        elif kind == 1:
            table.on_query(node, now)
        elif kind == 2:
            assert table.on_query(node, now, read_only=True) is Outcome.IGNORED
        else:
            table.on_failure(node.node_id, now)
        seen: set[NodeId] = set()
        for bucket in table.buckets():
            ids = [entry.node.node_id for entry in bucket.nodes]
            cached = [entry.node.node_id for entry in bucket.replacements]
            assert len(ids) <= K and len(cached) <= 3
            assert not set(ids) & set(cached)
            assert not seen & (set(ids) | set(cached))
            seen |= set(ids) | set(cached)
            assert all(table.bucket_index(n) == bucket.index for n in ids + cached)
            if bucket.replacements and len(bucket.nodes) < K:
                pytest.fail("a bucket with room left a replacement waiting")
        assert own not in seen
        for node in table.closest(own, 50):
            entry = table.entry(node.node_id)
            assert entry is not None and table.state_of(entry, now) is not NodeState.BAD


def held(table: RoutingTable) -> dict[NodeId, RoutingEntry]:
    """Every entry the table holds, in its buckets or their replacement caches."""
    return {
        entry.node.node_id: entry
        for bucket in table.buckets()
        for entry in bucket.nodes + bucket.replacements
    }


@FAST
@given(
    node_ids,
    st.lists(
        st.tuples(st.integers(0, 29), st.integers(0, 3), st.floats(0.001, 0.5)),
        min_size=20,
        max_size=200,
    ),
)
def test_each_entry_keeps_the_round_trips_measured_since_it_came_in(
    own: NodeId, events: list[tuple[int, int, float]]
) -> None:
    """Answers with their round trips, queries and failures in any order: each entry's
    estimate is RFC 6298's over exactly the samples taken since the table last took the node
    in (it survives updates, failures and promotion from the cache), starting from the
    variation measured on other contacts; a node the table does not hold gets none: nothing is
    kept for it."""
    table = RoutingTable(own, 0.0, replacements=2)
    pool = [at_prefix(own, n % 3, n * 0x9E3779B97F4A7C15) for n in range(30)]
    samples: dict[NodeId, list[float]] = {}
    starts: dict[NodeId, float | None] = {}  # the variation each estimate started from
    variation: float | None = None
    for step, (which, kind, rtt) in enumerate(events):
        now = float(step)
        node = info(pool[which])
        if kind == 0:
            table.on_response(node, now)
        elif kind == 1:
            before = table.round_trips(node)
            estimate = table.on_round_trip(node, rtt)
            if node.node_id in held(table):
                samples.setdefault(node.node_id, []).append(rtt)
                assert estimate is not None and estimate.samples == len(samples[node.node_id])
                if before is None:
                    starts[node.node_id] = variation
                else:  # RFC 6298's RTTVAR step, over every contact's deviation
                    deviation = abs(before.srtt - rtt)
                    variation = (
                        deviation if variation is None else 0.75 * variation + 0.25 * deviation
                    )
            else:
                assert estimate is None
            assert table.variation == variation
        elif kind == 2:
            table.on_query(node, now)
        else:
            table.on_failure(node.node_id, now)
        entries = held(table)
        for gone in samples.keys() - entries.keys():
            del samples[gone]
        for node_id, entry in entries.items():
            expected = None
            for sample in samples.get(node_id, []):
                expected = (
                    RttEstimate.first(sample, starts[node_id])
                    if expected is None
                    else expected.updated(sample)
                )
            assert entry.rtt == expected
            assert table.round_trips(entry.node) == expected


def test_round_trips_of_nodes_not_held_are_not_kept() -> None:
    table = RoutingTable(OWN, 0.0)
    known = info(1)
    table.on_response(known, 0.0)
    assert table.on_round_trip(info(2), 0.1) is None  # not in the table: not added either
    assert table.on_round_trip(info(1, port=9), 0.1) is None  # the id at another address
    assert 2 not in [e.node.node_id.value for e in table.entries()]
    first = table.on_round_trip(known, 0.1)
    assert first == RttEstimate.first(0.1)
    assert table.on_round_trip(known, 0.3) == first.updated(0.3)
    entry = table.entry(known.node_id)
    assert entry is not None and entry.rtt == first.updated(0.3)
    with pytest.raises(ValueError):
        table.on_round_trip(known, -1.0)
    for n in range(2, 2000):  # many more contacts measured than the table keeps
        table.on_round_trip(info(n), 0.05)
    assert [e.node for e in table.entries()] == [known]


def test_an_estimate_lives_and_goes_with_its_entry() -> None:
    """Measured in the replacement cache, a node keeps its estimate when promoted; a node
    that turned bad and gave its place up loses its own, and starts again from the table's
    variation if it comes back."""
    table = RoutingTable(OWN, 0.0)
    nodes = full_far_bucket(table)
    table.on_response(info(1), 0.0)  # the first split: bucket 0 is full and final
    cached = info((1 << 159) | 100)
    assert table.on_response(cached, 1.0) is Outcome.CACHED
    in_cache = table.on_round_trip(cached, 0.2)
    assert in_cache == RttEstimate.first(0.2)
    table.on_round_trip(nodes[0], 0.1)
    assert table.on_round_trip(nodes[0], 0.12) is not None
    assert table.variation == pytest.approx(0.02)
    for _ in range(2):
        table.on_failure(nodes[0].node_id, 2.0)
    assert nodes[0].node_id not in table
    entry = table.entry(cached.node_id)
    assert entry is not None and entry.rtt == in_cache  # promoted, estimate and all
    assert table.round_trips(nodes[0]) is None
    table.on_failure(nodes[1].node_id, 3.0)
    table.on_failure(nodes[1].node_id, 3.0)  # bad: the next newcomer takes its place
    assert table.on_response(nodes[0], 4.0) is Outcome.REPLACED
    assert table.round_trips(nodes[0]) is None
    assert table.on_round_trip(nodes[0], 0.3) == RttEstimate.first(0.3, table.variation)


def state(table: RoutingTable, node: NodeInfo, now: float) -> NodeState:
    entry = table.entry(node.node_id)
    assert entry is not None
    return table.state_of(entry, now)


def test_node_states_follow_bep5() -> None:
    table = RoutingTable(OWN, 0.0)
    answered, asker = info(1), info(2)
    assert table.on_response(answered, 0.0) is Outcome.ADDED
    assert table.on_query(asker, 0.0) is Outcome.ADDED
    assert state(table, answered, 899.0) is NodeState.GOOD
    assert state(table, asker, 899.0) is NodeState.QUESTIONABLE  # never answered us
    assert state(table, answered, 900.0) is NodeState.QUESTIONABLE  # 15 minutes of silence
    assert table.on_query(answered, 1000.0) is Outcome.UPDATED
    assert state(table, answered, 1899.0) is NodeState.GOOD  # answered once, queried lately
    assert state(table, answered, 1900.0) is NodeState.QUESTIONABLE
    assert table.on_failure(answered.node_id, 1900.0) is NodeState.QUESTIONABLE
    assert table.on_failure(answered.node_id, 1900.0) is NodeState.BAD  # one retry, then bad
    assert table.closest(OWN) == [asker]
    assert table.closest_good(OWN, 1900.0) == []
    table.on_response(answered, 1900.0)  # answering again makes it good
    assert state(table, answered, 1900.0) is NodeState.GOOD
    assert table.on_failure(NodeId(99), 1900.0) is None


def full_far_bucket(table: RoutingTable) -> list[NodeInfo]:
    """Fill bucket 0 (ids with the top bit set, far from OWN = 0) with K good nodes."""
    nodes = [info((1 << 159) | n) for n in range(K)]
    for node in nodes:
        table.on_response(node, 0.0)
    return nodes


def test_full_bucket_caches_newcomers_and_replaces_bad_nodes() -> None:
    table = RoutingTable(OWN, 0.0)
    nodes = full_far_bucket(table)
    table.on_response(info(1), 0.0)  # lands near us: the first split
    assert table.depth == 2
    newcomer, asker = info((1 << 159) | 100), info((1 << 159) | 101)
    assert table.on_response(newcomer, 1.0) is Outcome.CACHED
    assert table.on_query(asker, 2.0) is Outcome.CACHED
    assert newcomer.node_id not in table
    assert not table.would_accept(NodeId((1 << 159) | 102), 2.0)
    table.on_failure(nodes[3].node_id, 3.0)
    assert table.on_failure(nodes[3].node_id, 3.0) is NodeState.BAD
    # The bad node gave its place to the cached node that had answered us.
    assert nodes[3].node_id not in table
    assert newcomer.node_id in table
    assert [e.node for e in table.buckets()[0].replacements] == [asker]
    # A bad node without replacements stays until a newcomer takes its place.
    table.on_failure(nodes[4].node_id, 4.0)
    table.on_failure(nodes[5].node_id, 4.0)
    table.on_failure(nodes[5].node_id, 4.0)
    assert nodes[5].node_id not in table  # asker took it
    table.on_failure(nodes[4].node_id, 4.0)
    assert nodes[4].node_id in table
    assert table.would_accept(NodeId((1 << 159) | 103), 4.0)
    assert table.on_response(info((1 << 159) | 103), 5.0) is Outcome.REPLACED
    assert nodes[4].node_id not in table


def test_failing_replacements_are_dropped() -> None:
    table = RoutingTable(OWN, 0.0)
    full_far_bucket(table)
    table.on_response(info(1), 0.0)
    cached = info((1 << 159) | 100)
    table.on_response(cached, 1.0)
    assert table.on_failure(cached.node_id, 2.0) is None
    assert len(table.buckets()[0].replacements) == 1
    table.on_failure(cached.node_id, 2.0)
    assert table.buckets()[0].replacements == ()


def test_replacement_cache_keeps_the_most_recent() -> None:
    table = RoutingTable(OWN, 0.0, replacements=2)
    full_far_bucket(table)
    table.on_response(info(1), 0.0)
    for n in range(3):
        table.on_response(info((1 << 159) | (100 + n)), float(n))
    cached = [e.node.node_id.value & 0xFF for e in table.buckets()[0].replacements]
    assert cached == [101, 102]


def test_ignored_nodes() -> None:
    table = RoutingTable(OWN, 0.0)
    assert table.on_response(info(0), 0.0) is Outcome.IGNORED  # our own id
    assert table.on_query(info(5), 0.0, read_only=True) is Outcome.IGNORED  # BEP 43
    assert NodeId(5) not in table
    table.on_response(info(7, port=1), 0.0)
    assert table.on_response(info(7, port=2), 0.0) is Outcome.IGNORED  # id taken elsewhere
    assert table.entry(NodeId(7)).node == info(7, port=1)  # type: ignore[union-attr]
    assert table.on_response(info(7, port=1), 1.0) is Outcome.UPDATED
    assert not table.would_accept(NodeId(7), 1.0)
    assert not table.would_accept(OWN, 1.0)
    assert "not an id" not in table


def test_splitting_reaches_the_deepest_bucket() -> None:
    own = NodeId(0)
    table = RoutingTable(own, 0.0, k=1)
    for shared in range(ID_BITS):
        table.on_response(info(at_prefix(own, shared, 0)), 0.0)
    assert table.depth == ID_BITS
    assert len(table) == ID_BITS
    assert all(len(bucket.nodes) == 1 for bucket in table.buckets())


def test_nodes_to_ping_are_the_stalest_questionable_per_bucket() -> None:
    table = RoutingTable(OWN, 0.0)
    far = full_far_bucket(table)
    near = [info(n) for n in (1, 2, 3)]
    for n, node in enumerate(near):
        table.on_response(node, 10.0 + n)
    assert table.nodes_to_ping(10.0) == []
    table.on_query(far[0], 500.0)
    assert table.nodes_to_ping(900.0) == [far[1]]
    assert table.nodes_to_ping(911.0) == [far[1], near[0]]
    for node in far[1:]:
        table.on_response(node, 911.0)
    assert table.nodes_to_ping(911.0) == [near[0]]
    assert table.nodes_to_ping(1400.0) == [far[0], near[0]]


def test_refresh_targets_are_in_stale_buckets() -> None:
    table = RoutingTable(OWN, 0.0)
    full_far_bucket(table)
    table.on_response(info(1), 0.0)
    rng = random.Random(3)
    assert table.refresh_targets(899.0, rng) == []
    targets = table.refresh_targets(900.0, rng)
    assert [table.bucket_index(t) for t in targets] == [0, 1]
    assert table.refresh_targets(900.0, rng) == []  # the lookups are on their way
    table.on_response(info(2), 1000.0)  # bucket 1 changed
    assert [table.bucket_index(t) for t in table.refresh_targets(1800.0, rng)] == [0]
    assert [table.bucket_index(t) for t in table.refresh_targets(1900.0, rng)] == [1]


def test_bucket_ranges_and_bad_arguments() -> None:
    table = RoutingTable(NodeId(1 << 159), 0.0)
    assert table.bucket_range(0) == (0, 1 << 160)
    with pytest.raises(IndexError):
        table.bucket_range(1)
    with pytest.raises(ValueError):
        RoutingTable(OWN, 0.0, k=0)
