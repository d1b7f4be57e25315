"""EmbeddedDirectory: publish and resolve by node id, expiry by Trio time, bounded memory."""

from __future__ import annotations

import json
from collections.abc import Iterable

import attrs
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from macula_nat.dht import bencoding
from macula_nat.dht.compact import encode_peer
from macula_nat.directory import Directory, EmbeddedDirectory
from macula_nat.directory.record import NodeRecord, _compact
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address


def profile(port: int) -> NatProfile:
    return NatProfile("ei", "pd", "pp", "203.0.113.5", port, 0.0, "high")


async def test_a_published_profile_resolves_until_its_ttl_runs_out(
    autojump_clock: MockClock,
) -> None:
    directory: Directory = EmbeddedDirectory()
    await directory.publish_profile("alice", profile(4000), ttl=30.0)
    await trio.sleep(29.9)
    assert await directory.resolve_profile("alice") == profile(4000)
    assert await directory.resolve_profile("bob") is None
    await trio.sleep(0.1)
    assert await directory.resolve_profile("alice") is None


async def test_publishing_again_replaces_the_record_and_its_expiry(
    autojump_clock: MockClock,
) -> None:
    directory = EmbeddedDirectory()
    await directory.publish_profile("alice", profile(4000), ttl=10.0)
    await trio.sleep(5.0)
    await directory.publish_profile("alice", profile(4001), ttl=10.0)
    await trio.sleep(9.0)
    assert await directory.resolve_profile("alice") == profile(4001)


async def test_statistics_count_publishes_resolves_hits_and_expiries(
    autojump_clock: MockClock,
) -> None:
    directory = EmbeddedDirectory()
    await directory.publish_profile("alice", profile(4000), ttl=10.0)
    await directory.publish_profile("bob", profile(4001), ttl=100.0)
    await directory.resolve_profile("alice")
    await directory.resolve_profile("carol")
    await trio.sleep(10.0)
    await directory.resolve_profile("alice")
    stats = directory.statistics()
    assert (stats.records, stats.publishes, stats.resolves, stats.found, stats.expired) == (
        1,
        2,
        3,
        1,
        1,
    )


async def test_expired_records_are_swept_on_publish_even_if_never_read(
    autojump_clock: MockClock,
) -> None:
    directory = EmbeddedDirectory()
    for i in range(1000):
        await directory.publish_profile(f"short-{i}", profile(4000), ttl=1.0)
    await trio.sleep(2.0)
    for i in range(1000):
        await directory.publish_profile(f"next-{i}", profile(4000), ttl=1.0)
        assert len(directory._records) <= 1000 + 64
    assert directory.statistics().expired == 1000


async def test_every_method_is_a_checkpoint_and_a_bad_ttl_is_refused(
    autojump_clock: MockClock,
) -> None:
    directory = EmbeddedDirectory()
    with trio.testing.assert_checkpoints():
        await directory.publish_profile("alice", profile(4000), ttl=1.0)
    with trio.testing.assert_checkpoints():
        await directory.resolve_profile("alice")
    for ttl in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="ttl"):
            await directory.publish_profile("alice", profile(4000), ttl=ttl)


