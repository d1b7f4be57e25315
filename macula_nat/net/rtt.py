"""Round-trip time estimation and the retransmission timeout it gives (RFC 6298), sans-IO.

RFC 6298 section 2: the first sample R sets SRTT = R and RTTVAR = R / 2; each later one
RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R| and SRTT = 7/8 SRTT + 1/8 R; the timeout is
SRTT + max(G, 4 RTTVAR) (so 3 R after one sample), clamped to the caller's ``[floor, ceiling]``.
Unlike TCP's one-second floor, the floor is the caller's: a DHT lookup or a STUN probe that gives
up on a silent peer early loses one answer, not a connection's throughput. Samples come only from
requests answered on their first transmission (Karn's rule, the caller's to keep).
"""

from __future__ import annotations

import math

import attrs

__all__ = ["RttEstimate", "next_rttvar"]

_ALPHA = 1 / 8
_BETA = 1 / 4
_K = 4


def _round_trip(rtt: float) -> float:
    if not rtt >= 0:
        raise ValueError(f"a round-trip time must be >= 0, not {rtt!r}")
    return rtt


def next_rttvar(rttvar: float, deviation: float) -> float:
    """RFC 6298's RTTVAR after one more sample ``deviation`` = |SRTT - R| away."""
    return (1 - _BETA) * rttvar + _BETA * deviation


@attrs.frozen
class RttEstimate:
    """RFC 6298's smoothed RTT and its variation, in seconds, after ``samples`` samples."""

    srtt: float = attrs.field(converter=_round_trip)
    rttvar: float = attrs.field(converter=_round_trip)
    samples: int = 1

    @classmethod
    def first(cls, rtt: float, rttvar: float | None = None) -> RttEstimate:
        """The estimate after one sample. ``rttvar``: what the caller knows the variation to
        be from other paths (default: RFC 6298's ``rtt / 2``, knowing nothing)."""
        rtt = _round_trip(rtt)
        return cls(srtt=rtt, rttvar=rtt / 2 if rttvar is None else rttvar)

    def updated(self, rtt: float) -> RttEstimate:
        """The estimate after one more sample."""
        rtt = _round_trip(rtt)
        return RttEstimate(
            srtt=(1 - _ALPHA) * self.srtt + _ALPHA * rtt,
            rttvar=next_rttvar(self.rttvar, abs(self.srtt - rtt)),
            samples=self.samples + 1,
        )

    def rto(
        self, floor: float = 0.0, ceiling: float = math.inf, granularity: float = 0.001
    ) -> float:
        """How long to wait for an answer before treating the request as lost:
        SRTT + max(``granularity``, 4 RTTVAR), within ``[floor, ceiling]``."""
        if not 0 <= floor <= ceiling or granularity < 0:
            raise ValueError("need 0 <= floor <= ceiling and granularity >= 0")
        return min(ceiling, max(floor, self.srtt + max(granularity, _K * self.rttvar)))
