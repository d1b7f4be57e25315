"""The DHT node under attack (issue 11): storage floods, amplification, rate-limit evasion.

Each test reproduces one attack on the simulated internet, under a MockClock, and checks the
defence: what the attacker gets, and that other sources are not hurt.
"""

from __future__ import annotations

import random

import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from macula_nat.dht.config import DhtConfig
from macula_nat.dht.krpc import (
    AnnouncePeer,
    FindNode,
    Get,
    GetPeers,
    Ping,
    Put,
    Query,
    Response,
    decode,
    encode,
)
from macula_nat.dht.mutable_item import ImmutableItem, MutableItem, encode_value
from macula_nat.dht.node import open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.sim import open_internet

from .swarm import LINK, PORT, open_swarm, public_config
from .test_node import exchange, raw_endpoint, sum_of


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
            reply = await exchange(
                endpoint, Ping(transaction_id=b"ok", sender=sender), node.address
            )
            assert isinstance(reply, Response)


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


async def raw_exchange(endpoint: UdpEndpoint, query: Query, to: Address) -> bytes:
    """Send ``query``; the datagram that answers it (the node's own verifying pings skipped)."""
    await endpoint.send_to(encode(query), to)
    with trio.fail_after(5):
        for _ in range(10):
            data = (await endpoint.receive_from())[0]
            if not isinstance(decode(data), Query):
                return data
    raise AssertionError("only queries came back")


async def test_an_unproven_address_is_answered_within_3x(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Spoofing a victim's address, an attacker gets at most 3x its bytes sent to the victim;
    the real owner of an address proves it by echoing the token, then gets the value."""
    async with open_internet(seed=43) as internet, open_swarm(internet, 20) as swarm:
        node = swarm.nodes[0]
        assert node.address is not None
        big = ImmutableItem(encode_value(b"x" * 996))
        assert len(big.value) == 1000
        writer = await raw_endpoint(internet)
        assert await put_from(writer, big, node.address, 1)
        info_hash = NodeId.random(random.Random(2))
        for n in range(30):  # 30 peers under one info-hash, each from an address of its own
            peer = await raw_endpoint(internet)
            got = await exchange(
                peer,
                GetPeers(transaction_id=b"a", sender=info_hash, info_hash=info_hash),
                node.address,
            )
            assert isinstance(got, Response) and got.token is not None
            announce = AnnouncePeer(
                transaction_id=b"b",
                sender=info_hash,
                info_hash=info_hash,
                port=n + 1,
                token=got.token,
            )
            assert isinstance(await exchange(peer, announce, node.address), Response)

        victim = await raw_endpoint(internet)  # the address an attacker would spoof
        trimmed = node.statistics().trimmed
        sender = NodeId.random(random.Random(3))
        queries: list[Query] = [
            Get(transaction_id=b"g1", sender=sender, target=big.target),
            FindNode(transaction_id=b"f1", sender=sender, target=sender),
            GetPeers(transaction_id=b"p1", sender=sender, info_hash=info_hash),
        ]
        answers: dict[type, Response] = {}
        for query in queries:
            answer = await raw_exchange(victim, query, node.address)
            assert len(answer) <= 3 * len(encode(query)), (query, len(answer))
            decoded = decode(answer)
            assert isinstance(decoded, Response)
            answers[type(query)] = decoded
        get_answer = answers[Get]
        assert get_answer.value is None  # held back: 1000 bytes do not fit 3x
        assert get_answer.token is not None and get_answer.nodes
        assert answers[GetPeers].token is not None and answers[GetPeers].peers
        assert answers[FindNode].nodes
        stats = node.statistics()
        assert stats.trimmed == trimmed + 3 and stats.limits.amplification == 3.0

        # The victim's own client proves its address by echoing the token: the value comes.
        again = Get(transaction_id=b"g2", sender=sender, target=big.target, token=get_answer.token)
        proven = decode(await raw_exchange(victim, again, node.address))
        assert isinstance(proven, Response) and proven.value == big.value
        # ... and from then on nothing is cut for it.
        full = decode(await raw_exchange(victim, queries[2], node.address))
        assert isinstance(full, Response) and len(full.peers) == 30
        assert node.statistics().trimmed == trimmed + 3


async def test_our_client_asks_again_with_the_token_for_large_items(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Nodes that remember no proven address answer every get trimmed; our get still finds
    a 1000-byte item (one more round trip, with each node's token)."""
    config = DhtConfig(proven_addresses=1)
    async with open_internet(seed=44) as internet, open_swarm(internet, 20, config) as swarm:
        big = ImmutableItem(encode_value(b"y" * 995))
        assert (await swarm.nodes[0].put(big)).stored >= 4
        trimmed = sum_of(swarm, "trimmed")
        assert (await swarm.nodes[9].get(big.target)).item == big
        assert sum_of(swarm, "trimmed") > trimmed
        key = Ed25519PrivateKey.generate()
        mutable = MutableItem.sign(key, encode_value(b"z" * 995), 1, b"salt")
        assert (await swarm.nodes[0].put(mutable)).stored >= 4
        newer = MutableItem.sign(key, encode_value(b"w" * 995), 2, b"salt")
        assert (await swarm.nodes[1].put(newer)).stored >= 4
        assert (await swarm.nodes[12].get(mutable.target, salt=b"salt")).item == newer


async def announce_from(endpoint: UdpEndpoint, info_hash: NodeId, to: Address, port: int) -> bool:
    """One peer's get_peers-for-a-token then announce_peer; whether the node took it."""
    got = await exchange(
        endpoint, GetPeers(transaction_id=b"a", sender=info_hash, info_hash=info_hash), to
    )
    assert isinstance(got, Response) and got.token is not None
    announce = AnnouncePeer(
        transaction_id=b"b", sender=info_hash, info_hash=info_hash, port=port, token=got.token
    )
    return isinstance(await exchange(endpoint, announce, to), Response)


async def test_an_announce_flood_from_one_source_evicts_no_other_sources_peers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = DhtConfig(max_info_hashes=16, max_peers_per_info_hash=4, query_rate=1e6)
    async with open_internet(seed=45) as internet:
        stack, config = public_config(internet, config)
        async with open_dht_node(stack, config) as node:
            assert node.address is not None
            rng = random.Random(5)
            others = []
            for n in range(8):
                endpoint = await raw_endpoint(internet)
                info_hash = NodeId.random(rng)
                assert await announce_from(endpoint, info_hash, node.address, 1000 + n)
                others.append((info_hash, (endpoint.local_address[0], 1000 + n)))
                await trio.sleep(1)
            flooder = await raw_endpoint(internet)
            shared = others[0][0]
            assert await announce_from(flooder, shared, node.address, 1)  # into a swarm too
            for n in range(100):
                assert await announce_from(flooder, NodeId.random(rng), node.address, n + 2)
            reader = await raw_endpoint(internet)
            for info_hash, peer in others:
                get = GetPeers(transaction_id=b"r", sender=info_hash, info_hash=info_hash)
                found = await exchange(reader, get, node.address)
                assert isinstance(found, Response) and peer in found.peers
            stats = node.statistics()
            assert stats.info_hashes == 16 and stats.peer_sources == 9
            assert stats.announcements == 17 and stats.largest_peer_holding == 9
