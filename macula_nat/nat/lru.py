"""A bounded LRU table with stale-while-revalidate expiry: the profile cache's pure core.

No clock and no I/O: every operation takes ``now`` (any monotonic time), so the core is tested
against a model with hypothesis. An entry is fresh until ``fresh_until``, then stale (still
served, to be revalidated) until ``stale_until``, then gone. Reads and writes both count as use
for the least-recently-used order; when the table is over ``max_entries`` the least recently used
entry is evicted.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any, Final, Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LookupState(enum.Enum):
    """What a lookup found (the Erlang cache's ``{ok, _}``, ``{stale, _}`` and ``not_found``)."""

    FRESH = "fresh"
    STALE = "stale"
    MISSING = "missing"


class Lookup(NamedTuple, Generic[V]):
    """The answer to a lookup: the value (None when missing) and how fresh it is.

    A named tuple, not an attrs class: one is made per cache read, and a tuple is made in half
    the time."""

    value: V | None
    state: LookupState

    @property
    def found(self) -> bool:
        """True for a fresh or a stale hit."""
        return self.state is not LookupState.MISSING


MISSING: Final[Lookup[Any]] = Lookup(None, LookupState.MISSING)
"""The one answer for a miss (shared: a miss allocates nothing)."""


class _Entry(Generic[V]):
    __slots__ = ("fresh_until", "stale_until", "value")

    def __init__(self, value: V, fresh_until: float, stale_until: float) -> None:
        self.value = value
        self.fresh_until = fresh_until
        self.stale_until = stale_until


class SwrLru(Generic[K, V]):
    """Key -> value with per-entry freshness, bounded by true LRU eviction; counts what it does.

    Counters: ``hits`` (fresh), ``stale_hits``, ``misses`` (absent or past ``stale_until``),
    ``evictions`` (LRU, for room), ``expired`` (dropped past ``stale_until`` by a lookup or
    :meth:`purge`).
    """

    __slots__ = (
        "_entries",
        "_max_entries",
        "evictions",
        "expired",
        "hits",
        "misses",
        "stale_hits",
    )

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._max_entries = _check_max(max_entries)
        self.hits = 0
        self.stale_hits = 0
        self.misses = 0
        self.evictions = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def keys(self) -> Iterator[K]:
        """Keys from least to most recently used."""
        return iter(self._entries)

    @property
    def max_entries(self) -> int:
        return self._max_entries

    def resize(self, max_entries: int) -> int:
        """Change the bound, evicting least recently used entries to fit; returns how many."""
        self._max_entries = _check_max(max_entries)
        return self._evict_to_fit()

    def lookup(self, key: K, now: float) -> Lookup[V]:
        """Fresh or stale hit (marking the entry most recently used), or :data:`MISSING`."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return MISSING
        if now <= entry.fresh_until:
            self._entries.move_to_end(key)
            self.hits += 1
            return Lookup(entry.value, LookupState.FRESH)
        if now <= entry.stale_until:
            self._entries.move_to_end(key)
            self.stale_hits += 1
            return Lookup(entry.value, LookupState.STALE)
        del self._entries[key]
        self.expired += 1
        self.misses += 1
        return MISSING

    def insert(self, key: K, value: V, fresh_until: float, stale_until: float) -> int:
        """Store (or replace) ``key`` as most recently used; returns how many entries it evicted."""
        if stale_until < fresh_until:
            raise ValueError(f"stale_until ({stale_until}) is before fresh_until ({fresh_until})")
        entries = self._entries
        if key in entries:
            entries.move_to_end(key)
        entries[key] = _Entry(value, fresh_until, stale_until)
        return self._evict_to_fit()

    def remove(self, key: K) -> bool:
        """Forget ``key``; False if it was not there."""
        return self._entries.pop(key, None) is not None

    def clear(self) -> None:
        """Forget every entry (the counters stay: they are cumulative)."""
        self._entries.clear()

    def purge(self, now: float) -> int:
        """Drop every entry past its ``stale_until``; returns how many (counted as expired)."""
        dead = [key for key, entry in self._entries.items() if now > entry.stale_until]
        for key in dead:
            del self._entries[key]
        self.expired += len(dead)
        return len(dead)

    def _evict_to_fit(self) -> int:
        entries = self._entries
        evicted = 0
        while len(entries) > self._max_entries:
            entries.popitem(last=False)
            evicted += 1
        self.evictions += evicted
        return evicted


def _check_max(max_entries: int) -> int:
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, not {max_entries}")
    return max_entries
