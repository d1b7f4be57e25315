"""Where the node's one socket can ask for a fresh mapping, and whether an answer is fresh.

A NAT that allocates ports sequentially (``pc``) gives a new peer the port after the last one
it handed out, to whomever it handed it. The mapping the home relay reports was allocated at
registration; ports allocated since (the detector's probe sockets, other hosts behind the same
NAT) push the next one beyond the predicted ports. A Binding request from the node's socket to
a destination it has not used lately takes a new port now, and predictions start there.

A destination the socket asked while its mapping still lives answers with the old port, which
says nothing new: :class:`MappingTargets` skips destinations asked within ``reuse_after`` and
takes an answer equal to the previous one from the same destination as stale. Pure: no
sockets, no clocks (callers pass the time).
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from macula_nat.net.address import Address

__all__ = ["MAX_TARGETS", "MappingTargets"]

MAX_TARGETS: Final = 16
"""Destinations kept: the configured observers and the alternate addresses they report."""


@attrs.define
class MappingTargets:
    """STUN destinations for fresh mappings of one socket, and what each answered last."""

    reuse_after: float
    """Seconds before a destination is asked again (its mapping would still stand)."""
    _asked: dict[Address, float] = attrs.field(init=False, factory=dict)
    _answers: dict[Address, Address] = attrs.field(init=False, factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.reuse_after >= 0:
            raise ValueError(f"reuse_after must be >= 0, not {self.reuse_after!r}")

    def add(self, destination: Address) -> None:
        """Know ``destination`` (a no-op if known, or once :data:`MAX_TARGETS` are)."""
        if destination not in self._asked and len(self._asked) < MAX_TARGETS:
            self._asked[destination] = -math.inf

    def pick(self, now: float) -> Address | None:
        """The destination asked longest ago, unless every one was asked within
        ``reuse_after`` of ``now``; it counts as asked at ``now`` from here on."""
        if not self._asked:
            return None
        destination = min(self._asked, key=self._asked.__getitem__)
        if now - self._asked[destination] < self.reuse_after:
            return None
        self._asked[destination] = now
        return destination

    def answer(self, destination: Address, mapped: Address) -> Address | None:
        """Record that ``destination`` saw the socket at ``mapped``: ``mapped`` if that is
        news, None if it repeats the previous answer (the old mapping still stood)."""
        previous = self._answers.get(destination)
        self._answers[destination] = mapped
        return None if mapped == previous else mapped
