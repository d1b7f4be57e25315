"""A storing node's BEP 44 items: which puts to accept, and for how long to keep them.

Pure: the caller passes ``now`` (seconds on any monotonic clock). Items are verified before they
are stored, so `ItemStore.get` only ever returns items whose signature holds. Sizes are already
enforced by the item types (codes 205 and 207 arise when a put is decoded).

Storage is shared per source (ARCHITECTURE section 10): each item is charged to the source that
first stored it; a source at its quota replaces its own oldest item, and a full store evicts the
oldest item of the largest holder, so a flood from one source never pushes out others' items.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import attrs

from macula_nat.holdings import Holdings

from .error_code import ErrorCode
from .mutable_item import Item, MutableItem
from .node_id import NodeId

__all__ = ["ITEM_LIFETIME", "OWN_SOURCE", "ItemStore", "PutRejected"]

ITEM_LIFETIME: Final = 2 * 60 * 60.0
"""BEP 44 "Expiration": without re-announcement items MAY expire in 2 hours."""
OWN_SOURCE: Final = "own"
"""The source our own items are charged to (no source prefix looks like it)."""


class PutRejected(Exception):
    """A put the store refused; ``code`` is the KRPC error to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{int(code)} {message}")
        self.code = code
        self.message = message


@attrs.define
class _Stored:
    item: Item
    expires_at: float
    source: str


class ItemStore:
    """Items by target, each kept ``lifetime`` seconds after its last put.

    Each item is charged to the source that stored it first. A new target from a source
    holding ``per_source`` items replaces that source's oldest; at ``capacity`` items, the oldest
    item of the largest holder goes (after the expired ones).
    """

    def __init__(
        self, *, lifetime: float = ITEM_LIFETIME, capacity: int = 4096, per_source: int = 256
    ) -> None:
        if lifetime <= 0:
            raise ValueError(f"lifetime must be positive, got {lifetime}")
        if capacity < 1 or per_source < 1:
            raise ValueError(
                f"capacity and per_source must be at least 1, got {capacity} and {per_source}"
            )
        self._lifetime = lifetime
        self._capacity = capacity
        self._per_source = per_source
        self._items: OrderedDict[NodeId, _Stored] = OrderedDict()
        """Oldest put first, which with one lifetime for all is soonest to expire first."""
        self._holdings: Holdings[NodeId] = Holdings()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def per_source(self) -> int:
        return self._per_source

    @property
    def sources(self) -> int:
        """Sources holding at least one item."""
        return self._holdings.sources

    @property
    def largest_holding(self) -> int:
        """Items held by the largest holder."""
        return self._holdings.most

    def held_by(self, source: str) -> int:
        """Items charged to ``source``."""
        return self._holdings.count(source)

    def put(
        self, item: Item, now: float, *, cas: int | None = None, source: str = OWN_SOURCE
    ) -> None:
        """Store ``item`` for ``source`` (a `source_prefix`) or raise `PutRejected` (BEP 44
        "put message", "CAS", "Errors").

        A mutable item needs a valid signature (206). Over a live item under the same target:
        ``cas``, when given, must equal the stored seq (301); ``seq`` must be newer, or equal
        with the same value, which only refreshes the expiry (302 otherwise). Immutable items
        are authenticated by their target and only ever refresh.
        """
        if isinstance(item, MutableItem) and not item.verify():
            raise PutRejected(ErrorCode.INVALID_SIGNATURE, "invalid signature")
        if cas is not None and not isinstance(item, MutableItem):
            raise PutRejected(ErrorCode.PROTOCOL, "cas applies to mutable items only")
        target = item.target
        stored = self._live(target, now)
        if stored is not None and isinstance(item, MutableItem):
            current = stored.item
            if isinstance(current, MutableItem):
                if cas is not None and cas != current.seq:
                    raise PutRejected(
                        ErrorCode.CAS_MISMATCH, f"cas {cas} but stored seq is {current.seq}"
                    )
                if item.seq < current.seq or (
                    item.seq == current.seq and item.value != current.value
                ):
                    raise PutRejected(
                        ErrorCode.SEQUENCE_TOO_OLD,
                        f"seq {item.seq} is not newer than stored seq {current.seq}",
                    )
        if stored is not None:
            # A refresh or a newer seq: the item stays charged to whoever stored it first.
            stored.item = item
            stored.expires_at = now + self._lifetime
            self._items.move_to_end(target)
            self._holdings.add(stored.source, target)
            return
        if self._holdings.count(source) >= self._per_source:
            self._drop(self._holdings.oldest(source))
        elif len(self._items) >= self._capacity and self.expire(now) == 0:
            self._drop(self._holdings.evict()[1])
        self._items[target] = _Stored(item, now + self._lifetime, source)
        self._holdings.add(source, target)

    def get(self, target: NodeId, now: float) -> Item | None:
        """The live item under ``target``, or None."""
        stored = self._live(target, now)
        return None if stored is None else stored.item

    def expire(self, now: float) -> int:
        """Drop every item that has expired by ``now``; return how many went. O(expired)."""
        expired = 0
        while self._items:
            target, stored = next(iter(self._items.items()))
            if stored.expires_at > now:
                break
            self._drop(target)
            expired += 1
        return expired

    def targets(self, now: float) -> list[NodeId]:
        """The targets of every live item, for republishing or inspection."""
        return [target for target, stored in self._items.items() if stored.expires_at > now]

    def _live(self, target: NodeId, now: float) -> _Stored | None:
        stored = self._items.get(target)
        if stored is not None and stored.expires_at <= now:
            self._drop(target)
            return None
        return stored

    def _drop(self, target: NodeId) -> None:
        stored = self._items.pop(target)
        self._holdings.discard(stored.source, target)
