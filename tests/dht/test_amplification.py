"""The amplification bound, sans-IO: `Responder` answers an unproven address within 3x."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.item_store import ItemStore
from macula_nat.dht.krpc import (
    AnnouncePeer,
    FindNode,
    Get,
    GetPeers,
    Ping,
    Query,
    Response,
    encode,
)
from macula_nat.dht.mutable_item import ImmutableItem, encode_value
from macula_nat.dht.node_id import NodeId
from macula_nat.dht.peer_store import PeerStore
from macula_nat.dht.proven_addresses import ProvenAddresses
from macula_nat.dht.responder import Responder
from macula_nat.dht.routing_table import RoutingTable
from macula_nat.dht.statistics import Counters
from macula_nat.dht.tokens import WriteTokens

SOURCE = ("192.0.2.1", 6881)
SOURCE6 = ("2001:db8::1", 6881)


def responder(nodes: int, peers: int, value_size: int, rng: random.Random) -> Responder:
    table = RoutingTable(NodeId.random(rng), 0.0)
    for n in range(nodes):
        ip = f"10.0.{n >> 8}.{n & 255}" if n % 2 else f"2001:db8:0:{n + 1:x}::1"
        table.on_response(NodeInfo(NodeId.random(rng), (ip, 6881)), 0.0)
    items = ItemStore()
    if value_size:
        items.put(ImmutableItem(encode_value(b"v" * value_size)), 0.0)
    store = PeerStore()
    for n in range(peers):
        store.announce(NodeId(1), (f"10.1.{n >> 8}.{n & 255}", 1 + n), 0.0)
        store.announce(NodeId(1), (f"2001:db8:1:{n + 1:x}::1", 1 + n), 0.0)
    return Responder(
        table=table,
        items=items,
        peers=store,
        tokens=WriteTokens(),
        counters=Counters(),
        version=b"MN\x00\x01",
    )


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.integers(0, 200),
    peers=st.integers(0, 80),
    value_size=st.integers(0, 990),
    method=st.sampled_from(["ping", "find_node", "get_peers", "get"]),
    tid=st.binary(min_size=0, max_size=8),
    ipv6=st.booleans(),
    want=st.sampled_from([(), (b"n4",), (b"n6",), (b"n4", b"n6")]),
    seed=st.integers(0, 1000),
)
def test_an_unproven_address_gets_at_most_3x(
    nodes: int,
    peers: int,
    value_size: int,
    method: str,
    tid: bytes,
    ipv6: bool,
    want: tuple[bytes, ...],
    seed: int,
) -> None:
    rng = random.Random(seed)
    r = responder(nodes, peers, value_size, rng)
    sender = NodeId.random(rng)
    target = ImmutableItem(encode_value(b"v" * value_size)).target if value_size else NodeId(1)
    query: Query = {
        "ping": Ping(transaction_id=tid, sender=sender),
        "find_node": FindNode(transaction_id=tid, sender=sender, target=target, want=want),
        "get_peers": GetPeers(transaction_id=tid, sender=sender, info_hash=NodeId(1), want=want),
        "get": Get(transaction_id=tid, sender=sender, target=target, want=want),
    }[method]
    source = SOURCE6 if ipv6 else SOURCE
    size = len(encode(query))
    answer = r.answer(query, source, 0.0, size)
    assert isinstance(answer, Response)
    assert len(encode(answer)) <= 3 * size
    if method in ("get", "get_peers"):
        assert answer.token is not None  # the way to prove the address stays in
    full = r.answer(query, source, 0.0)  # without a size: no bound
    assert isinstance(full, Response)
    if len(encode(full)) <= 3 * size:
        assert answer == full  # nothing is cut that did not need to be

    # A proven address (here: by echoing the token) gets the full answer.
    if method == "get" and full.token is not None:
        proof = Get(transaction_id=tid, sender=sender, target=target, token=full.token, want=want)
        proven = r.answer(proof, source, 0.0, len(encode(proof)))
        assert proven == full


def test_proofs_expire_and_are_bounded() -> None:
    proven = ProvenAddresses(capacity=2, lifetime=10.0)
    proven.prove("192.0.2.1", 0.0)
    assert proven.is_proven("192.0.2.1", 9.9) and not proven.is_proven("192.0.2.1", 10.0)
    for n in range(5):
        proven.prove(f"192.0.2.{n}", 20.0)
    assert len(proven) == 2
    assert proven.is_proven("192.0.2.4", 20.0) and not proven.is_proven("192.0.2.0", 20.0)
    with pytest.raises(ValueError):
        ProvenAddresses(capacity=0)


def test_a_write_with_a_valid_token_proves_the_address() -> None:
    r = responder(nodes=50, peers=0, value_size=0, rng=random.Random(1))
    sender = NodeId(7)
    get_peers = GetPeers(transaction_id=b"t", sender=sender, info_hash=NodeId(1))
    first = r.answer(get_peers, SOURCE, 0.0, len(encode(get_peers)))
    assert isinstance(first, Response) and first.token is not None
    assert not r.proven.is_proven(SOURCE[0], 0.0)
    announce = AnnouncePeer(
        transaction_id=b"u", sender=sender, info_hash=NodeId(1), port=1, token=first.token
    )
    assert isinstance(r.answer(announce, SOURCE, 1.0, len(encode(announce))), Response)
    assert r.proven.is_proven(SOURCE[0], 1.0)
