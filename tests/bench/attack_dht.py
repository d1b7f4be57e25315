"""The DHT node under attack (issue 11, points 5-7): what a flood or a spoofed source gets.

Storage: 100 sources store one record each, then one source floods 10,000 new ones (BEP 44
puts, announce_peer); the figure is how many of the 100 survive. Amplification: bytes answered
per byte asked for get (a 1,000-byte item), find_node and get_peers (50 peers stored), asked by
an address that has not proven itself, on the encoded datagrams; the baseline is the answer an
unbounded node gives (what the node sent before the bound). Peer table: CPU per announce of a
new info-hash with the table at its default cap, and the table's live memory (tracemalloc) at
that cap, every announcement from a distinct IPv4 source (the worst case for accounting; IPv6
sources cost about 13% more, and parsing them makes a traced fill too slow to run here).

Sans-IO (the stores and the responder), so nothing here depends on the network's timing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Final

import trio

from macula_nat.dht.compact import NodeInfo
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.item_store import ItemStore
from macula_nat.dht.krpc import FindNode, Get, GetPeers, Query, Response, encode
from macula_nat.dht.mutable_item import ImmutableItem, encode_value
from macula_nat.dht.node_id import NodeId
from macula_nat.dht.peer_store import PeerStore
from macula_nat.dht.responder import Responder
from macula_nat.dht.routing_table import RoutingTable
from macula_nat.dht.statistics import Counters
from macula_nat.dht.tokens import WriteTokens

from .timing import Figure, LiveMemory

DEFAULTS: Final = DhtConfig()
LEGIT: Final = 100
FLOOD: Final = 10_000
ANNOUNCES: Final = 2_000
"""New info-hashes announced, timed, at the cap."""
VERSION: Final = b"MN\x00\x01"


def _ipv4(n: int) -> str:
    return f"{10 + (n >> 24)}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def _peer_store() -> PeerStore:
    return PeerStore(
        max_peers=DEFAULTS.max_peers_per_info_hash,
        max_info_hashes=DEFAULTS.max_info_hashes,
        per_source=DEFAULTS.max_announces_per_source,
    )


def _storage_flood() -> list[Figure]:
    items = ItemStore(capacity=DEFAULTS.max_items, per_source=DEFAULTS.max_items_per_source)
    legit = [ImmutableItem(encode_value(b"legit %d" % n)) for n in range(LEGIT)]
    for n, item in enumerate(legit):
        items.put(item, 0.0, source=_ipv4(n))
    for n in range(FLOOD):
        items.put(ImmutableItem(encode_value(b"flood %d" % n)), 1.0, source="203.0.113.66")
    kept_items = sum(items.get(item.target, 2.0) is not None for item in legit)

    peers = _peer_store()
    swarms = [NodeId(n + 1) for n in range(LEGIT)]
    for n, info_hash in enumerate(swarms):
        peers.announce(info_hash, (_ipv4(n), 6881), 0.0)
    for n in range(FLOOD):
        peers.announce(NodeId(10**6 + n), ("203.0.113.66", 6881), 1.0)
    kept_peers = sum(bool(peers.peers(info_hash, 2.0)) for info_hash in swarms)
    return [
        Figure(
            f"under attack: others' BEP 44 items kept, 1 source puts {FLOOD:,}",
            kept_items,
            f"of {LEGIT}",
            goal=f"= {LEGIT} (before: 0)",
        ),
        Figure(
            f"under attack: others' announcements kept, 1 source floods {FLOOD:,}",
            kept_peers,
            f"of {LEGIT}",
            goal=f"= {LEGIT} (before: 0)",
        ),
    ]


def _amplification() -> list[Figure]:
    rng = random.Random(11)
    table = RoutingTable(NodeId.random(rng), 0.0)
    for n in range(400):
        table.on_response(NodeInfo(NodeId.random(rng), (_ipv4(n), 6881)), 0.0)
    items = ItemStore()
    item = ImmutableItem(encode_value(b"x" * 996))
    assert len(item.value) == 1000
    items.put(item, 0.0)
    peers = PeerStore()
    info_hash = NodeId.random(rng)
    for n in range(50):
        peers.announce(info_hash, (_ipv4(10_000 + n), 6881), 0.0)
    responder = Responder(
        table=table,
        items=items,
        peers=peers,
        tokens=WriteTokens(),
        counters=Counters(),
        version=VERSION,
    )
    sender = NodeId.random(rng)
    fields = {"transaction_id": b"aa", "sender": sender}  # the smallest request: no "v"
    queries: list[tuple[str, Query]] = [
        ("get (1000 B item)", Get(target=item.target, **fields)),
        ("find_node", FindNode(target=NodeId.random(rng), **fields)),
        ("get_peers (50 peers)", GetPeers(info_hash=info_hash, **fields)),
    ]
    figures = []
    for name, query in queries:
        asked = len(encode(query))
        unbounded = responder.answer(query, ("192.0.2.1", 6881), 0.0)
        bounded = responder.answer(query, ("192.0.2.1", 6881), 0.0, asked)
        assert isinstance(bounded, Response) and isinstance(unbounded, Response)
        figures.append(
            Figure(
                f"under attack: amplification, unproven {name}",
                len(encode(bounded)) / asked,
                "x",
                baseline=len(encode(unbounded)) / asked,
                goal="<= 3x",
            )
        )
    return figures


def _ipv6(n: int) -> str:
    """A host in the ``n``-th /64 (every group non-zero, so the string is canonical)."""
    return f"2001:db8:{n // 0xFFFF + 1:x}:{n % 0xFFFF + 1:x}::1"


def _fill(store: PeerStore, address: Callable[[int], str], each: int = 1) -> int:
    """Fill ``store`` to its default cap, each source announcing ``each`` info-hashes."""
    n = 0
    for swarm in range(DEFAULTS.max_info_hashes):
        info_hash = NodeId(swarm + 1)
        for peer in range(DEFAULTS.max_peers_per_info_hash):
            source = (swarm // each) * DEFAULTS.max_peers_per_info_hash + peer
            store.announce(info_hash, (address(source), 6881), 0.0)
            n += 1
    return n


def _table_memory(address: Callable[[int], str], each: int) -> tuple[int, float]:
    """Announcements held and live MiB of a table filled to its cap."""
    memory = LiveMemory()
    memory.start()
    store = _peer_store()
    held = _fill(store, address, each)
    live = memory.measure()
    memory.stop()
    assert store.announcements == held
    return held, live / 2**20


def _announce_cpu(store: PeerStore, first: int, source: Callable[[int], str]) -> float:
    """CPU seconds per announce of a new info-hash, each from ``source(n)``."""
    start = time.process_time()
    for n in range(ANNOUNCES):
        store.announce(NodeId(10**7 + first + n), (source(first + n), 6881), 1.0)
    return (time.process_time() - start) / ANNOUNCES


def _peer_table() -> list[Figure]:
    held, spread = _table_memory(_ipv4, 1)
    _, worst = _table_memory(_ipv6, 2)
    store = _peer_store()
    _fill(store, _ipv4)
    newcomers = _announce_cpu(store, held, _ipv4)
    flooder = _announce_cpu(store, 2 * held, lambda _: "203.0.113.66")
    return [
        Figure(
            f"under attack: peer table at the cap ({held:,} IPv4 sources)",
            spread,
            "MiB",
            goal="<= 64 MiB (before: 147 MiB)",
        ),
        Figure(
            "under attack: peer table at the cap, worst case (IPv6 /64s of 2 announcements)",
            worst,
            "MiB",
            goal="<= 64 MiB",
        ),
        Figure(
            "under attack: announce CPU, new info-hash at the cap, new source",
            1e3 * newcomers,
            "ms",
            goal="<= 1 ms (before: 86 ms)",
        ),
        Figure(
            "under attack: announce CPU, new info-hash at the cap, one flooder",
            1e3 * flooder,
            "ms",
            goal="<= 1 ms",
        ),
    ]


async def run() -> list[Figure]:
    figures = _storage_flood() + _amplification() + _peer_table()
    await trio.lowlevel.checkpoint()
    return figures
