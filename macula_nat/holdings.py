"""What each source holds in a bounded table, and who holds the most: per-source fairness, sans-IO.

ARCHITECTURE section 10: every scarce thing a stranger can take (a relay registration or
session, a DHT item or announcement) is accounted per source (an IPv4 address or an IPv6 /64,
see :func:`macula_nat.net.address.source_prefix`), and eviction takes from the largest holder
first, never "oldest first", so one source flooding a table only ever pushes out its own
records. :class:`Holdings` is that accounting, the one the relay and the DHT share: each
source's keys, oldest first, and the largest holder, found in O(1). Policies sit on top
(:mod:`macula_nat.relay.shares`, the DHT stores).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from itertools import islice
from typing import Final, Generic, TypeVar

__all__ = ["Holdings"]

K = TypeVar("K", bound=Hashable)

_LIST_MOST: Final = 16
"""A source's keys are a list up to this many (8 bytes a key, the leanest: a DHT attacker's
cheapest spread is many sources of 2 keys each), a dict past it (O(1) drops: a relay source may
hold 10,000 keys and end them in any order)."""
_LIST_AGAIN: Final = _LIST_MOST // 2
"""A dict shrunk to this many keys becomes a list again (not at ``_LIST_MOST``: no flapping)."""


class Holdings(Generic[K]):
    """Keys held per source, oldest first; :meth:`evict` takes from the largest holder.

    A key is held once per source (adding it again makes it that source's newest); whether a
    key may be held by several sources is the owner's rule (DHT swarms: yes; relay slots: no,
    the owner discards it from one source before adding it to another). Adding, dropping and
    finding the largest holder are O(1) however many keys a source holds (O(16) at most for
    a source holding few). Memory is lean where a table of many sources needs it: a source
    holding one key (the common case) costs one dict entry, a few keys a short list; sources
    holding two or more are indexed by their count.
    """

    __slots__ = ("_by_count", "_keys", "_most", "_total")

    def __init__(self) -> None:
        self._keys: dict[str, K | list[K] | dict[K, None]] = {}
        """Per source: its one key, or its keys (two or more) oldest first, a list or, past
        :data:`_LIST_MOST`, a dict. K is hashable, so never either."""
        self._by_count: dict[int, OrderedDict[str, None]] = {}
        """Sources by how many keys they hold, for counts of 2 and more, first to reach the
        count first (an OrderedDict: finding the first stays O(1) after deletions)."""
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
        return len(held) if isinstance(held, list | dict) else 1

    def oldest(self, source: str) -> K:
        """The key ``source`` added longest ago; KeyError if it holds none."""
        held = self._keys[source]
        if isinstance(held, list):
            return held[0]
        return next(iter(held)) if isinstance(held, dict) else held

    def keys(self, source: str, limit: int | None = None) -> list[K]:
        """The keys ``source`` holds, oldest first (a copy); the ``limit`` oldest only if
        given, in O(limit) however many it holds."""
        held = self._keys.get(source)
        if held is None:
            return []
        if isinstance(held, list | dict):
            return list(islice(held, limit))
        return [held] if limit is None or limit >= 1 else []

    def add(self, source: str, key: K) -> None:
        """Record that ``source`` holds ``key`` (now its newest)."""
        held = self._keys.get(source)
        if held is None:
            self._keys[source] = key
            self._total += 1
            self._most = max(self._most, 1)
            return
        if isinstance(held, list):
            if key in held:
                held.remove(key)
                held.append(key)
                return
        elif isinstance(held, dict):
            if key in held:
                del held[key]
                held[key] = None
                return
        elif held == key:
            return
        else:
            held = self._keys[source] = [held]
        count = len(held)
        self._unindex(source, count)
        if isinstance(held, dict):
            held[key] = None
        elif count < _LIST_MOST:
            held.append(key)
        else:
            held = self._keys[source] = dict.fromkeys(held)
            held[key] = None
        self._total += 1
        self._index(source, count + 1)

    def discard(self, source: str, key: K) -> bool:
        """Forget that ``source`` holds ``key``; False if it did not."""
        held = self._keys.get(source)
        if held is None:
            return False
        if not isinstance(held, list | dict):
            if held != key:
                return False
            del self._keys[source]
        else:
            if key not in held:
                return False
            self._unindex(source, len(held))
            if isinstance(held, list):
                held.remove(key)
            else:
                del held[key]
            count = len(held)
            if count == 1:
                self._keys[source] = next(iter(held))
            else:
                if count == _LIST_AGAIN and isinstance(held, dict):
                    self._keys[source] = list(held)
                self._index(source, count)
        self._total -= 1
        self._lower_most()
        return True

    def largest(self) -> str | None:
        """A source holding the most keys (None when empty); among equals, the first to
        reach that count."""
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
        assert not isinstance(held, list | dict)  # every source holds one key here
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
