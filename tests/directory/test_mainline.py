"""MainlineDirectory over a swarm of our DHT nodes on the simulated internet."""

from __future__ import annotations

import random

import attrs
import pytest
import trio
import trio.testing

from macula_nat.dht.config import DhtConfig
from macula_nat.dht.krpc import Get, Response, decode, encode
from macula_nat.dht.mutable_item import MutableItem
from macula_nat.dht.node import open_dht_node
from macula_nat.dht.node_id import NodeId as DhtId
from macula_nat.directory.mainline import PROFILE_SALT, RELAY_LIST_TTL, MainlineDirectory
from macula_nat.directory.record import NodeRecord
from macula_nat.directory.relay_keys import region_key, region_subkey
from macula_nat.identity import NodeKey
from macula_nat.nat.profile import NatProfile
from macula_nat.net.sim import LinkProfile, Preset, add_site, open_internet
from tests.dht.swarm import open_swarm, public_config

EPOCH = 1_700_000_000.0


def clock() -> float:
    return EPOCH + trio.current_time()


def profile(port: int = 40000) -> NatProfile:
    return NatProfile(
        mapping="ei",
        filtering="pd",
        allocation="pp",
        public_ip="203.0.113.77",
        public_port=port,
        detected_at=EPOCH,
        confidence="high",
        local_address=("192.168.1.20", 40000),
        hairpinning=True,
        observers=[("198.51.100.10", 3478), ("198.51.100.11", 3479), ("203.0.113.5", 3478)],
    )


def test_realistic_record_fits_in_a_bep44_value() -> None:
    record = NodeRecord(
        profile=profile(),
        home_relay=("198.51.100.20", 4433),
        candidates=[("203.0.113.77", 40000), ("192.168.1.20", 40000), ("10.8.0.3", 51820)]
        + [("203.0.113.77", 40001 + i) for i in range(5)],
        expires_at=EPOCH + 3600,
        seq=7,
    )
    encoded = record.encode()
    assert len(encoded) <= 600, len(encoded)  # well inside BEP 44's 1000 bytes
    assert NodeRecord.decode(encoded, 7) == record


async def test_publish_and_resolve(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=21) as internet, open_swarm(internet, 20) as swarm:
        alice, bob = NodeKey.generate(), NodeKey.generate()
        publisher = MainlineDirectory(swarm.nodes[1], alice, clock=clock)
        reader = MainlineDirectory(swarm.nodes[13], bob, clock=clock)
        assert await reader.resolve_profile(alice.node_id.text()) is None

        await publisher.publish_profile(alice.node_id.text(), profile(), ttl=600)
        assert await reader.resolve_profile(alice.node_id.text()) == profile()

        record = await publisher.publish_record(
            alice.node_id.text(),
            profile(40001),
            600,
            home_relay=("198.51.100.20", 4433),
            candidates=[("10.0.0.2", 1)],
        )
        resolved = await reader.resolve_record(alice.node_id.text())
        assert resolved == record
        with pytest.raises(ValueError):
            await publisher.publish_profile(bob.node_id.text(), profile(), ttl=60)

        await trio.sleep(700)  # past the record's expiry, though still republished till then
        assert await reader.resolve_record(alice.node_id.text()) is None
        assert reader.statistics().found == 2


