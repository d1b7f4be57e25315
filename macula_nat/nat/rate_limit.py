"""Token buckets keyed by source, in a table of bounded size: the observer's per-source limit.

Sans-IO: the caller passes the time, so the limit runs the same under ``MockClock`` and in tests
without any clock. The table holds at most ``capacity`` keys; a new key beyond that evicts the
least recently seen one, so a flood of spoofed sources costs bounded memory. Eviction forgets a
key's debt (it comes back with a full bucket), which only ever errs towards answering: the
observer's own output stays bounded by ``rate`` per key that is remembered, and by the
amplification bound per datagram.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from typing import Final

__all__ = ["DEFAULT_BURST", "DEFAULT_RATE", "TokenBuckets"]

# The observer's defaults live here, beside the limit and away from Trio, so that
# ``macula-nat observe --help`` shows them without loading the observer.
DEFAULT_RATE: Final = 20.0
"""Requests a second answered per source IP (per /64 for IPv6), sustained."""
DEFAULT_BURST: Final = 60.0
"""Requests a source may send at once: a full detection (RFC 5780 tests, allocation probes on
several sockets, retransmissions) takes a few tens, and several hosts may share one NAT's IP."""


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens a second, holding at most ``burst``.

    Each allowed event spends one token; an unseen key starts with a full bucket.
    """

    __slots__ = ("_buckets", "_burst", "_capacity", "_rate", "evictions")

    def __init__(self, rate: float, burst: float, capacity: int) -> None:
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be a positive number of tokens per second, not {rate!r}")
        if not (burst >= 1 and math.isfinite(burst)):
            raise ValueError(f"burst must be at least 1 token, not {burst!r}")
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1 key, not {capacity!r}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._capacity = capacity
        self._buckets: OrderedDict[Hashable, _Bucket] = OrderedDict()
        self.evictions = 0
        """Keys forgotten to make room for new ones."""

    def __len__(self) -> int:
        return len(self._buckets)

    @property
    def capacity(self) -> int:
        return self._capacity

    def allow(self, key: Hashable, now: float) -> bool:
        """Spend one of ``key``'s tokens at time ``now`` (seconds); False if it has none left."""
        buckets = self._buckets
        bucket = buckets.get(key)
        if bucket is None:
            if len(buckets) >= self._capacity:
                buckets.popitem(last=False)
                self.evictions += 1
            buckets[key] = _Bucket(self._burst - 1.0, now)
            return True
        buckets.move_to_end(key)
        elapsed = now - bucket.stamp
        if elapsed > 0:
            bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._rate)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False
