"""The DHT node actor on the simulated internet: a 20-node swarm, bad input, read-only, restarts."""

from __future__ import annotations

import math
import random

import attrs
import pytest
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from macula_nat.actors import Supervisor, open_actor, run_actor
from macula_nat.dht import bencoding
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.error_code import ErrorCode
from macula_nat.dht.krpc import (
    Error,
    FindNode,
    Get,
    Message,
    Ping,
    Put,
    Query,
    Response,
    decode,
    encode,
)
from macula_nat.dht.mutable_item import ImmutableItem, MutableItem, encode_value
from macula_nat.dht.node import DhtNode, DhtServer, open_dht_node
from macula_nat.dht.node_id import NodeId
from macula_nat.net import Address, UdpEndpoint
from macula_nat.net.rtt import RttEstimate
from macula_nat.net.sim import Internet, LinkProfile, Preset, add_site, open_internet

from .swarm import PORT, Swarm, open_swarm, public_config

SWARM = 20
SALT = b"test-salt"


def sum_of(swarm: Swarm, field: str) -> int:
    return sum(getattr(node.statistics(), field) for node in swarm.nodes)


async def raw_endpoint(internet: Internet) -> UdpEndpoint:
    host = internet.add_host()
    return await host.bind((host.addresses[0], 0))


async def exchange(endpoint: UdpEndpoint, message: Message | bytes, to: Address) -> Message:
    data = message if isinstance(message, bytes) else encode(message)
    await endpoint.send_to(data, to)
    with trio.fail_after(5):
        for _ in range(10):
            reply = decode((await endpoint.receive_from())[0])
            if not isinstance(reply, Query):  # the node pinging us back to verify us
                return reply
    raise AssertionError("only queries came back")


async def assert_silent(endpoint: UdpEndpoint) -> None:
    with trio.move_on_after(5):
        for _ in range(10):
            data, source = await endpoint.receive_from()
            if not isinstance(decode(data), Query):
                pytest.fail(f"unexpected reply from {source}: {data!r}")


def signed(key: Ed25519PrivateKey, value: object, seq: int, salt: bytes = SALT) -> MutableItem:
    return MutableItem.sign(key, encode_value(value), seq, salt)  # type: ignore[arg-type]


async def test_mutable_put_get_across_swarm(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=1) as internet, open_swarm(internet, SWARM) as swarm:
        writer, reader = swarm.nodes[3], swarm.nodes[17]
        key = Ed25519PrivateKey.generate()
        first = signed(key, b"first", 1)
        put = await writer.put(first)
        assert put.stored >= 4
        got = await reader.get(first.target, salt=SALT)
        assert got.item == first
        assert got.lookup.hops <= 2 * math.log2(SWARM)

        second = signed(key, {b"n": 2}, 2)
        assert (await writer.put(second, cas=1)).stored >= 4
        assert (await reader.get(first.target, salt=SALT)).item == second

        stale = await writer.put(signed(key, b"old", 1))
        assert stale.stored == 0
        assert set(stale.errors) == {ErrorCode.SEQUENCE_TOO_OLD}
        assert sum_of(swarm, "stale_seqs") == len(stale.errors)

        wrong_cas = await writer.put(signed(key, b"third", 3), cas=1)
        assert wrong_cas.stored == 0
        assert set(wrong_cas.errors) == {ErrorCode.CAS_MISMATCH}
        assert sum_of(swarm, "cas_mismatches") == len(wrong_cas.errors)

        # A reader that already has seq 2 is told "nothing newer" and gets no value.
        assert (await reader.get(first.target, salt=SALT, seq=2)).item is None
        # The wrong salt is another target, and nothing is there.
        assert (await reader.get(first.target, salt=b"other")).item is None


async def test_immutable_put_get(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=2) as internet, open_swarm(internet, SWARM) as swarm:
        item = ImmutableItem(encode_value(b"hello, immutable world"))
        assert (await swarm.nodes[0].put(item)).stored >= 4
        assert (await swarm.nodes[9].get(item.target)).item == item


