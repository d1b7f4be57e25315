"""Where the node's one socket can ask for a fresh mapping, and whether an answer is fresh.

A NAT that allocates ports sequentially (``pc``) gives a new peer the port after the last one
it handed out, to whomever it handed it. The mapping the home relay reports was allocated at
registration; ports allocated since (the detector's probe sockets, other hosts behind the same
NAT) push the next one beyond the predicted ports. A Binding request from the node's socket to
a destination it has not used lately takes a new port now, and predictions start there.

A destination the socket asked while its mapping still lives (the detector asks the observers
from it too) answers with the old port, which says nothing new: :func:`pick` skips
destinations asked within ``reuse_after``, and :func:`is_news` takes an answer equal to what
the same destination said last time as stale. Pure: no sockets, no clocks (callers pass the
time, and what the socket's STUN client remembers).

The node's own punches use up ports too (a port-dependent NAT maps each address probed), and
within ``reuse_after`` of detection every observer address has been asked: then the coordinator
asks from a new socket instead, whose mapping is the port the NAT hands out now (the counter is
the NAT's, not the socket's), and the shared socket's next mapping follows it at the delta.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from macula_nat.nat.stun_client import Asked
from macula_nat.net.address import Address

__all__ = ["is_news", "pick"]


def pick(
    destinations: Iterable[Address],
    last_asked: Callable[[Address], Asked | None],
    now: float,
    reuse_after: float,
) -> Address | None:
    """The destination asked longest ago (one never asked first), unless every one was asked
    within ``reuse_after`` seconds of ``now``."""
    best: Address | None = None
    best_at = now - reuse_after
    for destination in destinations:
        asked = last_asked(destination)
        if asked is None:
            return destination
        if asked.at <= best_at:
            best, best_at = destination, asked.at
    return best


def is_news(previous: Asked | None, mapped: Address) -> bool:
    """Whether ``mapped`` is a new mapping: not the one the same destination reported last."""
    return previous is None or previous.mapped != mapped
