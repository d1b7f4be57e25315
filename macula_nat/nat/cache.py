"""ProfileCache: peers' NAT profiles with TTL, stale-while-revalidate and true LRU.

The Python mirror of the Erlang ``macula_nat_cache``. A profile is fresh for its TTL, then stale
for ``stale_grace`` seconds (served at once while one background lookup in the directory
revalidates it), then gone.

Reads are not mailbox round trips: :meth:`ProfileCache.get_nowait` reads the shared table
synchronously. Writes (``put``, ``invalidate``, ``clear``, lookup results, sweeps) are made by
the :class:`ProfileCacheServer` actor, one at a time.

Ownership: the :class:`ProfileCache` handle owns the table, its counters and the configuration,
and hands itself to each incarnation of its server (as a :class:`~macula_nat.actors.Topic` is
handed to its publisher), so the cached profiles survive a server crash. Lookups that were in
flight die with their incarnation (their callers get ``ActorExited``); the next incarnation
forgets them, and the next stale read starts a new one.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from typing import Any, Final

import attrs
import trio

from macula_nat.actors import (
    NOREPLY,
    Actor,
    ActorRef,
    Caller,
    Fail,
    MailboxFull,
    NoProc,
    Served,
    Stop,
)
from macula_nat.directory import Directory, DirectoryError

from .cache_result import NOT_FOUND, CacheResult, Fresh, NotFound, Stale, result_of
from .lru import LookupState, SwrLru
from .profile import NatProfile

__all__ = [
    "CacheResult",
    "CacheStats",
    "Fresh",
    "NotFound",
    "PrewarmResult",
    "ProfileCache",
    "ProfileCacheServer",
    "Stale",
]

logger = logging.getLogger(__name__)

_STALE: Final = LookupState.STALE
_CALL_TIMEOUT: Final = 5.0


@attrs.frozen
class CacheStats:
    """A snapshot of a cache (the Erlang ``stats()``, plus what SWR and sweeping add)."""

    size: int
    max_entries: int
    hits: int
    """Fresh hits."""
    stale_hits: int
    misses: int
    evictions: int
    """Least recently used entries dropped to make room."""
    expired: int
    """Entries dropped because their stale grace ran out too."""
    refreshes: int
    """Directory lookups completed (revalidating a stale entry or resolving a miss)."""
    refresh_failures: int
    """Directory lookups that failed (unreachable or timed out); a stale entry was kept."""
    lookups_in_flight: int

    @property
    def hit_rate(self) -> float:
        """Fresh and stale hits over all reads; 0.0 before the first read."""
        reads = self.hits + self.stale_hits + self.misses
        return (self.hits + self.stale_hits) / reads if reads else 0.0


@attrs.frozen
class PrewarmResult:
    """What :meth:`ProfileCache.prewarm` found: profiles by node id, the ids the directory does
    not know, and the lookups that failed (with why)."""

    found: dict[str, NatProfile]
    missing: tuple[str, ...]
    failed: dict[str, DirectoryError]


@attrs.frozen
class _Put:
    node_id: str
    profile: NatProfile
    ttl: float


@attrs.frozen
class _Invalidate:
    node_id: str


@attrs.frozen
class _Resolve:
    """Call: look ``node_id`` up in the directory, store the answer and reply with it."""

    node_id: str


@attrs.frozen
class _Refresh:
    """Cast: revalidate a stale entry in the background."""

    node_id: str


class _Op(enum.Enum):
    CLEAR = "clear"
    SWEEP = "sweep"


class ProfileCache(Served):
    """Node id -> :class:`NatProfile`, read directly, written through its server actor.

    Run the server under a supervisor with :meth:`child_spec`, or alone with
    ``open_actor(ProfileCacheServer(cache))``. ``directory`` is where stale entries are
    revalidated and misses resolved (None: a purely local cache). At most ``max_lookups``
    directory lookups run at once, each bounded by ``lookup_timeout`` seconds; expired entries
    are swept every ``sweep_interval`` seconds (None: only when read or evicted).
    """

    default_id = "nat_cache"

    def __init__(
        self,
        directory: Directory | None = None,
        *,
        max_entries: int = 10_000,
        default_ttl: float = 300.0,
        stale_grace: float = 60.0,
        lookup_timeout: float = 10.0,
        max_lookups: int = 32,
        sweep_interval: float | None = 60.0,
    ) -> None:
        super().__init__()
        for name, value in [
            ("default_ttl", default_ttl),
            ("lookup_timeout", lookup_timeout),
            ("max_lookups", max_lookups),
            ("sweep_interval", 1.0 if sweep_interval is None else sweep_interval),
        ]:
            if not value > 0:
                raise ValueError(f"{name} must be positive, not {value!r}")
        if not stale_grace >= 0:
            raise ValueError(f"stale_grace must be >= 0, not {stale_grace!r}")
        self.directory = directory
        self.default_ttl = default_ttl
        self.stale_grace = stale_grace
        self.lookup_timeout = lookup_timeout
        self.max_lookups = max_lookups
        self.sweep_interval = sweep_interval
        self._table: SwrLru[str, NatProfile] = SwrLru(max_entries)
        self._pending: set[str] = set()
        self._refreshes = 0
        self._refresh_failures = 0

    def __repr__(self) -> str:
        return f"<ProfileCache {len(self._table)}/{self._table.max_entries}>"

    @property
    def max_entries(self) -> int:
        return self._table.max_entries

    # -- reads: no mailbox ---------------------------------------------------------------------

    def get_nowait(self, node_id: str) -> CacheResult:
        """``Fresh(profile)``, ``Stale(profile)`` or ``NotFound()``; never waits (the Erlang
        ``get``: ``{ok, P}``, ``{stale, P}``, ``{error, not_found}``).

        A stale hit asks the server to revalidate the entry in the background, once per key
        however many readers see it stale. A miss is an answer here, not ``trio.WouldBlock``:
        use :meth:`get` to have misses resolved through the directory.
        """
        lookup = self._table.lookup(node_id, trio.current_time())
        if lookup.state is _STALE:
            self._revalidate(node_id)
        return result_of(lookup)

    async def get(self, node_id: str) -> CacheResult:
        """Like :meth:`get_nowait`, but a miss is resolved through the directory (waiting for it).

        Concurrent misses for one node share one lookup. Returns ``Fresh`` when the directory
        has the node, ``NotFound`` when it has not (or there is no directory); raises
        :class:`DirectoryError` when the directory cannot answer.
        """
        found = self.get_nowait(node_id)
        if found.found or self.directory is None:
            await trio.lowlevel.checkpoint()
            return found
        return await self._resolve_result(node_id)

    async def get_from_dht(self, node_id: str) -> CacheResult:
        """The profile from the cache (``Fresh`` / ``Stale``), else from the directory
        (``Fresh``), else ``NotFound``: the same records as :meth:`get_nowait`.

        Keeps the Erlang name. Raises :class:`DirectoryError` when a lookup is needed and the
        directory cannot answer, or this cache has no directory.
        """
        found = self.get_nowait(node_id)
        if found.found:
            await trio.lowlevel.checkpoint()
            return found
        if self.directory is None:
            raise DirectoryError(f"{self} has no directory to look {node_id!r} up in")
        return await self._resolve_result(node_id)

    async def prewarm(self, node_ids: Iterable[str], *, concurrency: int = 8) -> PrewarmResult:
        """Resolve ``node_ids`` through the directory into the cache, at most ``concurrency``
        lookups at once (the guide's "Caching strategy": warm the cache with the peers you
        will connect to). Already cached ones (fresh or stale) are not looked up again.

        Returns what it found, what the directory does not know and what failed (each lookup
        failure is kept there, not raised: one unreachable record does not cost the others).
        Raises :class:`DirectoryError` when this cache has no directory.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency!r}")
        if self.directory is None:
            raise DirectoryError(f"{self} has no directory to prewarm from")
        wanted = list(dict.fromkeys(node_ids))
        found: dict[str, NatProfile] = {}
        missing: list[str] = []
        failed: dict[str, DirectoryError] = {}
        limiter = trio.CapacityLimiter(concurrency)

        async def one(node_id: str) -> None:
            async with limiter:
                try:
                    result = await self.get_from_dht(node_id)
                except DirectoryError as exc:
                    failed[node_id] = exc
                    return
            if isinstance(result, NotFound):
                missing.append(node_id)
            else:
                found[node_id] = result.profile

        async with trio.open_nursery() as nursery:
            for node_id in wanted:
                nursery.start_soon(one, node_id)
        logger.debug(
            "%s: prewarmed %d of %d (%d unknown, %d failed)",
            self,
            len(found),
            len(wanted),
            len(missing),
            len(failed),
        )
        return PrewarmResult(
            found=found,
            missing=tuple(n for n in wanted if n in missing),
            failed=failed,
        )

    def stats(self) -> CacheStats:
        table = self._table
        return CacheStats(
            size=len(table),
            max_entries=table.max_entries,
            hits=table.hits,
            stale_hits=table.stale_hits,
            misses=table.misses,
            evictions=table.evictions,
            expired=table.expired,
            refreshes=self._refreshes,
            refresh_failures=self._refresh_failures,
            lookups_in_flight=len(self._pending),
        )

    # -- writes: through the server --------------------------------------------------------------

    async def put(self, node_id: str, profile: NatProfile, ttl: float | None = None) -> None:
        """Cache ``profile`` for ``ttl`` seconds (default: ``default_ttl``), then stale for
        ``stale_grace``; visible to readers once this returns. Local only: publishing a node's
        own record is the directory's business."""
        ttl = self.default_ttl if ttl is None else ttl
        if not ttl > 0:
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        await self._server_or_raise().call(_Put(node_id, profile, ttl), _CALL_TIMEOUT)

    async def invalidate(self, node_id: str) -> bool:
        """Forget ``node_id``'s profile (a lookup in flight for it will not store its answer);
        False if it was not cached."""
        removed: bool = await self._server_or_raise().call(_Invalidate(node_id), _CALL_TIMEOUT)
        return removed

    async def clear(self) -> None:
        """Forget every profile; the counters are cumulative and stay."""
        await self._server_or_raise().call(_Op.CLEAR, _CALL_TIMEOUT)

    # -- internals ---------------------------------------------------------------------------

    async def _resolve_result(self, node_id: str) -> CacheResult:
        profile = await self._resolve(node_id)
        return NOT_FOUND if profile is None else Fresh(profile)

    async def _resolve(self, node_id: str) -> NatProfile | None:
        timeout = self.lookup_timeout + _CALL_TIMEOUT  # the server bounds the lookup itself
        profile: NatProfile | None = await self._server_or_raise().call(_Resolve(node_id), timeout)
        return profile

    def _revalidate(self, node_id: str) -> None:
        server = self._server
        if node_id in self._pending or self.directory is None or server is None:
            return
        try:
            server.cast(_Refresh(node_id))
        except (MailboxFull, NoProc) as exc:
            logger.debug("%s: no revalidation of %r for now: %s", self, node_id, exc)
            return
        self._pending.add(node_id)

    def _attach(self, server: ActorRef) -> None:
        super()._attach(server)
        self._pending.clear()  # the lookups of a dead incarnation died with it

    def _store(self, node_id: str, profile: NatProfile, ttl: float) -> None:
        now = trio.current_time()
        evicted = self._table.insert(node_id, profile, now + ttl, now + ttl + self.stale_grace)
        if evicted:
            logger.debug("%s: evicted %d least recently used entries", self, evicted)


