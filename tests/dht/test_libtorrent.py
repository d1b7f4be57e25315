"""Interop with libtorrent (an implementation no one here wrote), on 127.0.0.1 and ::1 only
(the IPv6 run is BEP 32: ``nodes6`` and 18-byte compact peers, skipped loudly without ::1).

Each test runs a fresh swarm of our nodes plus a libtorrent session joined to it, and checks one
direction: libtorrent puts a BEP 44 mutable item our node gets; our node puts one libtorrent gets;
libtorrent announces a peer our node finds; our node announces one libtorrent finds.

SAFETY: the session is built with every setting given at construction, its DHT bootstrap nodes
replaced by ours, no routers, and LSD, UPnP and NAT-PMP off, listening on 127.0.0.1 only, so it
never contacts the public DHT. Every step is bounded by ``fail_after``.

All our nodes share the IP 127.0.0.1, which libtorrent's DHT DoS blocker counts as ONE node: at
its default (``dht_block_ratelimit`` 5: 50 packets within 10 s) it bans that IP for
``dht_block_timeout`` (5 min) and then drops every packet from all our nodes, replies included,
so its queries to us "time out". The session's limit is therefore raised here; on the real DHT
every node has its own IP and a node of ours sends far less than that to any one peer.
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from macula_nat.dht import bencoding
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.mutable_item import MutableItem, mutable_target, public_key_bytes
from macula_nat.dht.node import DhtNode, open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import RealUdpStack

lt = pytest.importorskip(
    "libtorrent", reason="libtorrent is not installed (pip install libtorrent)"
)

LOOPBACKS = ["127.0.0.1", "::1"]
OUR_NODES = 8
STEP = 15.0
"""Seconds any one step may take (each takes well under one on loopback)."""
POLL = 0.1
LOOKUP_POLL = 0.5
"""Seconds between our repeated lookups while waiting for libtorrent's announce to land."""


def config(loopback: str) -> DhtConfig:
    return DhtConfig(listen=(loopback, 0), query_rate=1e6, query_burst=1e6, query_timeout=1.0,
                     operation_timeout=10)  # fmt: skip


def endpoint_text(address: tuple[str, int]) -> str:
    """``ip:port``, ``[ip]:port`` for IPv6: how libtorrent's settings name an endpoint."""
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def loopback_ipv6_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def libtorrent_keypair(seed: bytes) -> tuple[bytes, bytes]:
    """libtorrent's (public, secret) keys for an ed25519 seed: its secret key is the SHA-512 of
    the seed, clamped (orlp/ed25519), and the public key is the RFC 8032 one."""
    expanded = bytearray(hashlib.sha512(seed).digest())
    expanded[0] &= 248
    expanded[31] &= 63
    expanded[31] |= 64
    public = public_key_bytes(Ed25519PrivateKey.from_private_bytes(seed))
    return public, bytes(expanded)


def session_settings(loopback: str, bootstrap: str) -> dict[str, Any]:
    # For debugging, add lt.alert_category.dht_log (and look at dht_log_alert / dht_pkt_alert).
    return {
        "listen_interfaces": endpoint_text((loopback, 0)),
        "outgoing_interfaces": loopback,
        "dht_bootstrap_nodes": bootstrap,
        "enable_dht": True,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_prefer_verified_node_ids": False,
        "dht_enforce_node_id": False,
        # All our nodes are 127.0.0.1: one "node" to the DoS blocker (see the module docstring).
        "dht_block_ratelimit": 1000,
        "alert_mask": lt.alert_category.dht
        | lt.alert_category.dht_operation
        | lt.alert_category.error,
    }


class Session:
    """A libtorrent session and its alerts, polled from Trio."""

    def __init__(self, loopback: str, bootstrap: str) -> None:
        self.loopback = loopback
        self.session = lt.session(session_settings(loopback, bootstrap))

    async def wait_alert(self, accept: Callable[[Any], bool]) -> Any:
        with trio.fail_after(STEP):
            while True:
                for alert in self.session.pop_alerts():
                    if accept(alert):
                        return alert
                await trio.sleep(POLL)


@asynccontextmanager
async def open_our_swarm(loopback: str) -> AsyncIterator[list[DhtNode]]:
    nodes: list[DhtNode] = []
    async with trio.open_nursery() as nursery:
        stack = RealUdpStack([loopback])

        async def run(task_status: trio.TaskStatus[DhtNode]) -> None:
            async with open_dht_node(stack, config(loopback)) as node:
                task_status.started(node)
                await trio.sleep_forever()

        with trio.fail_after(STEP):
            for _ in range(OUR_NODES):
                node = await nursery.start(run)
                if nodes:
                    await node.bootstrap([nodes[0].contact.address])
                nodes.append(node)
            for node in nodes:
                await node.find_node(node.node_id)
        yield nodes
        nursery.cancel_scope.cancel()


@pytest.fixture(params=LOOPBACKS)
async def swarm(request: pytest.FixtureRequest) -> AsyncIterator[tuple[list[DhtNode], Session]]:
    """Our nodes, and a libtorrent session that has bootstrapped from them, on one loopback."""
    loopback: str = request.param
    if ":" in loopback and not loopback_ipv6_works():
        pytest.skip("NO IPv6 DHT INTEROP: this machine has no IPv6 loopback (::1)")
    async with open_our_swarm(loopback) as nodes:
        session = Session(loopback, endpoint_text(nodes[0].contact.address))
        await session.wait_alert(lambda a: isinstance(a, lt.dht_bootstrap_alert))
        yield nodes, session
        del session