async def test_announce_and_get_peers(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=3) as internet, open_swarm(internet, SWARM) as swarm:
        info_hash = NodeId.random(random.Random(7))
        assert (await swarm.nodes[1].announce_peer(info_hash, 4242)).stored >= 4
        assert (await swarm.nodes[2].announce_peer(info_hash)).stored >= 4  # implied port
        found = await swarm.nodes[15].get_peers(info_hash)
        assert set(found.peers) == {
            (swarm.nodes[1].contact.address[0], 4242),
            swarm.nodes[2].contact.address,
        }
        assert not (await swarm.nodes[15].get_peers(NodeId.random(random.Random(8)))).peers


async def test_read_only_node_behind_nat(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=4) as internet, open_swarm(internet, SWARM) as swarm:
        site = add_site(internet.public, Preset.PORT_RESTRICTED_CONE)
        config = DhtConfig(read_only=True, bootstrap=[swarm.nodes[0].contact.address])
        async with open_dht_node(site.host, config) as hidden:
            assert await hidden.bootstrap() > 0
            key = Ed25519PrivateKey.generate()
            item = signed(key, b"from behind a NAT", 1)
            assert (await hidden.put(item)).stored >= 4
            assert (await swarm.nodes[5].get(item.target, salt=SALT)).item == item
            assert (await hidden.get(item.target, salt=SALT)).item == item
            # BEP 43: nobody keeps a read-only node in its table.
            assert all(hidden.node_id not in node.routing_table for node in swarm.nodes)

        # A public read-only node answers nothing, and counts what it ignored.
        stack, public = public_config(internet, DhtConfig(read_only=True))
        async with open_dht_node(stack, public) as quiet:
            assert quiet.address is not None
            assert await swarm.nodes[0].ping(quiet.address) is None
            assert quiet.statistics().ignored_read_only == 1
            assert quiet.statistics().responses_sent == 0


async def test_per_source_rate_limit(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=5) as internet:
        stack, config = public_config(internet, DhtConfig(query_rate=10, query_burst=20))
        async with open_dht_node(stack, config) as node:
            assert node.address is not None
            flooder = await raw_endpoint(internet)
            sender = NodeId.random(random.Random(1))
            for index in range(100):
                ping = Ping(transaction_id=index.to_bytes(2, "big"), sender=sender)
                await flooder.send_to(encode(ping), node.address)
            answered = 0
            with trio.move_on_after(1):
                for _ in range(200):
                    data, _ = await flooder.receive_from()
                    answered += isinstance(decode(data), Response)  # (not our verifying ping)
            stats = node.statistics()
            assert answered == stats.responses_sent
            assert 20 <= answered <= 31  # the burst, plus what 1 s of refill allows
            assert stats.rate_limited == 100 - answered
            # Another source is not affected.
            other = await raw_endpoint(internet)
            reply = await exchange(other, Ping(transaction_id=b"ok", sender=sender), node.address)
            assert isinstance(reply, Response)


async def test_malformed_and_oversized_rejected_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=6) as internet:
        stack, config = public_config(internet, DhtConfig())
        async with open_dht_node(stack, config) as node:
            assert node.address is not None
            peer = await raw_endpoint(internet)
            sender = NodeId.random(random.Random(2))

            await peer.send_to(b"not bencoding at all", node.address)
            await assert_silent(peer)  # no transaction id: silence
            assert node.statistics().malformed == 1

            unknown = bencoding.encode(
                {b"t": b"xy", b"y": b"q", b"q": b"nonsense", b"a": {b"id": sender.to_bytes()}}
            )
            reply = await exchange(peer, unknown, node.address)
            assert isinstance(reply, Error) and reply.code == ErrorCode.METHOD_UNKNOWN

            token_reply = await exchange(
                peer, Get(transaction_id=b"g1", sender=sender, target=sender), node.address
            )
            assert isinstance(token_reply, Response) and token_reply.token is not None
            oversized = bencoding.encode(
                {
                    b"t": b"p1",
                    b"y": b"q",
                    b"q": b"put",
                    b"a": {
                        b"id": sender.to_bytes(),
                        b"token": token_reply.token,
                        b"v": b"x" * 1200,
                    },
                }
            )
            reply = await exchange(peer, oversized, node.address)
            assert isinstance(reply, Error) and reply.code == ErrorCode.MESSAGE_TOO_BIG
            stats = node.statistics()
            assert (stats.malformed, stats.oversized, stats.items) == (3, 1, 0)