@attrs.define(eq=False)
class _InFlight:
    """One directory lookup and the callers waiting for it."""

    waiters: list[Caller] = attrs.Factory(list)
    superseded: bool = False
    """Set by a put, invalidate or clear meanwhile: the answer must not overwrite it."""


class ProfileCacheServer(Actor):
    """The one writer of a :class:`ProfileCache`'s table; runs its directory lookups."""

    def __init__(self, cache: ProfileCache) -> None:
        self._cache = cache
        self._lookups: dict[str, _InFlight] = {}
        self._limiter = trio.CapacityLimiter(cache.max_lookups)

    async def init(self) -> None:
        self._cache._attach(self.ref)
        if self._cache.sweep_interval is not None:
            self.send_after(self._cache.sweep_interval, _Op.SWEEP)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        cache = self._cache
        if isinstance(message, _Put):
            self._supersede(message.node_id)
            cache._store(message.node_id, message.profile, message.ttl)
            return None
        if isinstance(message, _Invalidate):
            self._supersede(message.node_id)
            return cache._table.remove(message.node_id)
        if isinstance(message, _Resolve):
            if cache.directory is None:
                return Fail(DirectoryError(f"{cache} has no directory"))
            self._lookup(message.node_id).waiters.append(caller)
            return NOREPLY
        if message is _Op.CLEAR:
            for in_flight in self._lookups.values():
                in_flight.superseded = True
            cache._table.clear()
            return None
        return await super().handle_call(message, caller)

    async def handle_cast(self, message: Any) -> Stop | None:
        if isinstance(message, _Refresh):
            if self._cache.directory is not None:
                self._lookup(message.node_id)
            return None
        return await super().handle_cast(message)

    async def handle_info(self, message: Any) -> Stop | None:
        if message is _Op.SWEEP and self._cache.sweep_interval is not None:
            swept = self._cache._table.purge(trio.current_time())
            if swept:
                logger.debug("%s: swept %d expired entries", self._cache, swept)
            self.send_after(self._cache.sweep_interval, _Op.SWEEP)
            return None
        return await super().handle_info(message)

    def _supersede(self, node_id: str) -> None:
        in_flight = self._lookups.get(node_id)
        if in_flight is not None:
            in_flight.superseded = True

    def _lookup(self, node_id: str) -> _InFlight:
        in_flight = self._lookups.get(node_id)
        if in_flight is None:
            in_flight = self._lookups[node_id] = _InFlight()
            self._cache._pending.add(node_id)
            self.start_soon(self._run_lookup, node_id, in_flight)
        return in_flight

    async def _run_lookup(self, node_id: str, in_flight: _InFlight) -> None:
        """Ask the directory; store the answer unless superseded; answer every waiter.

        The store is synchronous in this incarnation's own task, so it is serialised with the
        handlers; a DirectoryError or a timeout keeps whatever is cached. Any other exception is
        a bug in the directory and crashes the server (its waiters get ``ActorExited``).
        """
        cache = self._cache
        directory = cache.directory
        assert directory is not None
        profile: NatProfile | None = None
        error: DirectoryError | None = None
        with trio.move_on_after(cache.lookup_timeout) as scope:
            async with self._limiter:
                try:
                    profile = await directory.resolve_profile(node_id)
                except DirectoryError as exc:
                    error = exc
        if scope.cancelled_caught:
            error = DirectoryError(f"looking {node_id!r} up took over {cache.lookup_timeout} s")
        del self._lookups[node_id]
        cache._pending.discard(node_id)
        if error is not None:
            cache._refresh_failures += 1
            logger.warning(
                "%s: lookup of %r failed, keeping what is cached: %s", cache, node_id, error
            )
            for caller in in_flight.waiters:
                caller.fail(error)
            return
        cache._refreshes += 1
        if not in_flight.superseded:
            if profile is None:
                cache._table.remove(node_id)
            else:
                cache._store(node_id, profile, cache.default_ttl)
        for caller in in_flight.waiters:
            caller.reply(profile)


ProfileCache.server_class = ProfileCacheServer  # defined after the handle it serves