async def test_a_record_over_bep44s_size_is_published_cut_not_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A dual-stack node with 16 IPv6 candidates: its record is published (no node stores a
    value over 1000 bytes, and signing one raised) with every candidate, observers left out."""
    async with open_internet(seed=29) as internet, open_swarm(internet, 12) as swarm:
        alice, bob = NodeKey.generate(), NodeKey.generate()
        publisher = MainlineDirectory(swarm.nodes[1], alice, clock=clock)
        reader = MainlineDirectory(swarm.nodes[9], bob, clock=clock)
        six = attrs.evolve(profile(), public_ip="2001:db8:ffff:1234::7", nat_present=False,
                           local_address=("2001:db8:ffff:1234::7", 40000))  # fmt: skip
        candidates = [(f"2001:db8:ffff:1234:5678:9abc:def0:{i:x}", 40000) for i in range(16)]
        record = await publisher.publish_record(
            alice.node_id.text(), profile(), 600, home_relay=("198.51.100.20", 4433),
            home_relay_alternate=("2001:db8::20", 4433), candidates=candidates, profile6=six,
        )  # fmt: skip
        assert record.candidates == tuple(candidates) and record.profile6 is not None
        assert not record.profile6.observers
        assert await reader.resolve_record(alice.node_id.text()) == record


async def test_relays_announced_and_listed(autojump_clock: trio.testing.MockClock) -> None:
    async with open_internet(seed=22) as internet, open_swarm(internet, 20) as swarm:
        relays = [MainlineDirectory(swarm.nodes[i], NodeKey.generate()) for i in (2, 4)]
        await relays[0].announce_relay((swarm.nodes[2].contact.address[0], 4433), 600)
        await relays[1].announce_relay(swarm.nodes[4].contact.address, 600)
        listing = MainlineDirectory(swarm.nodes[18], NodeKey.generate())
        assert set(await listing.list_relays()) == {
            (swarm.nodes[2].contact.address[0], 4433),
            swarm.nodes[4].contact.address,
        }
        stats = listing.statistics()  # two relays fill no shard: the global key tops up
        assert (stats.relay_lookups, stats.global_relay_lookups) == (1, 1)
        await listing.list_relays()  # a short list is not kept: more relays may come
        assert listing.statistics().relay_lookups == 2


async def test_a_full_shard_is_read_alone_and_kept_for_its_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=24) as internet, open_swarm(internet, 20) as swarm:

        def directory(index: int) -> MainlineDirectory:  # two shards: each relay is in both
            return MainlineDirectory(swarm.nodes[index], NodeKey.generate(), relay_shards=2)

        announced = [(swarm.nodes[i].contact.address[0], 4433 + i) for i in (2, 4, 6, 8)]
        for i, endpoint in zip((2, 4, 6, 8), announced, strict=True):
            await directory(i).announce_relay(endpoint, 3600)
        listing = directory(18)
        assert set(await listing.list_relays()) == set(announced)
        stats = listing.statistics()
        assert (stats.relay_lookups, stats.global_relay_lookups) == (1, 0)

        late = (swarm.nodes[10].contact.address[0], 5000)
        await directory(10).announce_relay(late, 3600)
        await trio.sleep(RELAY_LIST_TTL - 1)
        assert set(await listing.list_relays()) == set(announced)  # the list kept: no lookup
        assert listing.statistics().relay_lookups == 1
        await trio.sleep(2)
        assert late in await listing.list_relays()
        assert listing.statistics().relay_lookups == 2


async def test_with_landmarks_a_relay_is_listed_in_its_region_and_a_node_reads_its_nearest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=25) as internet, open_swarm(internet, 20) as swarm:
        marks = []
        for latency in (0.001, 0.2):  # every host is near the first landmark, far from the next
            host = internet.add_host([f"198.51.100.{len(marks) + 1}"], link=LinkProfile(latency))
            mark = await swarm.add(host, DhtConfig(listen=(f"198.51.100.{len(marks) + 1}", 6881)))
            marks.append(mark.contact.address)

        def directory(index: int) -> MainlineDirectory:
            node = swarm.nodes[index]
            return MainlineDirectory(node, NodeKey.generate(), relay_shards=8, landmarks=marks)

        relay = directory(3)
        endpoint = (swarm.nodes[3].contact.address[0], 4433)
        await relay.announce_relay(endpoint, 3600)
        assert relay.statistics().regions == (0, 1)
        for shard in range(8):  # in region 0 in every shard, under one of its keys
            key = region_key(shard, region_subkey(endpoint, shard), 0, 8)
            assert endpoint in (await swarm.nodes[9].get_peers(key)).peers
        listing = directory(12)
        assert endpoint in await listing.list_relays()
        assert listing.statistics().regions == (0, 1)
        assert listing.statistics().landmark_rounds == 1


async def test_landmarks_that_do_not_answer_leave_the_relay_in_no_region(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=26) as internet, open_swarm(internet, 12) as swarm:
        gone = [("198.51.100.200", 6881)]
        relay = MainlineDirectory(swarm.nodes[3], NodeKey.generate(), landmarks=gone)
        endpoint = (swarm.nodes[3].contact.address[0], 4433)
        await relay.announce_relay(endpoint, 3600)  # announced all the same, in no region
        assert await relay.regions() == []
        listing = MainlineDirectory(swarm.nodes[7], NodeKey.generate(), landmarks=gone)
        assert endpoint in await listing.list_relays()


def test_bad_relay_settings_are_refused() -> None:
    key = NodeKey.generate()
    with pytest.raises(ValueError, match="relay_shards"):
        MainlineDirectory(None, key, relay_shards=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="relay_list_ttl"):
        MainlineDirectory(None, key, relay_list_ttl=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="landmarks"):
        MainlineDirectory(None, key, landmarks=[("198.51.100.1", 1)] * 257)  # type: ignore[arg-type]


async def test_forged_and_replayed_records_rejected(autojump_clock: trio.testing.MockClock) -> None:
    """A node serving a tampered record, or an older genuine one, is never believed."""
    async with open_internet(seed=23) as internet, open_swarm(internet, 20) as swarm:
        alice = NodeKey.generate()
        publisher = MainlineDirectory(swarm.nodes[1], alice, clock=clock)
        target = publisher.target_of(alice.node_id)
        items = []
        for port in (1, 2):
            await publisher.publish_profile(alice.node_id.text(), profile(port), ttl=3600)
            item = (await swarm.nodes[5].get(target, salt=PROFILE_SALT)).item
            assert isinstance(item, MutableItem)
            items.append(item)
            await trio.sleep(1)
        old, new = items
        assert old.seq < new.seq
        tampered = attrs.evolve(new, value=new.value.replace(b"40000", b"40666"))
        assert tampered.value != new.value

        # The reader's only contact is a liar, which serves whatever `served` holds.
        host = internet.add_host()
        liar = await host.bind((host.addresses[0], 0))
        liar_id = DhtId.random(random.Random(9))
        served = [tampered]

        async def serve() -> None:
            while True:
                data, source = await liar.receive_from()
                query = decode(data)
                item = served[0]
                if isinstance(query, Get):
                    reply = Response(
                        transaction_id=query.transaction_id,
                        sender=liar_id,
                        token=b"tok",
                        value=item.value,
                        key=item.public_key,
                        signature=item.signature,
                        seq=item.seq,
                    )
                else:
                    reply = Response(transaction_id=query.transaction_id, sender=liar_id)
                await liar.send_to(encode(reply), source)

        stack, config = public_config(internet, DhtConfig(bootstrap=[liar.local_address]))
        async with trio.open_nursery() as nursery, open_dht_node(stack, config) as node:
            nursery.start_soon(serve)
            reader = MainlineDirectory(node, NodeKey.generate(), clock=clock)
            assert await node.bootstrap() == 1

            assert await reader.resolve_record(alice.node_id.text()) is None
            assert node.statistics().bad_signatures == 1

            served[0] = new
            resolved = await reader.resolve_record(alice.node_id.text())
            assert resolved is not None and resolved.profile == profile(2)

            served[0] = old  # genuine, correctly signed, but older than what we saw
            assert await reader.resolve_record(alice.node_id.text()) is None
            assert reader.statistics().replayed == 1
            nursery.cancel_scope.cancel()


async def test_read_only_node_behind_nat_publishes_and_resolves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_internet(seed=24) as internet, open_swarm(internet, 20) as swarm:
        site = add_site(internet.public, Preset.SYMMETRIC_RANDOM)
        config = DhtConfig(read_only=True, bootstrap=[swarm.nodes[0].contact.address])
        async with open_dht_node(site.host, config) as hidden_node:
            hidden = MainlineDirectory(hidden_node, NodeKey.generate(), clock=clock)
            public = MainlineDirectory(swarm.nodes[9], NodeKey.generate(), clock=clock)
            await hidden.publish_profile(hidden.node_id.text(), profile(3), ttl=600)
            await public.publish_profile(public.node_id.text(), profile(4), ttl=600)
            assert await public.resolve_profile(hidden.node_id.text()) == profile(3)
            assert await hidden.resolve_profile(public.node_id.text()) == profile(4)
            assert hidden_node.statistics().responses_sent == 0
