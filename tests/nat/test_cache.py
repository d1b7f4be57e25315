"""ProfileCache: fresh/stale/missing, stale-while-revalidate, LRU, directory lookups, restarts.

Every test runs on MockClock (pytest-trio's ``autojump_clock``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from macula_nat.actors import (
    ActorExited,
    NoProc,
    StartFailed,
    Supervisor,
    open_actor,
)
from macula_nat.directory import Directory, DirectoryError, EmbeddedDirectory
from macula_nat.directory.record import NodeRecord
from macula_nat.nat.cache import (
    CacheResult,
    Fresh,
    NotFound,
    ProfileCache,
    ProfileCacheServer,
    Stale,
)
from macula_nat.nat.lru import LookupState
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address

FRESH, STALE, MISSING = LookupState.FRESH, LookupState.STALE, LookupState.MISSING


def profile(port: int) -> NatProfile:
    return NatProfile("ei", "pd", "pp", "203.0.113.5", port, 0.0, "high")


class RemoteDirectory(Directory):
    """An EmbeddedDirectory behind a slow, breakable link that counts lookups."""

    def __init__(self, latency: float = 1.0) -> None:
        super().__init__()
        self.records = EmbeddedDirectory()
        self.latency = latency
        self.lookups = 0
        self.running = 0
        self.peak = 0
        self.error: Exception | None = None
        self.hang = False

    async def publish_record(
        self, node_id: str, profile: NatProfile | None, ttl: float, **where: Any
    ) -> NodeRecord:
        return await self.records.publish_record(node_id, profile, ttl, **where)

    async def announce_relay(self, endpoint: Address, ttl: float) -> None:
        await self.records.announce_relay(endpoint, ttl)

    async def list_relays(self) -> list[Address]:
        return await self.records.list_relays()

    async def resolve_record(self, node_id: str) -> NodeRecord | None:
        self.lookups += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await trio.sleep(self.latency)
            if self.hang:
                await trio.sleep_forever()
            if self.error is not None:
                raise self.error
            return await self.records.resolve_record(node_id)
        finally:
            self.running -= 1


@asynccontextmanager
async def serving(cache: ProfileCache) -> AsyncIterator[ProfileCache]:
    async with open_actor(ProfileCacheServer(cache)):
        yield cache


async def test_an_entry_is_fresh_for_its_ttl_then_stale_for_the_grace_then_gone(
    autojump_clock: MockClock,
) -> None:
    async with serving(ProfileCache(stale_grace=5.0, sweep_interval=None)) as cache:
        await cache.put("alice", profile(4000), ttl=10.0)
        assert cache.get_nowait("alice").state is FRESH
        await trio.sleep(10.0)
        assert cache.get_nowait("alice").value == profile(4000)
        await trio.sleep(0.5)
        lookup = cache.get_nowait("alice")
        assert (lookup.value, lookup.state) == (profile(4000), STALE)
        await trio.sleep(5.0)
        assert cache.get_nowait("alice").state is MISSING
        assert not cache.get_nowait("bob").found
        stats = cache.stats()
        assert (stats.hits, stats.stale_hits, stats.misses, stats.expired, stats.size) == (
            2,
            1,
            2,
            1,
            0,
        )
        assert stats.hit_rate == 3 / 5


async def test_the_default_ttl_applies_and_a_bad_ttl_is_refused(autojump_clock: MockClock) -> None:
    async with serving(ProfileCache(default_ttl=20.0, stale_grace=0.0)) as cache:
        await cache.put("alice", profile(4000))
        await trio.sleep(20.0)
        assert cache.get_nowait("alice").state is FRESH
        await trio.sleep(0.1)
        assert cache.get_nowait("alice").state is MISSING
        with pytest.raises(ValueError, match="ttl"):
            await cache.put("alice", profile(4000), ttl=0.0)


async def test_a_hundred_stale_readers_share_exactly_one_refresh(
    autojump_clock: MockClock,
) -> None:
    directory = RemoteDirectory(latency=1.0)
    async with serving(ProfileCache(directory, stale_grace=60.0)) as cache:
        await cache.put("alice", profile(4000), ttl=10.0)
        await directory.publish_profile("alice", profile(5000), ttl=300.0)
        await trio.sleep(11.0)
        server = cache.server
        assert server is not None
        received = server.statistics().received
        seen: list[tuple[NatProfile | None, LookupState, float]] = []

        async def reader(delay: float) -> None:
            await trio.sleep(delay)
            start = trio.current_time()
            lookup = await cache.get("alice")
            seen.append((lookup.value, lookup.state, trio.current_time() - start))

        async with trio.open_nursery() as nursery:
            for i in range(100):
                nursery.start_soon(reader, i * 0.009)  # spread over the refresh's 1 s
        assert seen == [(profile(4000), STALE, 0.0)] * 100
        assert directory.lookups == 1
        assert server.statistics().received == received + 1  # one cast, not a hundred
        await trio.sleep(0.2)
        assert cache.get_nowait("alice") == Fresh(profile(5000))
        stats = cache.stats()
        assert (stats.stale_hits, stats.refreshes, stats.lookups_in_flight) == (100, 1, 0)


async def test_a_failed_refresh_keeps_the_stale_entry_and_is_counted(
    autojump_clock: MockClock,
) -> None:
    directory = RemoteDirectory(latency=0.5)
    directory.error = DirectoryError("gateway unreachable")
    async with serving(ProfileCache(directory, stale_grace=60.0)) as cache:
        await cache.put("alice", profile(4000), ttl=10.0)
        await trio.sleep(11.0)
        assert cache.get_nowait("alice").state is STALE
        await trio.sleep(1.0)
        assert cache.get_nowait("alice").value == profile(4000)  # kept; asks again
        await trio.sleep(1.0)
        stats = cache.stats()
        assert (stats.refresh_failures, stats.refreshes, directory.lookups) == (2, 0, 2)
        assert cache.get_nowait("alice").state is STALE


async def test_a_lookup_that_hangs_times_out_as_a_failure(autojump_clock: MockClock) -> None:
    directory = RemoteDirectory()
    directory.hang = True
    async with serving(ProfileCache(directory, lookup_timeout=3.0)) as cache:
        start = trio.current_time()
        with pytest.raises(DirectoryError, match=r"took over 3\.0 s"):
            await cache.get_from_dht("alice")
        assert trio.current_time() - start == pytest.approx(3.0)
        assert cache.stats().refresh_failures == 1


async def test_at_most_max_lookups_run_at_once(autojump_clock: MockClock) -> None:
    directory = RemoteDirectory(latency=1.0)
    async with serving(ProfileCache(directory, max_lookups=2, stale_grace=60.0)) as cache:
        for i in range(6):
            await cache.put(f"n{i}", profile(i), ttl=10.0)
        await trio.sleep(11.0)
        start = trio.current_time()
        for i in range(6):
            assert cache.get_nowait(f"n{i}").state is STALE
        await trio.sleep_until(start + 2.5)
        assert cache.stats().lookups_in_flight == 2  # two at a time, one second each
        await trio.sleep_until(start + 3.5)
        assert cache.stats().lookups_in_flight == 0
        assert (directory.lookups, directory.peak) == (6, 2)


async def test_a_full_cache_evicts_the_least_recently_used(autojump_clock: MockClock) -> None:
    async with serving(ProfileCache(max_entries=3)) as cache:
        for port, node in enumerate("abc"):
            await cache.put(node, profile(port))
        cache.get_nowait("a")  # a read makes "a" the most recently used
        await cache.put("d", profile(3))  # evicts "b", not "a" (the oldest write)
        await cache.put("c", profile(4))  # a write counts as use too
        await cache.put("e", profile(5))  # evicts "a"
        assert [n for n in "abcde" if cache.get_nowait(n).found] == ["c", "d", "e"]
        assert cache.stats().evictions == 2
        assert cache.stats().size == 3


async def test_invalidate_and_clear(autojump_clock: MockClock) -> None:
    async with serving(ProfileCache()) as cache:
        await cache.put("alice", profile(4000))
        await cache.put("bob", profile(4001))
        assert await cache.invalidate("alice") is True
        assert await cache.invalidate("alice") is False
        assert cache.get_nowait("alice").state is MISSING
        await cache.clear()
        assert cache.stats().size == 0


async def test_a_write_during_a_refresh_wins_over_the_refresh_result(
    autojump_clock: MockClock,
) -> None:
    directory = RemoteDirectory(latency=1.0)
    await directory.publish_profile("alice", profile(5000), ttl=300.0)
    await directory.publish_profile("bob", profile(5001), ttl=300.0)
    async with serving(ProfileCache(directory, stale_grace=60.0)) as cache:
        await cache.put("alice", profile(4000), ttl=10.0)
        await cache.put("bob", profile(4001), ttl=10.0)
        await trio.sleep(11.0)
        cache.get_nowait("alice")
        cache.get_nowait("bob")
        await cache.put("alice", profile(6000))
        await cache.invalidate("bob")
        await trio.sleep(2.0)
        assert directory.lookups == 2
        assert cache.get_nowait("alice").value == profile(6000)
        assert cache.get_nowait("bob").state is MISSING


async def test_a_refresh_that_finds_no_record_drops_the_entry(autojump_clock: MockClock) -> None:
    directory = RemoteDirectory(latency=1.0)
    async with serving(ProfileCache(directory, stale_grace=60.0)) as cache:
        await cache.put("alice", profile(4000), ttl=10.0)
        await trio.sleep(11.0)
        assert cache.get_nowait("alice").state is STALE
        await trio.sleep(1.5)
        assert cache.get_nowait("alice").state is MISSING
        assert cache.stats().refreshes == 1


async def test_get_from_dht_resolves_through_the_directory_and_caches_the_answer(
    autojump_clock: MockClock,
) -> None:
    directory = EmbeddedDirectory()
    await directory.publish_profile("alice", profile(4000), ttl=300.0)
    async with serving(ProfileCache(directory)) as cache:
        assert cache.get_nowait("alice").state is MISSING
        assert await cache.get_from_dht("alice") == Fresh(profile(4000))
        assert cache.get_nowait("alice").state is FRESH
        assert await cache.get_from_dht("alice") == Fresh(profile(4000))  # from the cache
        assert await cache.get_from_dht("nobody") == NotFound()
        assert directory.statistics().resolves == 2
        lookup = await cache.get("carol")
        assert lookup.state is MISSING
        await directory.publish_profile("carol", profile(4002), ttl=300.0)
        lookup = await cache.get("carol")
        assert (lookup.value, lookup.state) == (profile(4002), FRESH)


async def test_concurrent_misses_share_one_directory_lookup(autojump_clock: MockClock) -> None:
    directory = RemoteDirectory(latency=1.0)
    await directory.publish_profile("alice", profile(4000), ttl=300.0)
    async with serving(ProfileCache(directory)) as cache:
        answers: list[CacheResult] = []

        async def ask() -> None:
            answers.append(await cache.get_from_dht("alice"))

        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(ask)
        assert answers == [Fresh(profile(4000))] * 20
        assert directory.lookups == 1


async def test_directory_errors_reach_the_caller(autojump_clock: MockClock) -> None:
    directory = RemoteDirectory()
    directory.error = DirectoryError("gateway unreachable")
    async with serving(ProfileCache(directory)) as cache:
        with pytest.raises(DirectoryError, match="unreachable"):
            await cache.get_from_dht("alice")
        with pytest.raises(DirectoryError, match="unreachable"):
            await cache.get("alice")
    async with serving(ProfileCache()) as local:
        assert (await local.get("alice")).state is MISSING
        with pytest.raises(DirectoryError, match="no directory"):
            await local.get_from_dht("alice")


async def test_a_cached_read_is_not_a_mailbox_round_trip(autojump_clock: MockClock) -> None:
    async with serving(ProfileCache()) as cache:
        await cache.put("alice", profile(4000))
        server = cache.server
        assert server is not None
        handled = server.statistics().handled
        for _ in range(10):
            cache.get_nowait("alice")
            with trio.testing.assert_checkpoints():
                await cache.get("alice")
        assert server.statistics().handled == handled


async def test_expired_entries_are_swept_without_being_read(autojump_clock: MockClock) -> None:
    async with serving(ProfileCache(stale_grace=5.0, sweep_interval=30.0)) as cache:
        for i in range(10):
            await cache.put(f"n{i}", profile(i), ttl=10.0)
        await cache.put("keeper", profile(99), ttl=100.0)
        await trio.sleep(31.0)
        assert (cache.stats().size, cache.stats().expired) == (1, 10)


async def test_the_table_survives_a_server_crash_under_a_supervisor(
    autojump_clock: MockClock,
) -> None:
    directory = RemoteDirectory(latency=1.0)
    directory.error = RuntimeError("bug in the directory")  # not a DirectoryError: a crash
    cache = ProfileCache(directory, stale_grace=60.0)
    async with open_actor(Supervisor([cache.child_spec(name="nat_cache")])) as sup:
        first = cache.server
        await cache.put("alice", profile(4000), ttl=10.0)
        await trio.sleep(11.0)
        assert cache.get_nowait("alice").state is STALE  # its refresh crashes the server
        with pytest.raises(ActorExited):
            await cache.get_from_dht("bob")  # waiting on the crashing server
        await trio.testing.wait_all_tasks_blocked()
        second = cache.server
        assert second is not None and second is not first and second.alive
        assert sup.registry.whereis("nat_cache") is second
        assert cache.stats().lookups_in_flight == 0  # the dead server's lookups are forgotten
        directory.error = None
        await directory.publish_profile("alice", profile(5000), ttl=300.0)
        lookup = cache.get_nowait("alice")  # the table survived; the new server revalidates
        assert (lookup.value, lookup.state) == (profile(4000), STALE)
        await trio.sleep(1.5)
        assert cache.get_nowait("alice").value == profile(5000)
        await cache.put("bob", profile(4001))
        assert cache.get_nowait("bob").state is FRESH


async def test_one_table_has_one_server_and_writes_need_it(autojump_clock: MockClock) -> None:
    cache = ProfileCache()
    with pytest.raises(NoProc):
        await cache.put("alice", profile(4000))
    async with serving(cache):
        with pytest.raises(StartFailed, match="already served"):
            async with open_actor(ProfileCacheServer(cache)):
                pass  # pragma: no cover
    with pytest.raises(NoProc):
        await cache.invalidate("alice")


def test_bad_configuration_is_refused() -> None:
    for options in [
        {"max_entries": 0},
        {"default_ttl": 0.0},
        {"stale_grace": -1.0},
        {"lookup_timeout": 0.0},
        {"max_lookups": 0},
        {"sweep_interval": 0.0},
    ]:
        with pytest.raises(ValueError):
            ProfileCache(**options)  # type: ignore[arg-type]


def describe(result: CacheResult) -> str:
    """The guide's three answers, as a user's ``match`` spells them."""
    match result:
        case Fresh(found):
            return f"ok {found.public_port}"
        case Stale(found):
            return f"stale {found.public_port}"
        case NotFound():
            return "not_found"


async def test_reads_answer_the_guides_three_results_for_match(autojump_clock: MockClock) -> None:
    async with serving(ProfileCache(stale_grace=60.0)) as cache:
        assert describe(cache.get_nowait("alice")) == "not_found"
        await cache.put("alice", profile(4000), ttl=10.0)
        assert describe(cache.get_nowait("alice")) == "ok 4000"
        await trio.sleep(11.0)
        assert describe(cache.get_nowait("alice")) == "stale 4000"
        await trio.sleep(60.0)
        assert describe(await cache.get("alice")) == "not_found"


async def test_prewarm_resolves_many_with_bounded_concurrency(autojump_clock: MockClock) -> None:
    directory = RemoteDirectory(latency=1.0)
    for i in range(10):
        await directory.publish_profile(f"n{i}", profile(4000 + i), ttl=300.0)
    async with serving(ProfileCache(directory)) as cache:
        await cache.put("n0", profile(4000))  # cached already: not looked up again
        start = trio.current_time()
        warmed = await cache.prewarm([f"n{i}" for i in range(10)] + ["nobody", "n1"], concurrency=3)
        assert warmed.found == {f"n{i}": profile(4000 + i) for i in range(10)}
        assert warmed.missing == ("nobody",) and warmed.failed == {}
        assert directory.lookups == 10  # n1..n9 and nobody, once each
        assert trio.current_time() - start == pytest.approx(4.0)  # 10 lookups, 3 at a time
        assert all(cache.get_nowait(f"n{i}") == Fresh(profile(4000 + i)) for i in range(10))
        with pytest.raises(ValueError, match="concurrency"):
            await cache.prewarm(["n1"], concurrency=0)
        directory.error = DirectoryError("gateway unreachable")
        failed = await cache.prewarm(["x", "n2"])
        assert list(failed.failed) == ["x"] and failed.found == {"n2": profile(4002)}
    async with serving(ProfileCache()) as local:
        with pytest.raises(DirectoryError, match="no directory"):
            await local.prewarm(["alice"])
