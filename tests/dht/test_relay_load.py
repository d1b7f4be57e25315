"""Relay discovery has no hot spot, and with regions each node finds a relay near it
(pure simulation: 5,000 DHT nodes, 200 relays)."""

from __future__ import annotations

import random
import statistics

import pytest

from macula_nat.dht.node_id import NodeId

from .simulation import Network, hot_spot, regional_relay_choice, relay_list_load

NODES = 5000
RELAYS = 200


@pytest.fixture(scope="module")
def network() -> Network:
    rng = random.Random(11)
    return Network([NodeId.random(rng) for _ in range(NODES)], rng)


def test_sharded_relay_lists_spread_the_lookups_that_one_key_piles_on_eight_nodes(
    network: Network,
) -> None:
    rng = random.Random(12)
    one_key = relay_list_load(network, RELAYS, rng, sharded=False)
    sharded = relay_list_load(network, RELAYS, rng)
    # One key: its 8 nearest nodes answer every node's lookup, ~400x the mean at 5,000 nodes
    # (and growing with N). Sharded (evenly spaced keys, two per shard): the busiest node
    # answers at most 3x the mean, the goal.
    assert hot_spot(one_key, NODES) > 100
    assert hot_spot(sharded, NODES) <= 3
    assert sum(sharded.values()) < sum(one_key.values())  # and fewer queries in all


def test_with_regions_every_node_finds_a_relay_within_50_ms_of_the_best_and_no_hot_spot(
    network: Network,
) -> None:
    choice = regional_relay_choice(network, RELAYS, random.Random(13))
    assert max(choice.shortfall) <= 50
    assert statistics.median(choice.shortfall) < 5
    assert hot_spot(choice.load, NODES) <= 3


def test_without_regions_many_nodes_settle_for_a_far_relay(network: Network) -> None:
    """The same world, the relays of the node's shard only: what regions are for."""
    choice = regional_relay_choice(network, RELAYS, random.Random(13), regions=False)
    assert sum(shortfall > 50 for shortfall in choice.shortfall) > NODES / 20
