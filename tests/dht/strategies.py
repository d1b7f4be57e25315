"""Hypothesis strategies for DHT values and messages."""

from __future__ import annotations

import ipaddress

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import strategies as st

from macula_nat.dht import bencoding
from macula_nat.dht.compact import Address, NodeInfo
from macula_nat.dht.krpc import (
    AnnouncePeer,
    Error,
    FindNode,
    Get,
    GetPeers,
    Message,
    Ping,
    Put,
    Response,
)
from macula_nat.dht.mutable_item import (
    MAX_SEQ,
    MAX_VALUE_SIZE,
    Bencodable,
    ImmutableItem,
    MutableItem,
)
from macula_nat.dht.node_id import ID_BITS, NodeId

node_ids = st.integers(0, (1 << ID_BITS) - 1).map(NodeId)
ports = st.integers(0, 0xFFFF)
ipv4 = st.integers(0, (1 << 32) - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ipv6 = st.integers(0, (1 << 128) - 1).map(lambda n: str(ipaddress.IPv6Address(n)))
addresses4: st.SearchStrategy[Address] = st.tuples(ipv4, ports)
addresses6: st.SearchStrategy[Address] = st.tuples(ipv6, ports)
addresses = addresses4 | addresses6
nodes4 = st.builds(NodeInfo, node_ids, addresses4)
nodes6 = st.builds(NodeInfo, node_ids, addresses6)

bencodables: st.SearchStrategy[Bencodable] = st.recursive(
    st.integers(-(1 << 70), 1 << 70) | st.binary(max_size=24),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.binary(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
values = bencodables.map(bencoding.encode).filter(lambda v: len(v) <= MAX_VALUE_SIZE)
salts = st.binary(max_size=64)
seqs = st.integers(0, MAX_SEQ)
private_keys = st.binary(min_size=32, max_size=32).map(Ed25519PrivateKey.from_private_bytes)

immutable_items = st.builds(ImmutableItem, values)
unsigned_items = st.builds(
    MutableItem,
    public_key=st.binary(min_size=32, max_size=32),
    seq=seqs,
    value=values,
    signature=st.binary(min_size=64, max_size=64),
    salt=salts,
)
signed_items = st.builds(MutableItem.sign, private_keys, values, seqs, salts)

transaction_ids = st.binary(max_size=8)
versions = st.none() | st.binary(min_size=4, max_size=4)
wants = st.lists(st.sampled_from([b"n4", b"n6"]) | st.binary(max_size=3), max_size=3).map(tuple)


def _query_fields() -> dict[str, st.SearchStrategy[object]]:
    return {
        "transaction_id": transaction_ids,
        "sender": node_ids,
        "read_only": st.booleans(),
        "version": versions,
    }


pings = st.builds(Ping, **_query_fields())
find_nodes = st.builds(FindNode, target=node_ids, want=wants, **_query_fields())
get_peers = st.builds(GetPeers, info_hash=node_ids, want=wants, **_query_fields())
announces = st.builds(
    AnnouncePeer,
    info_hash=node_ids,
    port=ports,
    token=st.binary(max_size=20),
    implied_port=st.booleans(),
    **_query_fields(),
)
gets = st.builds(
    Get,
    target=node_ids,
    seq=st.none() | st.integers(0, MAX_SEQ),
    want=wants,
    token=st.none() | st.binary(max_size=20),
    **_query_fields(),
)
puts = st.one_of(
    st.builds(Put, token=st.binary(max_size=20), item=immutable_items, **_query_fields()),
    st.builds(
        Put,
        token=st.binary(max_size=20),
        item=unsigned_items,
        cas=st.none() | st.integers(0, MAX_SEQ),
        **_query_fields(),
    ),
)
queries = st.one_of(pings, find_nodes, get_peers, announces, gets, puts)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    item = draw(st.none() | immutable_items | unsigned_items)
    fields: dict[str, object] = {}
    if isinstance(item, MutableItem):
        fields = {
            "value": item.value,
            "key": item.public_key,
            "signature": item.signature,
            "seq": item.seq,
        }
    elif isinstance(item, ImmutableItem):
        fields = {"value": item.value}
    else:
        fields = {"seq": draw(st.none() | st.integers(0, MAX_SEQ))}
    return Response(
        transaction_id=draw(transaction_ids),
        sender=draw(node_ids),
        version=draw(versions),
        requester=draw(st.none() | addresses),
        nodes=draw(st.lists(nodes4, max_size=8)),
        nodes6=draw(st.lists(nodes6, max_size=8)),
        token=draw(st.none() | st.binary(max_size=20)),
        peers=draw(st.lists(addresses, max_size=8)),
        **fields,  # type: ignore[arg-type]
    )


errors = st.builds(
    Error,
    transaction_id=transaction_ids,
    code=st.integers(-(1 << 40), 1 << 40),
    message=st.text(max_size=40),
    version=versions,
)
messages: st.SearchStrategy[Message] = st.one_of(queries, responses(), errors)
