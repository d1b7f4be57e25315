"""The Erlang ``macula_nat_cache`` module's calls, on the running NAT system.

``nat_cache.get(node_id)`` is ``current_system().cache.get_nowait(node_id)``; see
:class:`macula_nat.nat.cache.ProfileCache` for each call's contract.
"""

from __future__ import annotations

from collections.abc import Iterable

from macula_nat.nat.cache import CacheResult, CacheStats, PrewarmResult
from macula_nat.nat.profile import NatProfile
from macula_nat.system import current_system


def get(node_id: str) -> CacheResult:
    """``macula_nat_cache:get/1``: ``Fresh(p)`` / ``Stale(p)`` (revalidated in the background)
    / ``NotFound()``, i.e. ``{ok, P}`` / ``{stale, P}`` / ``{error, not_found}``; never waits."""
    return current_system().cache.get_nowait(node_id)


async def put(node_id: str, profile: NatProfile, ttl: float | None = None) -> None:
    """``macula_nat_cache:put/2,3``: cache a peer's profile (default TTL 300 s)."""
    await current_system().cache.put(node_id, profile, ttl)


async def invalidate(node_id: str) -> bool:
    """``macula_nat_cache:invalidate/1``: forget a peer's profile."""
    return await current_system().cache.invalidate(node_id)


def stats() -> CacheStats:
    """``macula_nat_cache:stats/0``: size, hits, misses, stale hits, evictions, ..."""
    return current_system().cache.stats()


async def get_from_dht(node_id: str) -> CacheResult:
    """``macula_nat_cache:get_from_dht/1``: the cache, else the directory; ``NotFound()`` if
    unknown."""
    return await current_system().cache.get_from_dht(node_id)


async def prewarm(node_ids: Iterable[str], concurrency: int = 8) -> PrewarmResult:
    """The guide's cache pre-warming: resolve ``node_ids``, ``concurrency`` at a time."""
    return await current_system().cache.prewarm(node_ids, concurrency=concurrency)
