"""BEP 32 (IPv6 DHT) in the responder, sans-IO: ``want`` picks ``nodes`` and/or ``nodes6``,
each the k closest good nodes of its family; without it the source's family answers."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.krpc import FindNode, Response, decode, encode
from macula_nat.dht.node_id import NodeId
from macula_nat.dht.routing_table import K

from .test_amplification import SOURCE, SOURCE6, responder

wants = st.lists(st.sampled_from([b"n4", b"n6", b"n5", b"x"]), max_size=4).map(tuple)


def find_node(want: tuple[bytes, ...], target: NodeId) -> FindNode:
    return FindNode(transaction_id=b"t1", sender=NodeId(7), target=target, want=want)


def closest(nodes: tuple[NodeInfo, ...], target: NodeId) -> list[NodeInfo]:
    return sorted(nodes, key=lambda node: node.node_id.value ^ target.value)


@given(want=wants, ipv6=st.booleans(), seed=st.integers(0, 1000), count=st.integers(0, 60))
def test_want_picks_the_families_and_each_gets_its_k_closest(
    want: tuple[bytes, ...], ipv6: bool, seed: int, count: int
) -> None:
    rng = random.Random(seed)
    r = responder(count, 0, 0, rng)
    target = NodeId.random(rng)
    answer = r.answer(find_node(want, target), SOURCE6 if ipv6 else SOURCE, 0.0)
    assert isinstance(answer, Response)
    asked = {w for w in want if w in (b"n4", b"n6")} or {b"n6" if ipv6 else b"n4"}
    good = r.table.closest_good(target, 0.0, count=count + 1)
    for name, family, got in ((b"n4", False, answer.nodes), (b"n6", True, answer.nodes6)):
        if name not in asked:
            assert got == ()
            continue
        assert all(node.is_ipv6 is family for node in got)
        expected = closest(tuple(n for n in good if n.is_ipv6 is family), target)[:K]
        assert list(got) == expected
    assert decode(encode(answer)) == answer  # 26-byte nodes, 38-byte nodes6


def test_a_plain_ipv4_query_gets_ipv4_nodes_and_an_ipv6_one_ipv6_nodes() -> None:
    r = responder(40, 0, 0, random.Random(1))
    four = r.answer(find_node((), NodeId(1)), SOURCE, 0.0)
    six = r.answer(find_node((), NodeId(1)), SOURCE6, 0.0)
    assert isinstance(four, Response) and isinstance(six, Response)
    assert len(four.nodes) == K and four.nodes6 == ()
    assert len(six.nodes6) == K and six.nodes == ()


def test_both_families_when_both_are_wanted() -> None:
    r = responder(40, 0, 0, random.Random(2))
    answer = r.answer(find_node((b"n4", b"n6"), NodeId(1)), SOURCE, 0.0)
    assert isinstance(answer, Response)
    assert (len(answer.nodes), len(answer.nodes6)) == (K, K)
