"""Round-trip time estimation and the retransmission timeout it gives (RFC 6298), sans-IO.

RFC 6298 section 2: the first sample sets SRTT = R and RTTVAR = R / 2; each later one
RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and SRTT = 7/8 SRTT + 1/8 R; the timeout is
SRTT + max(G, 4 RTTVAR), clamped to ``[floor, ceiling]``, and ``initial`` before any sample.
Unlike TCP's one-second floor, ours is the caller's: a DHT lookup or a STUN probe that gives up
on a silent peer early loses one answer, not a connection's throughput.
"""

from __future__ import annotations

import attrs

__all__ = ["RttEstimator"]


@attrs.define
class RttEstimator:
    """Smoothed RTT and its variation over the samples seen so far."""

    initial: float = 1.0
    """The timeout before any sample (RFC 6298: 1 s)."""
    floor: float = 0.0
    ceiling: float = 60.0
    granularity: float = 0.001
    """G: the clock's granularity."""
    srtt: float | None = attrs.field(default=None, init=False)
    rttvar: float = attrs.field(default=0.0, init=False)
    samples: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.floor <= self.ceiling or self.initial <= 0 or self.granularity < 0:
            raise ValueError("need 0 <= floor <= ceiling, a positive initial and granularity >= 0")

    def add(self, sample: float) -> None:
        """Take one round trip of ``sample`` seconds (a fresh request's, never a retransmitted
        one's: Karn's rule is the caller's)."""
        if not sample >= 0:
            raise ValueError(f"a round trip cannot be {sample!r}")
        if self.srtt is None:
            self.srtt, self.rttvar = sample, sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
        self.samples += 1

    def timeout(self) -> float:
        """How long to wait for an answer before treating the request as lost."""
        if self.srtt is None:
            raw = self.initial
        else:
            raw = self.srtt + max(self.granularity, 4 * self.rttvar)
        return min(self.ceiling, max(self.floor, raw))
