"""A storing node's BEP 44 items: which puts to accept, and for how long to keep them.

Pure: the caller passes ``now`` (seconds on any monotonic clock). Items are verified before they
are stored, so `ItemStore.get` only ever returns items whose signature holds. Sizes are already
enforced by the item types (codes 205 and 207 arise when a put is decoded).
"""

from __future__ import annotations

from typing import Final

import attrs

from .error_code import ErrorCode
from .mutable_item import Item, MutableItem
from .node_id import NodeId

__all__ = ["ITEM_LIFETIME", "ItemStore", "PutRejected"]

ITEM_LIFETIME: Final = 2 * 60 * 60.0
"""BEP 44 "Expiration": without re-announcement items MAY expire in 2 hours."""


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


class ItemStore:
    """Items by target, each kept ``lifetime`` seconds after its last put.

    At ``capacity`` items, storing a new target evicts the item closest to expiry.
    """

    def __init__(self, *, lifetime: float = ITEM_LIFETIME, capacity: int = 4096) -> None:
        if lifetime <= 0:
            raise ValueError(f"lifetime must be positive, got {lifetime}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._lifetime = lifetime
        self._capacity = capacity
        self._items: dict[NodeId, _Stored] = {}

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item, now: float, *, cas: int | None = None) -> None:
        """Store ``item`` or raise `PutRejected` (BEP 44 "put message", "CAS", "Errors").

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
                if item.seq == current.seq:
                    stored.expires_at = now + self._lifetime
                    return
        if stored is None and len(self._items) >= self._capacity:
            self._evict(now)
        self._items[target] = _Stored(item, now + self._lifetime)

    def get(self, target: NodeId, now: float) -> Item | None:
        """The live item under ``target``, or None."""
        stored = self._live(target, now)
        return None if stored is None else stored.item

    def expire(self, now: float) -> int:
        """Drop every item that has expired by ``now``; return how many went."""
        expired = [target for target, stored in self._items.items() if stored.expires_at <= now]
        for target in expired:
            del self._items[target]
        return len(expired)

    def targets(self, now: float) -> list[NodeId]:
        """The targets of every live item, for republishing or inspection."""
        return [target for target, stored in self._items.items() if stored.expires_at > now]

    def _live(self, target: NodeId, now: float) -> _Stored | None:
        stored = self._items.get(target)
        if stored is not None and stored.expires_at <= now:
            del self._items[target]
            return None
        return stored

    def _evict(self, now: float) -> None:
        if self.expire(now) == 0:
            oldest = min(self._items, key=lambda target: self._items[target].expires_at)
            del self._items[oldest]
