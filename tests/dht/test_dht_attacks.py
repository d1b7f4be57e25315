"""The DHT node under attack (issue 11): storage floods, amplification, rate-limit evasion.

Each test reproduces one attack on the simulated internet, under a MockClock, and checks the
defence: what the attacker gets, and that other sources are not hurt.
"""

from __future__ import annotations

import random

import trio
import trio.testing

from macula_nat.dht.config import DhtConfig
from macula_nat.dht.krpc import Get, Ping, Put, Response, decode, encode
from macula_nat.dht.mutable_item import ImmutableItem
from macula_nat.dht.node import open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.sim import open_internet

from .swarm import LINK, PORT, public_config
from .test_node import exchange, raw_endpoint


async def test_ipv6_addresses_of_one_64_share_one_rate_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A host owns its whole /64: rotating through its addresses gets it no more answers."""
    async with open_internet(seed=41) as internet:
        host = internet.add_host(["2001:db8:ffff::1"], link=LINK)
        config = DhtConfig(listen=("2001:db8:ffff::1", PORT), query_rate=10, query_burst=20)
        async with open_dht_node(host, config) as node:
            assert node.address is not None
            flooders = []
            for index in range(100):
                address = f"2001:db8:1:2::{index + 1:x}"
                flooder = internet.add_host([address], link=LINK)
                flooders.append(await flooder.bind((address, 0)))
            sender = NodeId.random(random.Random(1))
            for index, endpoint in enumerate(flooders):
                ping = Ping(transaction_id=index.to_bytes(2, "big"), sender=sender)
                await endpoint.send_to(encode(ping), node.address)
            await trio.sleep(1)
            stats = node.statistics()
            assert 20 <= stats.responses_sent <= 31  # one bucket: the burst plus 1 s of refill
            assert stats.rate_limited == 100 - stats.responses_sent
            # A host in another /64 has a bucket of its own.
            other = internet.add_host(["2001:db8:1:3::1"], link=LINK)
            endpoint = await other.bind(("2001:db8:1:3::1", 0))
            await endpoint.send_to(encode(Ping(transaction_id=b"ok", sender=sender)), node.address)
            with trio.fail_after(5):
                while not isinstance(decode((await endpoint.receive_from())[0]), Response):
                    pass


async def put_from(endpoint: UdpEndpoint, item: ImmutableItem, to: Address, tid: int) -> bool:
    """One writer's get-for-a-token then put; whether the node stored it."""
    sender = NodeId.random(random.Random(tid))
    got = await exchange(
        endpoint, Get(transaction_id=b"g%d" % tid, sender=sender, target=item.target), to
    )
    assert isinstance(got, Response) and got.token is not None
    put = Put(transaction_id=b"p%d" % tid, sender=sender, token=got.token, item=item)
    return isinstance(await exchange(endpoint, put, to), Response)


async def test_a_put_flood_from_one_source_evicts_no_other_sources_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=42) as internet:
        stack, config = public_config(internet, DhtConfig(max_items=32, query_rate=1e6))
        async with open_dht_node(stack, config) as node:
            assert node.address is not None
            others = [ImmutableItem(b"5:own%02d" % n) for n in range(8)]
            for n, item in enumerate(others):
                assert await put_from(await raw_endpoint(internet), item, node.address, n)
                await trio.sleep(1)
            flooder = await raw_endpoint(internet)
            for n in range(200):
                flood = ImmutableItem(b"i%de" % (1000 + n))
                assert await put_from(flooder, flood, node.address, 100 + n)
            reader = await raw_endpoint(internet)
            sender = NodeId.random(random.Random(0))
            for n, item in enumerate(others):
                got = await exchange(
                    reader,
                    Get(transaction_id=b"r%d" % n, sender=sender, target=item.target),
                    node.address,
                )
                assert isinstance(got, Response) and got.value == item.value
            stats = node.statistics()
            assert (stats.items, stats.item_sources, stats.largest_item_holding) == (32, 9, 24)