async def test_records_carry_relay_and_candidates_with_a_rising_seq(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = EmbeddedDirectory(clock=lambda: 1000.0)
    first = await directory.publish_record("alice", profile(4000), 30.0)
    second = await directory.publish_record(
        "alice", None, 30.0, home_relay=("198.51.100.20", 4433), candidates=[("10.0.0.2", 5000)]
    )
    assert (first.seq, second.seq, second.expires_at) == (1, 2, 1030)
    assert await directory.resolve_record("alice") == second
    assert await directory.resolve_profile("alice") is None  # the newer record has no profile


async def test_relays_are_listed_until_their_announcement_expires(
    autojump_clock: trio.testing.MockClock,
) -> None:
    directory = EmbeddedDirectory()
    await directory.announce_relay(("198.51.100.20", 4433), 60.0)
    await directory.announce_relay(("198.51.100.21", 4433), 600.0)
    assert set(await directory.list_relays()) == {("198.51.100.20", 4433), ("198.51.100.21", 4433)}
    await trio.sleep(61)
    assert await directory.list_relays() == [("198.51.100.21", 4433)]
    with pytest.raises(ValueError):
        await directory.announce_relay(("198.51.100.22", 4433), 0)


class SlowDirectory(EmbeddedDirectory):
    """An EmbeddedDirectory whose reads and writes take a second, like a DHT's."""

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        await trio.sleep(1.0)
        return await super().resolve_record(node_id)

    async def publish_record(
        self,
        node_id: str,
        profile: NatProfile | None,
        ttl: float,
        *,
        home_relay: Address | None = None,
        candidates: Iterable[Address] = (),
        home_relay_alternate: Address | None = None,
        profile6: NatProfile | None = None,
    ) -> NodeRecord:
        await trio.sleep(1.0)
        return await super().publish_record(
            node_id,
            profile,
            ttl,
            home_relay=home_relay,
            candidates=candidates,
            home_relay_alternate=home_relay_alternate,
            profile6=profile6,
        )


async def test_concurrent_updates_of_one_record_keep_every_writers_field(
    autojump_clock: MockClock,
) -> None:
    directory = SlowDirectory(clock=lambda: 1000.0)
    relay = ("198.51.100.20", 4433)
    async with trio.open_nursery() as nursery:  # the coordinator and the registry, at once
        nursery.start_soon(
            directory.update_record,
            "alice",
            30.0,
            lambda record: attrs.evolve(record, profile=profile(4000)),
        )
        nursery.start_soon(
            directory.update_record,
            "alice",
            30.0,
            lambda record: attrs.evolve(record, home_relay=relay),
        )
    record = await directory.resolve_record("alice")
    assert record is not None
    assert (record.profile, record.home_relay, record.seq) == (profile(4000), relay, 2)


async def test_the_first_update_starts_from_the_record_already_published(
    autojump_clock: MockClock,
) -> None:
    before = SlowDirectory(clock=lambda: 1000.0)
    await before.publish_record("alice", profile(4000), 30.0, candidates=[("10.0.0.2", 5000)])
    updated = await before.update_record(
        "alice", 30.0, lambda record: attrs.evolve(record, home_relay=("198.51.100.20", 4433))
    )
    assert (updated.profile, updated.candidates) == (profile(4000), (("10.0.0.2", 5000),))
    blank = await SlowDirectory().update_record("bob", 30.0, lambda record: record)
    assert (blank.profile, blank.home_relay, blank.candidates) == (None, None, ())


def test_the_record_codec_carries_the_port_mapping_compatibly() -> None:
    """Issue 13: ``mapped`` rides in the profile's JSON only when set, so records of nodes
    without a mapping are byte for byte what they were, and older readers skip the field."""
    profile = NatProfile("pd", "pd", "rd", "203.0.113.5", 4000, 1.0, "high")
    plain = NodeRecord(profile=profile, candidates=[("203.0.113.5", 4000)], expires_at=99)
    assert b"mapped" not in plain.encode()
    assert NodeRecord.decode(plain.encode(), 0) == plain
    mapped = attrs.evolve(plain, profile=attrs.evolve(profile, mapped=("203.0.113.5", 41000)))
    data = mapped.encode()
    assert b'"mapped":["203.0.113.5",41000]' in data
    assert NodeRecord.decode(data, 3) == attrs.evolve(mapped, seq=3)


def test_the_record_codec_carries_udp_blocked_compatibly() -> None:
    """Issue 13: ``udp_blocked`` rides in the profile's JSON only when true, so every other
    record is byte for byte what it was."""
    profile = NatProfile("pd", "pd", "rd", "203.0.113.5", 4000, 1.0, "high")
    plain = NodeRecord(profile=profile, candidates=[("203.0.113.5", 4000)], expires_at=99)
    assert b"udp_blocked" not in plain.encode()
    blocked = attrs.evolve(plain, profile=attrs.evolve(profile, udp_blocked=True))
    data = blocked.encode()
    assert b'"udp_blocked":true' in data
    assert NodeRecord.decode(data, 3) == attrs.evolve(blocked, seq=3)


def test_the_record_codec_carries_the_ipv6_profile_compatibly() -> None:
    """Issue 13: a dual-stack node's IPv6 profile rides under a key of its own, only when
    there is one: other records are byte for byte what they were, a record written before
    it existed decodes with None, and an older reader (which knows only ``p``) skips it."""
    profile = NatProfile("pd", "pd", "rd", "203.0.113.5", 4000, 1.0, "high")
    profile6 = NatProfile("ei", "pd", "pp", "2001:db8:a::10", 4000, 1.0, "high", nat_present=False)
    plain = NodeRecord(profile=profile, candidates=[("203.0.113.5", 4000)], expires_at=99)
    old = bencoding.encode(
        {b"c": [encode_peer(("203.0.113.5", 4000))], b"e": 99, b"p": _compact(profile)}
    )
    assert plain.encode() == old and NodeRecord.decode(old, 0) == plain
    dual = attrs.evolve(plain, profile6=profile6)
    data = dual.encode()
    assert NodeRecord.decode(data, 3) == attrs.evolve(dual, seq=3)
    as_old_reader = bencoding.decode(data)
    assert isinstance(as_old_reader, dict)
    assert as_old_reader[b"p"] == old_value(old)[b"p"] and b"6" in as_old_reader
    assert NatProfile.from_json(json.loads(as_old_reader[b"6"])) == profile6


def old_value(data: bytes) -> dict[bytes, object]:
    value = bencoding.decode(data)
    assert isinstance(value, dict)
    return value
