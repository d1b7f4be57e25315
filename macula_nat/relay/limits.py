"""The relay's limits, sans-IO: who may open a session, and how many bytes a session may move.

:class:`ByteBucket` is a token bucket that spends one token per byte. The per-source limits use
:class:`macula_nat.nat.rate_limit.TokenBuckets` (one token per datagram); a session's bandwidth
needs a cost per datagram, which that table does not take, hence this one bucket of its own.
"""

from __future__ import annotations

from .frames import Reason
from .settings import RelaySettings

__all__ = ["ByteBucket", "admit"]


class ByteBucket:
    """``rate`` bytes a second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if not (rate > 0 and burst > 0):
            raise ValueError(f"rate and burst must be positive, not {rate!r} and {burst!r}")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, size: int, now: float) -> bool:
        """Spend ``size`` bytes at time ``now``; False (nothing spent) if there are too few."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= size:
            self.tokens -= size
            return True
        return False


def admit(
    settings: RelaySettings | None,
    *,
    same_node: bool,
    target_registered: bool,
    sessions: int,
    initiator_sessions: int,
    target_sessions: int,
) -> Reason | None:
    """Why a session request must be refused, or None to open it.

    Checked in this order: the relay is enabled, the target is another node, the target is
    registered, the relay has room (``max_sessions``), and both nodes have room
    (``max_sessions_per_node``).
    """
    if settings is None:
        return Reason.RELAY_DISABLED
    if same_node:
        return Reason.SELF_TARGET
    if not target_registered:
        return Reason.UNKNOWN_TARGET
    if sessions >= settings.max_sessions:
        return Reason.MAX_SESSIONS_REACHED
    cap = settings.max_sessions_per_node
    if initiator_sessions >= cap or target_sessions >= cap:
        return Reason.PER_NODE_CAP
    return None
