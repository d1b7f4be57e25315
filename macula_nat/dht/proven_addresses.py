"""Addresses that have proven they receive our packets, for the amplification bound, sans-IO.

An address proves itself by a round trip (ARCHITECTURE section 10, RFC 9000 8.1): it answered
a query of ours (the transaction id it echoed was random and sent only to it), or it echoed a
write token we issued to it (BEP 5). Until then, every answer to it is cut to a few times its
request, so a spoofed source cannot turn this node into an amplifier. A proof lasts ``lifetime``
seconds (addresses get reassigned); at most ``capacity`` are kept, the least recently proven
forgotten first (forgetting only costs that address a trimmed answer and a token round trip).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

__all__ = ["PROOF_LIFETIME", "ProvenAddresses"]

PROOF_LIFETIME: Final = 10 * 60.0
"""Seconds a proof lasts: as long as a BEP 5 token at most."""


class ProvenAddresses:
    """IP addresses proven at some time, each valid ``lifetime`` seconds; bounded."""

    __slots__ = ("_capacity", "_lifetime", "_proven")

    def __init__(self, *, capacity: int = 4096, lifetime: float = PROOF_LIFETIME) -> None:
        if capacity < 1 or not lifetime > 0:
            raise ValueError(f"capacity and lifetime must be positive: {capacity}, {lifetime}")
        self._capacity = capacity
        self._lifetime = lifetime
        self._proven: OrderedDict[str, float] = OrderedDict()
        """IP -> when its proof ends, oldest proof first."""

    def __len__(self) -> int:
        return len(self._proven)

    @property
    def capacity(self) -> int:
        return self._capacity

    def prove(self, ip: str, now: float) -> None:
        """``ip`` has just completed a round trip with us."""
        proven = self._proven
        proven[ip] = now + self._lifetime
        proven.move_to_end(ip)
        while len(proven) > self._capacity:
            proven.popitem(last=False)

    def is_proven(self, ip: str, now: float) -> bool:
        """Whether ``ip`` completed a round trip within the last ``lifetime`` seconds."""
        until = self._proven.get(ip)
        if until is None:
            return False
        if until <= now:
            del self._proven[ip]
            return False
        return True
