"""Where relays are announced in the DHT and where a node looks for them (pure).

One well-known key for every relay is a hot spot: every node's relay-list lookup ends at the same
eight DHT nodes, however large the network. So each relay is announced under
:data:`SHARDS_PER_RELAY` of :data:`RELAY_SHARDS` shard keys (chosen from its address, so a
restarted relay keeps them), and each node reads the one shard its DHT id falls in: lookups
spread over ``RELAY_SHARDS`` x 8 DHT nodes instead of 8, and a shard still lists about
``relays x SHARDS_PER_RELAY / RELAY_SHARDS`` relays to measure and choose from.

A network with few relays has shards with few or none in them. A node whose shard lists fewer
than :data:`ENOUGH_RELAYS` reads the :data:`SPARE_SHARDS` after it too, and only if those are
short as well the one global key, :data:`RELAYS_INFO_HASH`, under which every relay is also
announced: the global key is read in proportion to how empty the shards are, which is to say,
only while relays are few.

Shard keys are spaced evenly over the id space, not hashed: hashed keys fall close together by
chance, and a DHT node near several of them answers for them all (5-6x the mean load at 5,000
nodes). Evenly spaced, shard ``s``'s keys sit inside the id range of the nodes that read it, so a
lookup stays among a node's neighbours. Each shard has :data:`SUBKEYS` keys, relays announced
under all of them and a reader asking one at random: the readers of a crowded range spread over
twice the DHT nodes (`tests/dht/test_relay_load.py`: 2.4-2.6x the mean at the busiest node, where
one key per shard gave 3.0-3.1x).

Regions (latency): relays listed at random are far away for many nodes. A deployment names
landmarks (its gateways' DHT addresses, say); a relay's region is its nearest landmark by
measured round trip, and a node's nearest :data:`REGIONS_READ` regions are where it looks
first (landmark binning, Ratnasamy et al., INFOCOM 2002). A region's keys sit right beside
each shard's keys (:func:`region_key`), so the same DHT nodes answer both and a populous
region weighs on no node more than a crowded shard does; a relay is announced in its region
in every shard, under one of the shard's keys (:func:`region_subkey`), and a node reads its
own shard's at a random key, and at the others too when that lists fewer than
:data:`ENOUGH_RELAYS`: a sparse region's relays are all found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

from macula_nat.dht.node_id import NodeId as DhtId
from macula_nat.net.address import Address

RELAY_SHARDS: Final = 512
SHARDS_PER_RELAY: Final = 32
ENOUGH_RELAYS: Final = 4
"""A shard listing fewer relays than this is topped up from the spare shards, then the global
key."""
SPARE_SHARDS: Final = 3
SUBKEYS: Final = 2
"""Keys per shard: a relay is announced under each, a node reads one at random."""
MAX_REGIONS: Final = 256
"""Landmarks (regions) a deployment may name, at most."""
REGIONS_READ: Final = 2
"""A node reads its nearest regions, this many: a node near a region's border finds the
relays just across it."""

RELAYS_INFO_HASH: Final = DhtId.from_bytes(hashlib.sha1(b"macula-nat relays").digest())
"""The global key: every relay, for networks too small to fill the shards."""


def shard_key(shard: int, subkey: int = 0, shards: int = RELAY_SHARDS) -> DhtId:
    """The info hash relays of ``shard`` are announced under as its ``subkey``-th key: the
    middle of the ``subkey``-th of :data:`SUBKEYS` equal parts of the shard's id range."""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is outside 0..{shards - 1}")
    if not 0 <= subkey < SUBKEYS:
        raise ValueError(f"subkey {subkey} is outside 0..{SUBKEYS - 1}")
    slot = shard * SUBKEYS + subkey
    return DhtId(((2 * slot + 1) << 160) // (2 * shards * SUBKEYS))


def shard_keys(shard: int, shards: int = RELAY_SHARDS) -> list[DhtId]:
    """All of ``shard``'s keys: where a relay in it is announced."""
    return [shard_key(shard, subkey, shards) for subkey in range(SUBKEYS)]


def relay_shards(
    endpoint: Address, shards: int = RELAY_SHARDS, count: int = SHARDS_PER_RELAY
) -> list[int]:
    """The ``count`` distinct shards a relay at ``endpoint`` is announced in."""
    if not 1 <= count <= shards:
        raise ValueError(f"a relay is announced in 1..{shards} shards, not {count}")
    seed = f"{endpoint[0]}:{endpoint[1]}/".encode()
    ranked = sorted(range(shards), key=lambda shard: hashlib.sha1(seed + b"%d" % shard).digest())
    return ranked[:count]


def node_shard(dht_id: DhtId, shards: int = RELAY_SHARDS) -> int:
    """The shard a node whose DHT id is ``dht_id`` reads: its top bits, uniform over nodes."""
    return dht_id.value * shards >> 160


def spare_shards(shard: int, shards: int = RELAY_SHARDS, count: int = SPARE_SHARDS) -> list[int]:
    """The shards read after ``shard`` when it lists too few relays: the next ones round."""
    return [(shard + step) % shards for step in range(1, min(count, shards - 1) + 1)]


def region_key(shard: int, subkey: int, region: int, shards: int = RELAY_SHARDS) -> DhtId:
    """The info hash relays of ``region`` are announced under in ``shard``'s ``subkey``-th
    key: just past that shard key, so the same DHT nodes hold both."""
    if not 0 <= region < MAX_REGIONS:
        raise ValueError(f"region {region} is outside 0..{MAX_REGIONS - 1}")
    return DhtId(shard_key(shard, subkey, shards).value + 1 + region)


def region_subkey(endpoint: Address, shard: int) -> int:
    """Which of ``shard``'s keys a relay at ``endpoint`` is announced in for its region: half
    the region's relays under each (stable across restarts)."""
    digest = hashlib.sha1(f"{endpoint[0]}:{endpoint[1]}/region/{shard}".encode()).digest()
    return digest[0] % SUBKEYS


def nearest_regions(rtts: Sequence[float | None], count: int = REGIONS_READ) -> list[int]:
    """The ``count`` regions (indexes into ``rtts``, one round trip per landmark, None for no
    answer) nearest first; a landmark that did not answer is no one's region."""
    answered = [(rtt, region) for region, rtt in enumerate(rtts) if rtt is not None]
    if len(rtts) > MAX_REGIONS:
        raise ValueError(f"{len(rtts)} landmarks: at most {MAX_REGIONS}")
    return [region for _, region in sorted(answered)[:count]]
