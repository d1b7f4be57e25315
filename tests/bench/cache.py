"""Profile cache benchmarks: cached read latency beside a plain dict, and memory per entry."""

from __future__ import annotations

import random
import sys

import trio
import trio.lowlevel

from macula_nat.actors import open_actor
from macula_nat.nat.cache import ProfileCache, ProfileCacheServer
from macula_nat.nat.profile import NatProfile

from .timing import Figure, LiveMemory, best_of, now

ENTRIES = 10_000
SIZES = (1_000, 10_000, 100_000)
"""Table sizes the cached read is timed at: a bigger table reads slower (CPU caches miss)."""
READS = 200_000
AWAITED_READS = 50_000
MEMORY_ENTRIES = 1_000_000


def node_id(i: int) -> str:
    """A distinct 64-hex-digit id, the length of an ed25519 public key in hex."""
    return f"{i:064x}"


def realistic_profile(i: int) -> NatProfile:
    """A distinct profile: every string and address built for this entry, nothing interned."""
    return NatProfile(
        mapping="ei",
        filtering="pd",
        allocation="pc",
        public_ip=f"198.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        public_port=1024 + i % 60000,
        detected_at=1.7e9 + i,
        confidence="high",
        local_address=(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}", 40000 + i % 20000),
        hairpinning=False,
        port_delta=1,
        observers=((f"203.0.113.{i % 250}", 3478), (f"203.0.113.{i % 250 + 1}", 3479)),
    )


async def read_latencies(size: int = ENTRIES) -> tuple[float, float, float, float, float]:
    """Seconds per read: get_nowait, dict.get, await get, dict.get + checkpoint; and per put;
    in a cache (and a dict) of ``size`` entries."""
    cache = ProfileCache(max_entries=size)
    plain: dict[str, NatProfile] = {}
    entries = [(node_id(i), realistic_profile(i)) for i in range(size)]
    async with open_actor(ProfileCacheServer(cache)):
        start = now()
        for key, profile in entries:
            await cache.put(key, profile)
        put = (now() - start) / size
        plain.update(entries)
        rng = random.Random(1)
        keys = [node_id(rng.randrange(size)) for _ in range(READS)]

        async def timed_nowait() -> float:
            get = cache.get_nowait
            start = now()
            for key in keys:
                get(key)
            return (now() - start) / READS

        async def timed_dict() -> float:
            get = plain.get
            start = now()
            for key in keys:
                get(key)
            return (now() - start) / READS

        async def timed_awaited() -> float:
            get = cache.get
            start = now()
            for key in keys[:AWAITED_READS]:
                await get(key)
            return (now() - start) / AWAITED_READS

        async def timed_dict_checkpoint() -> float:
            get = plain.get
            checkpoint = trio.lowlevel.checkpoint
            start = now()
            for key in keys[:AWAITED_READS]:
                get(key)
                await checkpoint()
            return (now() - start) / AWAITED_READS

        nowait = await best_of(5, timed_nowait)
        direct = await best_of(5, timed_dict)
        awaited = await best_of(3, timed_awaited)
        baseline = await best_of(3, timed_dict_checkpoint)
        assert cache.stats().hits == 5 * READS + 3 * AWAITED_READS
    return nowait, direct, awaited, baseline, put


PROFILE_SAMPLE = 20_000


def profile_bytes(n: int) -> float:
    """Bytes per distinct realistic profile plus its node id, measured over ``n`` of them.

    A profile's size does not depend on how many are cached, so a sample measures it; building
    a million through the profile's validating converters would take minutes under tracemalloc.
    """
    memory = LiveMemory()
    memory.start()
    try:
        ids = [node_id(i) for i in range(n)]
        profiles = [realistic_profile(i) for i in range(n)]
        live = memory.measure() - sys.getsizeof(ids) - sys.getsizeof(profiles)
    finally:
        memory.stop()
    return live / n


def table_bytes(n: int) -> float:
    """Bytes per entry the cache itself adds (LRU order, expiry times) at ``n`` entries.

    The ids are built before measuring (they are counted in :func:`profile_bytes`), and every
    entry refers to one profile: the table stores a reference, whatever the profile holds. It is
    filled through the server's write path (``_store``, what each ``put`` runs) without a
    mailbox round trip per entry, which would dominate the run; the objects stored are the same.
    """
    ids = [node_id(i) for i in range(n)]
    profile = realistic_profile(0)
    memory = LiveMemory()
    memory.start()
    try:
        cache = ProfileCache(max_entries=n)
        for key in ids:
            cache._store(key, profile, cache.default_ttl)
        live = memory.measure()
        assert cache.stats().size == n
    finally:
        memory.stop()
    return live / n


async def run() -> list[Figure]:
    reads = {size: await read_latencies(size) for size in SIZES}
    _, _, awaited, baseline, put = reads[ENTRIES]
    per_value = profile_bytes(PROFILE_SAMPLE)
    per_table = table_bytes(MEMORY_ENTRIES)
    return [
        *(
            Figure(
                f"cache: get_nowait at {size:,} (us) vs plain dict.get",
                reads[size][0] * 1e6,
                "us",
                reads[size][1] * 1e6,
                "< 5 us",
            )
            for size in SIZES
        ),
        Figure(
            "cache: await get, cached (us) vs dict.get + checkpoint",
            awaited * 1e6,
            "us",
            baseline * 1e6,
        ),
        Figure("cache: put through the server (us)", put * 1e6, "us"),
        Figure(
            "cache: memory per entry at 1,000,000 (KiB)",
            (per_value + per_table) / 1024,
            "KiB",
            None,
            "<= 1 KiB",
        ),
        Figure("cache: of which the profile and node id (KiB)", per_value / 1024, "KiB"),
        Figure("cache: of which the table (LRU order, expiry) (KiB)", per_table / 1024, "KiB"),
    ]
