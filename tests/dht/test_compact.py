"""Compact peer and node info (BEP 5, BEP 32)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht.compact import (
    Address,
    CompactError,
    NodeInfo,
    decode_nodes,
    decode_nodes6,
    decode_peer,
    encode_nodes,
    encode_nodes6,
    encode_peer,
)
from macula_nat.dht.node_id import NodeId

from .strategies import addresses, nodes4, nodes6


def test_known_encodings() -> None:
    assert encode_peer(("97.120.106.101", 11893)) == b"axje.u"
    assert encode_peer(("2001:db8::1", 443)) == bytes.fromhex("20010db8" + "00" * 11 + "0101bb")
    node = NodeInfo(NodeId.from_bytes(b"mnopqrstuvwxyz123456"), ("192.0.2.1", 6881))
    assert encode_nodes([node]) == b"mnopqrstuvwxyz123456\xc0\x00\x02\x01\x1a\xe1"


@given(addresses)
def test_peer_round_trip(address: Address) -> None:
    encoded = encode_peer(address)
    assert len(encoded) == (18 if ":" in address[0] else 6)
    assert decode_peer(encoded) == address


@given(st.lists(nodes4, max_size=10), st.lists(nodes6, max_size=10))
def test_nodes_round_trip(ipv4: list[NodeInfo], ipv6: list[NodeInfo]) -> None:
    assert len(encode_nodes(ipv4)) == 26 * len(ipv4)
    assert len(encode_nodes6(ipv6)) == 38 * len(ipv6)
    assert decode_nodes(encode_nodes(ipv4)) == tuple(ipv4)
    assert decode_nodes6(encode_nodes6(ipv6)) == tuple(ipv6)


@given(st.binary(max_size=120))
def test_any_length_decodes_or_raises_compact_error(data: bytes) -> None:
    for decoder, size in ((decode_nodes, 26), (decode_nodes6, 38)):
        if len(data) % size:
            with pytest.raises(CompactError):
                decoder(data)
        else:
            assert len(decoder(data)) == len(data) // size
    if len(data) in (6, 18):
        assert encode_peer(decode_peer(data)) == data
    else:
        with pytest.raises(CompactError):
            decode_peer(data)


def test_families_and_addresses_are_checked() -> None:
    v6 = NodeInfo(NodeId(1), ("::1", 1))
    v4 = NodeInfo(NodeId(1), ("127.0.0.1", 1))
    with pytest.raises(ValueError):
        encode_nodes([v6])
    with pytest.raises(ValueError):
        encode_nodes6([v4])
    for bad in (("::01", 1), ("1.2.3.4", 65536), ("host", 1), ("fe80::1%eth0", 1), ("1.2.3.4",)):
        with pytest.raises((TypeError, ValueError)):
            NodeInfo(NodeId(1), bad)  # type: ignore[arg-type]
