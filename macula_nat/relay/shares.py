"""Fair shares of a bounded table among sources, sans-IO: who may take a slot, and who gives one up.

A pure policy over :class:`macula_nat.holdings.Holdings`, which does the accounting.

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
slots goes is the caller's choice (:class:`Evict` names the source, not the slot;
:meth:`Holdings.keys <macula_nat.holdings.Holdings.keys>` offers its few oldest in O(1)).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

import attrs

from macula_nat.holdings import Holdings

__all__ = ["Admit", "Decision", "Evict", "Refuse", "Shares", "share_of"]

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


@attrs.frozen
class Shares:
    """A table of ``capacity`` slots (>= 0) and the ``share`` of them (>= 1) one source may
    hold while others want slots; see :func:`share_of`."""

    capacity: int = attrs.field(validator=attrs.validators.ge(0))
    share: int = attrs.field(validator=attrs.validators.ge(1))

    def decide(self, holdings: Holdings[K], source: str, *, renewing: bool = False) -> Decision:
        """May ``source`` take one more slot of the table ``holdings`` accounts? ``renewing``:
        the slot it takes replaces one of the table's (a key moving to this source), so the
        table does not grow."""
        if len(holdings) < self.capacity:
            return _ADMIT
        if holdings.count(source) >= self.share:
            return _REFUSE
        if renewing:
            return _ADMIT
        victim = holdings.largest()
        if victim is None or holdings.most <= self.share:
            return _REFUSE
        return Evict(victim)
