"""What each source holds in a store, and who holds the most: per-source fairness, sans-IO.

ARCHITECTURE section 10: every scarce thing a stranger can take is accounted per source (an
IPv4 address or an IPv6 /64, see `macula_nat.net.address.source_prefix`), and eviction takes
from the largest holder first, never "oldest first", so one source flooding a store only ever
pushes out its own records. `Holdings` is that accounting for the item and peer stores: each
source's keys, oldest first, and the largest holder, found in O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Holdings"]

K = TypeVar("K", bound=Hashable)


class Holdings(Generic[K]):
    """Keys held per source, oldest first; `evict` takes from the largest holder.

    A key is held once per source (adding it again makes it that source's newest). Sources
    holding two keys or more are indexed by their count, so the largest holder is found in
    O(1); adding or dropping a key costs O(keys of that source), which a per-source quota bounds.
    A source holding one key (the common case) costs one dict entry, no list.
    """

    __slots__ = ("_by_count", "_keys", "_most", "_total")

    def __init__(self) -> None:
        self._keys: dict[str, K | list[K]] = {}
        """Per source: its one key, or its keys (two or more) oldest first. K is hashable, so
        never a list."""
        self._by_count: dict[int, OrderedDict[str, None]] = {}
        """Sources by how many keys they hold, for counts of 2 and more."""
        self._most = 0
        self._total = 0

    def __len__(self) -> int:
        """How many keys are held, over all sources."""
        return self._total

    @property
    def sources(self) -> int:
        """How many sources hold at least one key."""
        return len(self._keys)

    @property
    def most(self) -> int:
        """The largest number of keys one source holds (0 when empty)."""
        return self._most

    def count(self, source: str) -> int:
        """How many keys ``source`` holds."""
        held = self._keys.get(source)
        if held is None:
            return 0
        return len(held) if isinstance(held, list) else 1

    def oldest(self, source: str) -> K:
        """The key ``source`` added longest ago; KeyError if it holds none."""
        held = self._keys[source]
        return held[0] if isinstance(held, list) else held

    def keys(self, source: str) -> list[K]:
        """The keys ``source`` holds, oldest first (a copy)."""
        held = self._keys.get(source)
        if held is None:
            return []
        return list(held) if isinstance(held, list) else [held]

    def add(self, source: str, key: K) -> None:
        """Record that ``source`` holds ``key`` (now its newest)."""
        held = self._keys.get(source)
        if held is None:
            self._keys[source] = key
            self._total += 1
            self._most = max(self._most, 1)
            return
        if not isinstance(held, list):
            if held == key:
                return
            held = self._keys[source] = [held]
        elif key in held:
            held.remove(key)
            held.append(key)
            return
        self._unindex(source, len(held))
        held.append(key)
        self._total += 1
        self._index(source, len(held))

    def discard(self, source: str, key: K) -> bool:
        """Forget that ``source`` holds ``key``; False if it did not."""
        held = self._keys.get(source)
        if held is None:
            return False
        if not isinstance(held, list):
            if held != key:
                return False
            del self._keys[source]
        else:
            if key not in held:
                return False
            self._unindex(source, len(held))
            held.remove(key)
            if len(held) == 1:
                self._keys[source] = held[0]
            else:
                self._index(source, len(held))
        self._total -= 1
        self._lower_most()
        return True

    def largest(self) -> str | None:
        """A source holding the most keys (None when empty)."""
        if self._most >= 2:
            return next(iter(self._by_count[self._most]))
        return next(reversed(self._keys), None)

    def evict(self) -> tuple[str, K]:
        """Drop and return the oldest key of a largest holder; KeyError when empty.

        Among sources holding one key each, the one that came last goes: established sources
        keep their place while newcomers churn among themselves.
        """
        if self._most >= 2:
            source = next(iter(self._by_count[self._most]))
            key = self.oldest(source)
            self.discard(source, key)
            return source, key
        if not self._keys:
            raise KeyError("nothing is held")
        source, held = self._keys.popitem()  # O(1), where a scan for the last would not be
        self._total -= 1
        self._lower_most()
        assert not isinstance(held, list)  # every source holds one key here
        return source, held

    def _index(self, source: str, count: int) -> None:
        if count >= 2:
            self._by_count.setdefault(count, OrderedDict())[source] = None
            self._most = max(self._most, count)

    def _unindex(self, source: str, count: int) -> None:
        if count >= 2:
            bucket = self._by_count[count]
            del bucket[source]
            if not bucket:
                del self._by_count[count]

    def _lower_most(self) -> None:
        while self._most >= 2 and self._most not in self._by_count:
            self._most -= 1
        if self._most == 1 and not self._keys:
            self._most = 0
