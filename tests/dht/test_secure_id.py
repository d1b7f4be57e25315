"""BEP 42 secure node ids: the BEP's test vectors, and ids derived and checked both ways."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht.node_id import NodeId
from macula_nat.dht.secure_id import crc32c, is_secure, secure_node_id

# BEP 42's table: IP, rand (last byte), an id it accepts (the middle bytes are random).
VECTORS = [
    ("124.31.75.21", "5fbfbff10c5d6a4ec8a88e4c6ab4c28b95eee401"),
    ("21.75.31.124", "5a3ce9c14e7a08645677bbd1cfe7d8f956d53256"),
    ("65.23.51.170", "a5d43220bc8f112a3d426c84764f8c2a1150e616"),
    ("84.124.73.14", "1b0321dd1bb1fe518101ceef99462b947a01ff41"),
    ("43.213.53.83", "e56f6cbf5b7c4be0237986d5243b87aa6d51305a"),
]

public_v4 = st.ip_addresses(v=4).filter(lambda ip: ip.is_global).map(str)
public_v6 = st.ip_addresses(v=6).filter(lambda ip: ip.is_global).map(str)


def test_crc32c_is_castagnoli() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the check value of CRC-32C
    assert crc32c(b"") == 0


@pytest.mark.parametrize(("ip", "node_id"), VECTORS)
def test_the_beps_vectors_are_secure_and_another_ips_are_not(ip: str, node_id: str) -> None:
    assert is_secure(NodeId.from_hex(node_id), ip)
    assert not is_secure(NodeId.from_hex(node_id), "198.41.0.4")


@given(st.one_of(public_v4, public_v6), st.integers(0, 2**32))
def test_an_id_derived_from_an_ip_is_secure_there(ip: str, seed: int) -> None:
    node_id = secure_node_id(ip, random.Random(seed))
    assert is_secure(node_id, ip)


def test_derived_ids_differ_and_random_ids_mostly_fail() -> None:
    rng = random.Random(1)
    ids = {secure_node_id("203.0.113.9", rng) for _ in range(100)}  # documentation: exempt
    assert len(ids) == 100
    public = "8.8.4.4"
    assert sum(is_secure(NodeId.random(rng), public) for _ in range(1000)) < 5  # 2**-21 each


def test_local_addresses_are_exempt() -> None:
    rng = random.Random(2)
    for ip in ("127.0.0.1", "10.1.2.3", "192.168.0.1", "100.64.0.1", "::1", "fd00::1"):
        assert is_secure(NodeId.random(rng), ip)
