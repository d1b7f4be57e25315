"""Fair shares of a bounded table among sources, sans-IO: who may take a slot, and who gives one up.

The relay's registrations and sessions are scarce, and a stranger can ask for them under as many
keys as it likes, so they are counted per *source* (:func:`macula_nat.net.address.source_prefix`:
an IPv4 address, or an IPv6 /64), as coturn's per-user quotas and libp2p's resource manager
(limits per peer, per IP, per subnet) do. The rule, for a table of ``capacity`` slots and a
share of ``share`` slots per source:

- while the table has room, anyone takes a slot (nobody else is waiting);
- when it is full, a source already holding its share or more is refused;
- when it is full and a source under its share asks, the largest holder gives up a slot if it
  holds more than its share (largest first, never "oldest first"); otherwise the asker is refused.

So a source that flooded an empty table keeps what it took only until others want slots, and
a source never grows past its share while the table is full. Which of the largest holder's
slots goes is the caller's choice (:class:`Evict` names the source, not the slot; :meth:`oldest`
offers a few candidates in O(1)).
"""

from __future__ import annotations

from collections.abc import Hashable
from itertools import islice
from typing import Generic, TypeVar

import attrs

__all__ = ["Admit", "Evict", "Refuse", "SourceShares", "share_of"]

K = TypeVar("K", bound=Hashable)


def share_of(capacity: int, fraction: float) -> int:
    """Slots one source may hold of ``capacity`` while others want them: at least 1."""
    return max(1, int(capacity * fraction))


@attrs.frozen
class Admit:
    """Take a free slot."""


@attrs.frozen
class Evict:
    """Take a slot once one of ``source``'s slots is freed (it holds more than its share)."""

    source: str


@attrs.frozen
class Refuse:
    """No slot: the table is full and the asker holds its share, or nobody is over theirs."""


Decision = Admit | Evict | Refuse

_ADMIT = Admit()
_REFUSE = Refuse()


class SourceShares(Generic[K]):
    """Which keys each source holds, with the largest holder found in O(1).

    ``capacity`` and ``share`` are slot counts (see :func:`share_of`); the owner calls
    :meth:`decide` before taking a slot and :meth:`add`/:meth:`discard` as slots are taken and
    freed. Keys are unique across sources.
    """

    __slots__ = ("_by_count", "_held", "_source_of", "_top", "capacity", "share")

    def __init__(self, capacity: int, share: int) -> None:
        if capacity < 0 or share < 1:
            raise ValueError(f"capacity must be >= 0 and share >= 1, not {capacity}, {share}")
        self.capacity = capacity
        self.share = share
        self._held: dict[str, dict[K, None]] = {}
        """Source -> its keys, in the order taken."""
        self._source_of: dict[K, str] = {}
        self._by_count: dict[int, set[str]] = {}
        """Count -> the sources holding exactly that many keys."""
        self._top = 0
        """The largest count any source holds."""

    def __len__(self) -> int:
        return len(self._source_of)

    def __contains__(self, key: object) -> bool:
        return key in self._source_of

    def held(self, source: str) -> int:
        """How many slots ``source`` holds."""
        keys = self._held.get(source)
        return 0 if keys is None else len(keys)

    def oldest(self, source: str, count: int) -> list[K]:
        """Up to ``count`` of ``source``'s keys, those it has held longest first: O(count),
        however many it holds."""
        return list(islice(self._held.get(source, ()), count))

    def source_of(self, key: K) -> str | None:
        return self._source_of.get(key)

    @property
    def largest(self) -> int:
        """The most slots any one source holds."""
        return self._top

    def largest_source(self) -> str | None:
        """A source holding :attr:`largest` slots, or None when the table is empty."""
        holders = self._by_count.get(self._top)
        return next(iter(holders)) if holders else None

    def decide(self, source: str, *, renewing: bool = False) -> Decision:
        """May ``source`` take one more slot? ``renewing``: the slot it takes replaces one of
        the table's (a key moving to this source), so the table does not grow."""
        full = len(self._source_of) >= self.capacity
        if not full:
            return _ADMIT
        if self.held(source) >= self.share:
            return _REFUSE
        if renewing:
            return _ADMIT
        victim = self.largest_source()
        if victim is None or self._top <= self.share:
            return _REFUSE
        return Evict(victim)

    def add(self, key: K, source: str) -> None:
        """Record ``key`` as ``source``'s (moving it if another source held it)."""
        if self._source_of.get(key) == source:
            return
        self.discard(key)
        keys = self._held.setdefault(source, {})
        count = len(keys)
        keys[key] = None
        self._source_of[key] = source
        self._move(source, count, count + 1)

    def discard(self, key: K) -> None:
        """Forget ``key`` (no-op if unknown)."""
        source = self._source_of.pop(key, None)
        if source is None:
            return
        keys = self._held[source]
        count = len(keys)
        del keys[key]
        if not keys:
            del self._held[source]
        self._move(source, count, count - 1)

    def _move(self, source: str, old: int, new: int) -> None:
        if old:
            holders = self._by_count[old]
            holders.discard(source)
            if not holders:
                del self._by_count[old]
        if new:
            self._by_count.setdefault(new, set()).add(source)
        if new > self._top:
            self._top = new
        elif old == self._top and old not in self._by_count:
            self._top = new  # counts change by one, so ``new`` is the next largest
