"""Relay shard keys: distinct, stable, spread evenly over relays and over nodes."""

from __future__ import annotations

import collections
import itertools
import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from macula_nat.dht.node_id import NodeId as DhtId
from macula_nat.directory.relay_keys import (
    RELAY_SHARDS,
    RELAYS_INFO_HASH,
    SHARDS_PER_RELAY,
    SUBKEYS,
    node_shard,
    relay_shards,
    shard_key,
    shard_keys,
    spare_shards,
)

ports = st.integers(1, 65535)
octets = st.integers(0, 255)
endpoints = st.tuples(st.builds("198.51.{}.{}".format, octets, octets), ports)


def test_every_shard_has_its_own_keys_apart_from_the_global_one() -> None:
    keys = {key for shard in range(RELAY_SHARDS) for key in shard_keys(shard)}
    assert len(keys) == RELAY_SHARDS * SUBKEYS
    assert RELAYS_INFO_HASH not in keys
    with pytest.raises(ValueError):
        shard_key(RELAY_SHARDS)
    with pytest.raises(ValueError):
        shard_key(0, SUBKEYS)


@given(st.integers(1, 4096), st.data())
def test_a_shards_keys_are_evenly_spaced_inside_the_range_of_its_readers(
    shards: int, data: st.DataObject
) -> None:
    shard = data.draw(st.integers(0, shards - 1))
    keys = shard_keys(shard, shards)
    assert [node_shard(key, shards) for key in keys] == [shard] * SUBKEYS
    spacing = (1 << 160) // (shards * SUBKEYS)
    for before, after in itertools.pairwise(keys):
        assert abs(after.value - before.value - spacing) <= 1


@given(endpoints, st.integers(1, 128), st.data())
def test_a_relay_is_in_distinct_shards_that_do_not_change(
    endpoint: tuple[str, int], shards: int, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1, shards))
    chosen = relay_shards(endpoint, shards, count)
    assert len(set(chosen)) == count
    assert all(0 <= shard < shards for shard in chosen)
    assert relay_shards(endpoint, shards, count) == chosen  # a restarted relay keeps them


def test_relays_and_nodes_spread_evenly_over_the_shards() -> None:
    rng = random.Random(5)
    relays = collections.Counter(
        shard
        for i in range(2000)
        for shard in relay_shards((f"198.51.{i >> 8}.{i & 255}", 4433), RELAY_SHARDS)
    )
    nodes = collections.Counter(node_shard(DhtId.random(rng)) for _ in range(64_000))
    assert set(relays) == set(nodes) == set(range(RELAY_SHARDS))
    for counts, draws in ((relays, 2000 * SHARDS_PER_RELAY), (nodes, 64_000)):
        mean = draws / RELAY_SHARDS  # binomial counts: none beyond five standard deviations
        assert max(counts.values()) < mean + 5 * math.sqrt(mean)


def test_the_spare_shards_follow_round_the_ring() -> None:
    assert spare_shards(5, 256) == [6, 7, 8]
    assert spare_shards(255, 256) == [0, 1, 2]
    assert spare_shards(0, 2) == [1]  # never the node's own shard again
    assert spare_shards(0, 1) == []


def test_bad_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        relay_shards(("198.51.100.1", 1), 4, 5)
    with pytest.raises(ValueError):
        relay_shards(("198.51.100.1", 1), 4, 0)
