"""Which QUIC Initials may start a handshake on a listener: handshake slots per source.

Sans-IO: the listener asks :meth:`HandshakeSlots.decide` about each Initial that may start a
connection, then tells it which handshakes it started (:meth:`~HandshakeSlots.take`) and which
ended (:meth:`~HandshakeSlots.release`).

- **Unproven addresses** (an Initial without a valid Retry token) may hold at most
  ``retry_threshold`` slots; past that, every such Initial is answered with a Retry, which is
  smaller than the Initial (no amplification) and holds nothing. A spoofed source never
  answers it, so a flood of spoofed Initials holds ``retry_threshold`` slots, not all of them.
- **Proven addresses** (a valid token) hold at most ``per_source`` slots each, a source being
  an IPv4 address or an IPv6 /64. When every slot is taken, a proven newcomer evicts a
  handshake from an unproven address first, else one of the largest holder's if it holds more
  than the newcomer would (never "oldest first").
"""

from __future__ import annotations

import enum
from collections.abc import Hashable

import attrs

__all__ = ["Admission", "HandshakeLimits", "HandshakeSlots", "Verdict"]


class Verdict(enum.Enum):
    START = "start"
    """Start the handshake (after evicting ``Admission.evict``, if any)."""
    RETRY = "retry"
    """Answer with a Retry: the address must prove it receives our packets first."""
    REFUSE = "refuse"
    """Drop the Initial: its source holds its share already."""


@attrs.frozen
class Admission:
    verdict: Verdict
    evict: Hashable | None = None
    """The handshake to end first to make room (START only)."""


@attrs.frozen
class HandshakeLimits:
    """Handshake slots of a listener (the defaults suit a public node)."""

    max_handshakes: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    """Handshakes in flight at once."""
    per_source: int = attrs.field(default=4, validator=attrs.validators.ge(1))
    """Handshakes in flight from one proven source (IPv4 address, IPv6 /64)."""
    retry_threshold: int = attrs.field(default=4, validator=attrs.validators.ge(0))
    """Handshakes from unproven addresses at once; beyond, Initials without a token get a
    Retry (0: always Retry, at the cost of one round trip per connection)."""


@attrs.define
class _Slot:
    source: str
    proven: bool


@attrs.define
class HandshakeSlots:
    """Pending handshakes, by key (the listener's connection) and source."""

    limits: HandshakeLimits = attrs.field(factory=HandshakeLimits)
    _slots: dict[Hashable, _Slot] = attrs.field(init=False, factory=dict)
    """In the order they were taken."""
    _proven_by_source: dict[str, int] = attrs.field(init=False, factory=dict)

    @property
    def pending(self) -> int:
        return len(self._slots)

    @property
    def unproven(self) -> int:
        return sum(1 for slot in self._slots.values() if not slot.proven)

    def held_by(self, source: str) -> int:
        """Slots ``source`` holds with a proven address."""
        return self._proven_by_source.get(source, 0)

    def decide(self, source: str, *, proven: bool) -> Admission:
        """What to do with an Initial from ``source`` (proven: it carried a valid token)."""
        limits = self.limits
        if not proven:
            if self.unproven >= min(limits.retry_threshold, limits.max_handshakes):
                return Admission(Verdict.RETRY)
            if self.pending >= limits.max_handshakes:
                return Admission(Verdict.RETRY)
            return Admission(Verdict.START)
        holds = self.held_by(source)
        if holds >= limits.per_source:
            return Admission(Verdict.REFUSE)
        if self.pending < limits.max_handshakes:
            return Admission(Verdict.START)
        victim = self._victim(holds)
        if victim is None:
            return Admission(Verdict.REFUSE)
        return Admission(Verdict.START, evict=victim)

    def _victim(self, newcomer_holds: int) -> Hashable | None:
        for key, slot in self._slots.items():
            if not slot.proven:
                return key
        largest = max(self._proven_by_source, key=self._proven_by_source.__getitem__)
        if self._proven_by_source[largest] <= newcomer_holds + 1:
            return None  # evicting would only move the imbalance to the newcomer
        return next(key for key, slot in self._slots.items() if slot.source == largest)

    def take(self, key: Hashable, source: str, *, proven: bool) -> None:
        """Record a handshake started for ``key``."""
        if key in self._slots:
            raise ValueError(f"{key!r} holds a handshake slot already")
        self._slots[key] = _Slot(source, proven)
        if proven:
            self._proven_by_source[source] = self.held_by(source) + 1

    def release(self, key: Hashable) -> None:
        """``key``'s handshake ended (done, failed or evicted); unknown keys are ignored."""
        slot = self._slots.pop(key, None)
        if slot is None or not slot.proven:
            return
        left = self._proven_by_source[slot.source] - 1
        if left:
            self._proven_by_source[slot.source] = left
        else:
            del self._proven_by_source[slot.source]
