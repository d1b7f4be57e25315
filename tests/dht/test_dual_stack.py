"""One DHT node in both swarms (BEP 32): an IPv4 node and an IPv6 node on one dual-stack host
that share their storage and id, each with its own routing table. What an IPv6-only node stores
through one is found by an IPv4-only node through the other, and the other way round."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from macula_nat.dht.config import DhtConfig
from macula_nat.dht.krpc import FindNode, Response
from macula_nat.dht.mutable_item import MutableItem, encode_value
from macula_nat.dht.node import DhtNode, open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net.sim import open_internet

GATEWAY4 = ("198.51.100.10", 6881)
GATEWAY6 = ("2001:db8::10", 6881)


async def test_what_one_version_stores_the_other_finds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=3) as internet:
        gateway = internet.add_host([GATEWAY4[0], GATEWAY6[0]])
        four_host = internet.add_host(["203.0.113.4"])
        six_host = internet.add_host(["2001:db8:4::4"])
        item = MutableItem.sign(Ed25519PrivateKey.generate(), encode_value(b"six"), 1, b"salt")
        other = MutableItem.sign(Ed25519PrivateKey.generate(), encode_value(b"four"), 1, b"salt")
        async with (
            open_dht_node(gateway, DhtConfig(listen=GATEWAY4)) as dht4,
            open_dht_node(gateway, DhtConfig(listen=GATEWAY6), storage=dht4) as dht6,
            open_dht_node(four_host, DhtConfig(listen=("203.0.113.4", 0), bootstrap=[GATEWAY4]))
            as four,
            open_dht_node(six_host, DhtConfig(listen=("2001:db8:4::4", 0), bootstrap=[GATEWAY6]))
            as six,
        ):  # fmt: skip
            assert (await six.bootstrap(), await four.bootstrap()) == (1, 1)
            stored = await six.put(item)
            found = await four.get(item.target, salt=b"salt")
            stored_other = await four.put(other)
            found_other = await six.get(other.target, salt=b"salt")
            # each swarm has its own table: the IPv4 node is not among the IPv6 one's nodes
            answer = dht4.routing_table.closest(NodeId(0), 64)
            answer6 = dht6.routing_table.closest(NodeId(0), 64)
            reply = await four._query(GATEWAY4, FindNode(target=NodeId(0), **four._fields()))
    assert dht6.node_id == dht4.node_id
    assert stored.stored >= 1 and found.item == item
    assert stored_other.stored >= 1 and found_other.item == other
    assert {node.address for node in answer} == {four.address}
    assert {node.address for node in answer6} == {six.address}
    assert isinstance(reply, Response) and reply.nodes6 == ()


async def test_storage_is_shared_only_with_the_other_ip_version() -> None:
    async with open_internet(seed=4) as internet:
        host = internet.add_host(["198.51.100.10", "198.51.100.11"])
        first = DhtNode(host, DhtConfig(listen=("198.51.100.10", 6881)))
        with pytest.raises(ValueError, match="only with the other IP version"):
            DhtNode(host, DhtConfig(listen=("198.51.100.11", 6881)), storage=first)