async def test_forged_writes_rejected_and_counted(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=7) as internet:
        stack, config = public_config(internet, DhtConfig())
        async with open_dht_node(stack, config) as node:
            assert node.address is not None
            peer = await raw_endpoint(internet)
            sender = NodeId.random(random.Random(3))
            item = signed(Ed25519PrivateKey.generate(), b"genuine", 5)
            got = await exchange(
                peer, Get(transaction_id=b"g1", sender=sender, target=item.target), node.address
            )
            assert isinstance(got, Response) and got.token is not None

            forged = attrs.evolve(item, value=encode_value(b"tampered"))
            reply = await exchange(
                peer,
                Put(transaction_id=b"p1", sender=sender, token=got.token, item=forged),
                node.address,
            )
            assert isinstance(reply, Error) and reply.code == ErrorCode.INVALID_SIGNATURE

            reply = await exchange(
                peer,
                Put(transaction_id=b"p2", sender=sender, token=b"made-up!", item=item),
                node.address,
            )
            assert isinstance(reply, Error) and reply.code == ErrorCode.PROTOCOL

            stats = node.statistics()
            assert (stats.bad_signatures, stats.bad_tokens, stats.items) == (1, 1, 0)

            reply = await exchange(
                peer,
                Put(transaction_id=b"p3", sender=sender, token=got.token, item=item),
                node.address,
            )
            assert isinstance(reply, Response)
            assert node.statistics().items == 1


async def test_unsolicited_responses_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=8) as internet:
        stack, config = public_config(internet, DhtConfig())
        async with open_dht_node(stack, config) as node:
            assert node.address is not None
            target, impostor = await raw_endpoint(internet), await raw_endpoint(internet)
            sender = NodeId.random(random.Random(4))
            stray = Response(transaction_id=b"zz", sender=sender)
            await impostor.send_to(encode(stray), node.address)

            async def answer_from_impostor() -> None:
                data, _ = await target.receive_from()
                query = decode(data)
                # Right transaction id, wrong source address: not the answer.
                reply = Response(transaction_id=query.transaction_id, sender=sender)
                await impostor.send_to(encode(reply), node.address)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer_from_impostor)
                assert await node.ping(target.local_address) is None
            stats = node.statistics()
            assert (stats.unsolicited, stats.timeouts, stats.responses_received) == (2, 1, 0)
            await assert_silent(impostor)


async def test_forged_get_answers_ignored(autojump_clock: trio.testing.MockClock) -> None:
    """A node answering get with a tampered item, or with another key's item, is not believed."""
    async with open_internet(seed=9) as internet:
        liar = await raw_endpoint(internet)
        liar_id = NodeId.random(random.Random(5))
        genuine = signed(Ed25519PrivateKey.generate(), b"genuine", 1)
        other_key = signed(Ed25519PrivateKey.generate(), b"someone else", 9)
        lies = [attrs.evolve(genuine, value=encode_value(b"tampered")), other_key]

        async def lie() -> None:
            while True:
                data, source = await liar.receive_from()
                query = decode(data)
                fields: dict[str, object] = {}
                if isinstance(query, Get) and lies:
                    lie = lies.pop(0)
                    fields = {
                        "value": lie.value,
                        "key": lie.public_key,
                        "signature": lie.signature,
                        "seq": lie.seq,
                        "token": b"tok",
                    }
                reply = Response(transaction_id=query.transaction_id, sender=liar_id, **fields)  # type: ignore[arg-type]
                await liar.send_to(encode(reply), source)

        stack, config = public_config(internet, DhtConfig(bootstrap=[liar.local_address]))
        async with trio.open_nursery() as nursery, open_dht_node(stack, config) as node:
            nursery.start_soon(lie)
            assert await node.bootstrap() == 1
            for _ in range(2):
                assert (await node.get(genuine.target, salt=SALT)).item is None
            assert node.statistics().bad_signatures == 2
            nursery.cancel_scope.cancel()