async def test_libtorrent_puts_we_get(swarm: tuple[list[DhtNode], Session]) -> None:
    nodes, session = swarm
    seed = bytes(range(32))
    public, secret = libtorrent_keypair(seed)
    salt = b"from-libtorrent"
    session.session.dht_put_mutable_item(secret, public, b"hello from libtorrent", salt)
    put = await session.wait_alert(lambda a: isinstance(a, lt.dht_put_alert))
    assert put.num_success > 0
    with trio.fail_after(STEP):
        got = await nodes[3].get(mutable_target(public, salt), salt=salt)
    assert isinstance(got.item, MutableItem)
    assert bencoding.decode(got.item.value) == b"hello from libtorrent"


async def test_we_put_libtorrent_gets(swarm: tuple[list[DhtNode], Session]) -> None:
    nodes, session = swarm
    key = Ed25519PrivateKey.generate()
    item = MutableItem.sign(key, bencoding.encode(b"hello from macula"), 7, b"ours")
    with trio.fail_after(STEP):
        assert (await nodes[5].put(item)).stored > 0
    session.session.dht_get_mutable_item(item.public_key, b"ours")
    found = await session.wait_alert(
        lambda a: isinstance(a, lt.dht_mutable_item_alert) and a.seq == 7
    )
    assert found.key == item.public_key
    assert found.item == b"hello from macula"


async def test_libtorrent_announces_we_find(swarm: tuple[list[DhtNode], Session]) -> None:
    nodes, session = swarm
    wanted = NodeId.from_bytes(hashlib.sha1(b"libtorrent announces").digest())
    session.session.dht_announce(lt.sha1_hash(wanted.to_bytes()), 7777, 0)
    with trio.fail_after(STEP):
        while True:
            if (session.loopback, 7777) in (await nodes[3].get_peers(wanted)).peers:
                break
            await trio.sleep(LOOKUP_POLL)


async def test_we_announce_libtorrent_finds(swarm: tuple[list[DhtNode], Session]) -> None:
    nodes, session = swarm
    offered = NodeId.from_bytes(hashlib.sha1(b"macula announces").digest())
    with trio.fail_after(STEP):
        assert (await nodes[6].announce_peer(offered, 8888)).stored > 0
    session.session.dht_get_peers(lt.sha1_hash(offered.to_bytes()))
    reply = await session.wait_alert(
        lambda a: (
            isinstance(a, lt.dht_get_peers_reply_alert) and (session.loopback, 8888) in a.peers()
        )
    )
    assert reply.num_peers() >= 1


@pytest.mark.parametrize("swarm", ["127.0.0.1"], indirect=True)  # what 'localhost' names here
async def test_we_join_through_libtorrent_named_by_a_loopback_host_name(
    swarm: tuple[list[DhtNode], Session],
) -> None:
    """A bootstrap host given by name (``localhost``, resolved by the system on loopback only)."""
    nodes, session = swarm
    loopback = nodes[0].contact.address[0]
    port = session.session.listen_port()
    named = attrs.evolve(config(loopback), bootstrap=[("localhost", port)])
    async with open_dht_node(RealUdpStack(), named) as joining:
        with trio.fail_after(STEP):
            known = await joining.bootstrap()
        ours = {node.node_id for node in nodes}
        table = {node.node_id for node in joining.routing_table.closest(joining.node_id, 64)}
    assert known > 1 and table & ours  # libtorrent answered, and told us of our other nodes
    assert table - ours  # libtorrent itself


@pytest.mark.parametrize("loopback", LOOPBACKS)
async def test_libtorrent_keeps_a_node_of_ours_only_once_it_is_not_read_only(
    loopback: str,
) -> None:
    """BEP 43 as the public DHT's most common implementation reads it: a node behind a NAT
    queries with ``ro=1`` and stays out of libtorrent's routing table; the same node made a
    full node (`DhtNode.set_read_only`) is kept after its next query."""
    if ":" in loopback and not loopback_ipv6_works():
        pytest.skip("NO IPv6 DHT INTEROP: this machine has no IPv6 loopback (::1)")
    session = Session(loopback, "")  # no bootstrap: only who queries it enters its table
    target = (loopback, session.session.listen_port())
    async with open_dht_node(RealUdpStack([loopback]), config(loopback)) as node:
        node.set_read_only(True)
        with trio.fail_after(STEP):
            for _ in range(3):
                assert await node.ping(target) is not None  # it answers a read-only node
                await node.find_node(node.node_id)
        assert await libtorrent_table_size(session) == 0
        node.set_read_only(False)
        with trio.fail_after(STEP):
            await node.find_node(node.node_id)
        assert await libtorrent_table_size(session) == 1


async def libtorrent_table_size(session: Session) -> int:
    """Nodes in the session's routing table, its replacement caches included."""
    session.session.post_dht_stats()
    stats = await session.wait_alert(lambda a: isinstance(a, lt.dht_stats_alert))
    return sum(b["num_nodes"] + b["num_replacements"] for b in stats.routing_table)
