"""Node ids: wire form, XOR distance and common prefix length."""

from __future__ import annotations

import random

import pytest
from hypothesis import given

from macula_nat.dht.node_id import ID_BITS, NodeId

from .strategies import node_ids


@given(node_ids)
def test_wire_form_round_trips(node_id: NodeId) -> None:
    raw = node_id.to_bytes()
    assert len(raw) == 20
    assert NodeId.from_bytes(raw) == node_id
    assert NodeId.from_hex(str(node_id)) == node_id
    assert repr(node_id) == f"NodeId.from_hex('{node_id}')"


@given(node_ids, node_ids, node_ids)
def test_xor_is_a_metric(a: NodeId, b: NodeId, c: NodeId) -> None:
    assert a.distance(a) == 0
    assert a.distance(b) == b.distance(a)
    assert (a.distance(b) == 0) == (a == b)
    assert a.distance(c) <= a.distance(b) + b.distance(c)
    assert a.distance(c) == a.distance(b) ^ b.distance(c)


@given(node_ids, node_ids)
def test_common_prefix_length_counts_shared_leading_bits(a: NodeId, b: NodeId) -> None:
    shared = a.common_prefix_length(b)
    bits_a, bits_b = f"{a.value:0160b}", f"{b.value:0160b}"
    assert bits_a[:shared] == bits_b[:shared]
    assert shared == ID_BITS or bits_a[shared] != bits_b[shared]


def test_network_order_and_limits() -> None:
    assert NodeId.from_bytes(b"\x80" + bytes(19)).value == 1 << 159
    assert NodeId(1).to_bytes() == bytes(19) + b"\x01"
    assert NodeId(0).common_prefix_length(NodeId(1)) == 159
    assert NodeId(0).common_prefix_length(NodeId(1 << 159)) == 0
    for bad in (-1, 1 << 160):
        with pytest.raises(ValueError):
            NodeId(bad)
    with pytest.raises(TypeError):
        NodeId(True)
    with pytest.raises(ValueError):
        NodeId.from_bytes(bytes(19))


def test_random_ids() -> None:
    assert NodeId.random(random.Random(7)) == NodeId.random(random.Random(7))
    assert len({NodeId.random() for _ in range(20)}) == 20