async def test_restart_keeps_state_and_port(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=10) as internet, open_swarm(internet, SWARM) as swarm:
        stack, config = public_config(
            internet, DhtConfig(bootstrap=[swarm.nodes[0].contact.address])
        )
        node = DhtNode(stack, config)
        async with open_actor(Supervisor([node.child_spec()])):
            await node.bootstrap()
            item = signed(Ed25519PrivateKey.generate(), b"survives", 1)
            assert (await node.put(item)).stored >= 4
            first, address, known = node.server, node.address, len(node.routing_table)
            assert first is not None and known > 0

            await first.stop("crash")  # abnormal: the supervisor restarts it
            for _ in range(100):
                await trio.sleep(0.01)
                if node.server is not first and node.server is not None and node.server.alive:
                    break
            assert node.address == address
            assert len(node.routing_table) >= known
            assert (await node.get(item.target, salt=SALT)).item == item
            assert await swarm.nodes[4].ping(address) == node.node_id
            assert node.statistics().queries_sent > 0  # counters survive too


async def test_republish_before_expiry(autojump_clock: trio.testing.MockClock) -> None:
    config = DhtConfig(item_lifetime=600, republish_interval=300, maintenance_interval=60)
    async with open_internet(seed=11) as internet, open_swarm(internet, SWARM, config) as swarm:
        key = Ed25519PrivateKey.generate()
        kept, dropped = signed(key, b"kept", 1), signed(key, b"dropped", 1, salt=b"other")
        await swarm.nodes[2].put(kept, republish_until=trio.current_time() + 1500)
        await swarm.nodes[2].put(dropped)
        await trio.sleep(1200)  # two lifetimes
        assert (await swarm.nodes[11].get(kept.target, salt=SALT)).item == kept
        assert (await swarm.nodes[11].get(dropped.target, salt=b"other")).item is None
        assert swarm.nodes[2].statistics().republished >= 3
        await trio.sleep(1500)  # past republish_until and a lifetime more: gone
        assert (await swarm.nodes[11].get(kept.target, salt=SALT)).item is None
        assert swarm.nodes[2].statistics().own_items == 0


async def test_operations_need_a_running_server(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=12) as internet:
        node = DhtNode(internet.add_host(), DhtConfig())
        from macula_nat.actors import NoProc

        with pytest.raises(NoProc):
            await node.find_node(NodeId(1))
        assert node.statistics().nodes == 0


async def test_find_node_query_answered_with_closest_good(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=13) as internet, open_swarm(internet, SWARM) as swarm:
        peer = await raw_endpoint(internet)
        target = swarm.nodes[7].node_id
        reply = await exchange(
            peer,
            FindNode(transaction_id=b"f1", sender=NodeId(5), target=target),
            swarm.nodes[0].contact.address,
        )
        assert isinstance(reply, Response)
        assert 1 <= len(reply.nodes) <= 8
        assert reply.requester == peer.local_address
        assert reply.nodes[0].address[1] == PORT


async def test_a_node_that_stores_an_announcement_finds_it_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=31) as internet, open_swarm(internet, 2) as swarm:
        announcer, keeper = swarm.nodes
        info_hash = NodeId.from_bytes(bytes(20))
        assert (await announcer.announce_peer(info_hash, 4433)).stored == 2  # both are nearest
        found = (await keeper.get_peers(info_hash)).peers
        assert (announcer.contact.address[0], 4433) in found


