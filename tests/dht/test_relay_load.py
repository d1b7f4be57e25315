"""Relay discovery has no hot spot: relay-list lookups spread over the DHT (pure simulation)."""

from __future__ import annotations

import random

from macula_nat.dht.node_id import NodeId

from .simulation import Network, hot_spot, relay_list_load

NODES = 5000
RELAYS = 200


def test_sharded_relay_lists_spread_the_lookups_that_one_key_piles_on_eight_nodes() -> None:
    rng = random.Random(11)
    network = Network([NodeId.random(rng) for _ in range(NODES)], rng)
    one_key = relay_list_load(network, RELAYS, rng, sharded=False)
    sharded = relay_list_load(network, RELAYS, rng)
    # One key: its 8 nearest nodes answer every node's lookup, ~400x the mean at 5,000 nodes
    # (and growing with N). Sharded (evenly spaced keys, two per shard): the busiest node
    # answers at most 3x the mean, the goal.
    assert hot_spot(one_key, NODES) > 100
    assert hot_spot(sharded, NODES) <= 3
    assert sum(sharded.values()) < sum(one_key.values())  # and fewer queries in all
