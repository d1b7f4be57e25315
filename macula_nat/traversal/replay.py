"""ReplayWindow: which PROBE nonces of one peer are fresh, each accepted once (sans-IO).

A nonce starts with the sender's clock in milliseconds (four bytes, modulo 2**32), then random
bytes (:func:`stamped_nonce`). The window needs no synchronised clocks: it measures a nonce's
age against the newest nonce seen from the same sender, like IPsec's anti-replay window against
its sequence numbers. A nonce older than ``lifetime`` (by the sender's own clock), or seen
before, is refused. At most ``capacity`` nonces are remembered: forgetting one raises the floor
to its time, so eviction never lets a replay through (it may refuse a late genuine one, which
the sender's next probe replaces).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

__all__ = ["ReplayWindow", "nonce_time", "stamped_nonce"]

_TICKS: Final = 1000
"""Nonce clock ticks per second."""
_WRAP: Final = 1 << 32
_HALF: Final = 1 << 31


def stamped_nonce(
    now: float, size: int, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    """A ``size``-byte nonce (at least 8): the time ``now`` in ms, then random bytes."""
    if size < 8:
        raise ValueError(f"a stamped nonce needs at least 8 bytes, not {size}")
    ticks = int(now * _TICKS) % _WRAP
    return ticks.to_bytes(4, "big") + random_bytes(size - 4)


def nonce_time(nonce: bytes) -> int:
    """The sender's clock in a stamped nonce, in ms modulo 2**32."""
    return int.from_bytes(nonce[:4], "big")


def _after(a: int, b: int) -> int:
    """How many ticks ``a`` is after ``b`` (negative if before), modulo 2**32 (RFC 1982)."""
    return (a - b + _HALF) % _WRAP - _HALF


class ReplayWindow:
    """Each stamped nonce of one sender at most once, and none older than ``lifetime``."""

    __slots__ = ("_capacity", "_floor", "_lifetime", "_newest", "_seen")

    def __init__(self, lifetime: float, capacity: int) -> None:
        if not lifetime > 0:
            raise ValueError(f"lifetime must be positive, not {lifetime!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity!r}")
        self._lifetime = int(lifetime * _TICKS)
        self._capacity = capacity
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._newest: int | None = None
        self._floor: int | None = None
        """Nonces at or before this time are refused (their memory was given up)."""

    def __len__(self) -> int:
        return len(self._seen)

    def accept(self, nonce: bytes) -> bool:
        """True the first time a fresh ``nonce`` is offered; False for a replay or a stale one."""
        stamp = nonce_time(nonce)
        if self._newest is None or _after(stamp, self._newest) > 0:
            self._newest = stamp
        if _after(self._newest, stamp) > self._lifetime:
            return False
        if self._floor is not None and _after(stamp, self._floor) <= 0:
            return False
        if nonce in self._seen:
            return False
        self._seen[nonce] = stamp
        self._expire()
        return True

    def _expire(self) -> None:
        assert self._newest is not None
        seen = self._seen
        while seen:
            nonce, stamp = next(iter(seen.items()))
            if len(seen) <= self._capacity and _after(self._newest, stamp) <= self._lifetime:
                break
            del seen[nonce]
            if _after(self._newest, stamp) <= self._lifetime:  # given up for room, not age
                self._raise_floor(stamp)

    def _raise_floor(self, stamp: int) -> None:
        if self._floor is None or _after(stamp, self._floor) > 0:
            self._floor = stamp
