"""What one gateway can carry, for the capacity model in README.md ("Capacity"): each figure
is a per-gateway budget (one Python process, one core).

- DHT: ``get_peers`` queries one node answers a second on 127.0.0.1, a client in another
  process keeping IN_FLIGHT outstanding; memory per BEP 44 record stored for others (a
  250-byte value, about a node record's size).
- Relay: memory per registration (the relay's state for a registered node, its link keys
  included), registered through the real handshake on the sans-IO core.
Relay forwarding CPU and memory per session are the relay section's.
"""

from __future__ import annotations

import gc
import sys
from typing import Final

import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from macula_nat.dht import bencoding
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.item_store import ItemStore
from macula_nat.dht.krpc import GetPeers, encode
from macula_nat.dht.mutable_item import MutableItem
from macula_nat.dht.node import open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import RealUdpStack

from .attack_relay import _ip, _new_core, _Node
from .timing import Figure, LiveMemory

ANSWER_SECONDS: Final = 3.0
IN_FLIGHT: Final = 32
"""get_peers queries outstanding at once against the loopback node."""
ITEMS: Final = 4096
REGISTRATIONS: Final = 2000


async def _answering() -> list[Figure]:
    """get_peers queries one DHT node answers a second on 127.0.0.1 (its table holds the 8
    other nodes, each answer carries them), a client process keeping IN_FLIGHT outstanding."""
    config = DhtConfig(listen=("127.0.0.1", 0), query_rate=1e9, query_burst=1e9)
    stack = RealUdpStack()
    async with open_dht_node(stack, config) as node:
        others = []
        async with trio.open_nursery() as nursery:

            async def join(task_status: trio.TaskStatus[None]) -> None:
                async with open_dht_node(stack, config) as other:
                    await other.bootstrap([node.contact.address])
                    others.append(other)
                    task_status.started()
                    await trio.sleep_forever()

            for _ in range(8):
                await nursery.start(join)
            query = encode(
                GetPeers(transaction_id=b"bq", sender=NodeId(1), info_hash=NodeId.random())
            )
            host, port = node.contact.address
            arguments = [host, str(port), query.hex(), str(ANSWER_SECONDS), str(IN_FLIGHT)]
            client = await trio.run_process(
                [sys.executable, "-c", _CLIENT, *arguments], capture_stdout=True
            )
            answered, elapsed = map(float, client.stdout.split())
            nursery.cancel_scope.cancel()
    return [
        Figure(
            "DHT get_peers answered by one node, 127.0.0.1 (one core)",
            answered / elapsed,
            "q/s",
        )
    ]


_CLIENT: Final = """
import socket, sys, time
host, port, query = sys.argv[1], int(sys.argv[2]), bytes.fromhex(sys.argv[3])
seconds, in_flight = float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
for _ in range(in_flight):
    s.sendto(query, (host, port))
answered, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    try:
        s.recv(2048)
    except socket.timeout:
        s.sendto(query, (host, port))
        continue
    answered += 1
    s.sendto(query, (host, port))
print(answered, time.perf_counter() - start)
"""
"""The load generator, in a process of its own so the node has its core to itself."""


def _item_memory() -> Figure:
    """What the store holds per item: the item (value, key, signature, salt) and its entry."""
    key = Ed25519PrivateKey.generate()
    store = ItemStore(capacity=ITEMS, per_source=ITEMS)
    memory = LiveMemory()
    memory.start()
    for n in range(ITEMS):
        item = MutableItem.sign(key, bencoding.encode(b"r" * 250), 1, b"%d" % n)
        store.put(item, 0.0, source=_ip(n))
    del item
    live = memory.measure()
    memory.stop()
    assert len(store) == ITEMS
    return Figure(
        f"DHT memory per stored record ({ITEMS:,} items, 250 B values)", live / ITEMS / 1024, "KiB"
    )


def _registration_memory() -> Figure:
    core = _new_core()
    nodes = [_Node((_ip(n + 1), 4000)) for n in range(REGISTRATIONS)]
    memory = LiveMemory()
    memory.start()
    for node in nodes:
        node.register(core)
    for node in nodes:
        node.link = None  # the client's half of each link is not the relay's
    gc.collect()
    live = memory.measure()
    memory.stop()
    assert len(core.registrations()) == REGISTRATIONS
    return Figure(
        f"relay memory per registration ({REGISTRATIONS:,} registered)",
        live / REGISTRATIONS / 1024,
        "KiB",
    )


async def run() -> list[Figure]:
    return [*await _answering(), _item_memory(), _registration_memory()]