async def test_a_lone_public_node_keeps_its_own_items_and_announcements(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # One public node and a read-only node behind a NAT: nobody else can store anything.
    async with open_internet(seed=32) as internet, open_swarm(internet, 1) as swarm:
        [gateway] = swarm.nodes
        key = Ed25519PrivateKey.generate()
        item = signed(key, b"alone", 1)
        assert (await gateway.put(item)).stored == 1
        info_hash = NodeId.from_bytes(bytes(20))
        assert (await gateway.announce_peer(info_hash, 4433)).stored == 1
        host = add_site(internet.public, Preset.PORT_RESTRICTED_CONE).host
        config = DhtConfig(read_only=True, bootstrap=(gateway.contact.address,))
        async with open_dht_node(host, config) as behind_nat:
            assert (await behind_nat.get(item.target, salt=SALT)).item == item
            found = (await behind_nat.get_peers(info_hash)).peers
            assert (gateway.contact.address[0], 4433) in found
            assert (await gateway.get(item.target, salt=SALT)).item == item


async def _measured(
    internet: Internet, nursery: trio.Nursery, target: NodeId, near: list[NodeId]
) -> tuple[DhtNode, list[DhtNode], list[NodeId], RttEstimate]:
    """An asker 4 ms from the ``near`` nodes and 202 ms from 4 far ones (ids 2^100 from
    ``target``), each pinged 3 times (jitter 0), and the node-wide estimate those pings give."""
    config = DhtConfig(alpha=1)  # one query at a time: a lookup's steps add up

    async def start(node_id: NodeId, one_way: float) -> DhtNode:
        node = DhtNode(*public_config(internet, config, LinkProfile(one_way)), node_id=node_id)
        await nursery.start(run_actor, DhtServer(node))
        return node

    far = [NodeId(target.value ^ (1 << 100) ^ d) for d in range(4)]
    asker = await start(NodeId(target.value ^ (1 << 159)), 0.001)
    contacts = [await start(node_id, 0.1) for node_id in far]
    contacts += [await start(node_id, 0.001) for node_id in near]
    node_wide = None
    for _ in range(3):
        for contact in contacts:
            assert await asker.ping(contact.contact.address) == contact.node_id
            rtt = 0.202 if contact.node_id in far else 0.004
            node_wide = RttEstimate.first(rtt) if node_wide is None else node_wide.updated(rtt)
    assert node_wide is not None and node_wide.rto(floor=0.05) > 0.4
    return asker, contacts, far, node_wide


async def test_a_silent_contact_measured_near_is_passed_after_its_own_rto(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """With a near node's own RTO 0.05 s (the floor) and the node-wide one 0.54 s: when the
    near node goes silent, a lookup (alpha 1, so in sequence) moves on after 0.05 s, asks
    the others in order of distance and ends 0.05 + 4 ms + 4 x 202 ms after it began."""
    target = NodeId.random(random.Random(7))
    near, also_near = (NodeId(target.value ^ d) for d in (1, 2))
    async with open_internet(seed=41) as internet, trio.open_nursery() as nursery:
        asker, contacts, far, _ = await _measured(internet, nursery, target, [near, also_near])
        entry = asker.routing_table.entry(near)
        assert entry is not None and entry.rtt is not None
        assert entry.rtt.rto(floor=0.05) == 0.05
        silent = contacts[-2]
        assert silent.server is not None
        await silent.server.stop()

        started = trio.current_time()
        result = await asker.find_node(target)
        took = trio.current_time() - started
        assert result.done
        assert [n.node_id for n in result.nodes] == [also_near, *far]
        assert took == pytest.approx(0.05 + 0.004 + 4 * 0.202, abs=1e-6)
        nursery.cancel_scope.cancel()


async def test_a_silent_contact_never_measured_is_passed_after_the_mean_round_trip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A contact first heard of in the lookup, gone: the asker waits its contacts' smoothed
    round trip plus four times how much one contact's round trips vary (0 here: no jitter),
    not the node-wide RTO, which the spread between near and far contacts makes 0.47 s."""
    target = NodeId.random(random.Random(8))
    unheard, near = (NodeId(target.value ^ d) for d in (1, 2))
    async with open_internet(seed=42) as internet, trio.open_nursery() as nursery:
        asker, contacts, far, node_wide = await _measured(internet, nursery, target, [near])
        assert asker.routing_table.variation == pytest.approx(0.0, abs=1e-9)
        config = DhtConfig(alpha=1)
        stack, config = public_config(internet, config, LinkProfile(0.001))
        silent = DhtNode(stack, config, node_id=unheard)
        await nursery.start(run_actor, DhtServer(silent))
        assert await silent.ping(contacts[-1].contact.address) == near  # now the near one knows it
        assert silent.server is not None
        await silent.server.stop()
        assert unheard not in asker.routing_table

        started = trio.current_time()
        result = await asker.find_node(target)
        took = trio.current_time() - started
        assert result.done
        assert [n.node_id for n in result.nodes] == [near, *far]
        # The near node's answer, just before the silent one is asked, is one more sample.
        wait = RttEstimate(node_wide.updated(0.004).srtt, 0.0).rto(floor=0.05)
        assert wait < 0.2 < 0.4 < node_wide.rto(floor=0.05)
        assert took == pytest.approx(0.004 + wait + 4 * 0.202, abs=1e-6)
        nursery.cancel_scope.cancel()
