"""Round-trip time to one observer, and how long to wait for an answer that may never come.

RFC 8489 section 6.2.1 takes its RTO from the measured RTT when there is one (500 ms when
unknown); the estimate here is RFC 6298's: the first sample R gives SRTT = R and RTTVAR = R/2,
each next one R' moves them by ``alpha`` and ``beta``, and RTO = SRTT + 4 RTTVAR (so 3 R after
one sample), never under `MIN_RTO`. Samples come only from transactions answered on their first
transmission (Karn's rule: an answer after a retransmission could belong to either).

A detection test that a restricted NAT is *meant* to silence is judged unanswered once
`SILENCE_TRANSMISSIONS` transmissions, one RTO apart, have each had an RTO to be answered:
`RttEstimate.silence_policy`. At 5 % loss per packet and direction (about 20 % per exchange
on a two-link path) the chance that an answerable test stays silent through all of them is
about 0.2 ** 5 = 3e-4, so loss does not flip a verdict; at 20 ms RTT the wait is 0.3 s.

An answer whose path is a part of the measured one and needs no other host's program (a probe
hairpinned by the NAT in front) arrives within a round trip: `RttEstimate.sub_path_policy`
spreads a few transmissions over one SRTT (at least `MIN_SUB_PATH_WAIT`) and gives up at its end.
"""

from __future__ import annotations

import attrs

from macula_nat.nat.stun_client import RetransmitPolicy

__all__ = ["MIN_RTO", "MIN_SUB_PATH_WAIT", "SILENCE_TRANSMISSIONS", "RttEstimate"]

MIN_RTO = 0.02
"""The shortest RTO, in seconds: an observer a fraction of a millisecond away still gets the
time a busy host needs to schedule its answer."""

MIN_SUB_PATH_WAIT = 0.004
"""The shortest wait of `RttEstimate.sub_path_policy`, in seconds: a path inside one host or
LAN still gets a few scheduling rounds of the host's own event loop."""

SILENCE_TRANSMISSIONS = 5
"""Transmissions, one RTO apart, after which a test counts as unanswered (see the module)."""

_ALPHA = 1 / 8
_BETA = 1 / 4
_K = 4


def _sample(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


@attrs.frozen
class RttEstimate:
    """RFC 6298's smoothed RTT and its variation, in seconds, after ``samples`` samples."""

    srtt: float = attrs.field(validator=_sample)
    rttvar: float = attrs.field(validator=_sample)
    samples: int = 1

    @classmethod
    def first(cls, rtt: float) -> RttEstimate:
        """The estimate after one sample."""
        if not rtt >= 0:
            raise ValueError(f"a round-trip time must be >= 0, not {rtt!r}")
        return cls(srtt=rtt, rttvar=rtt / 2)

    def updated(self, rtt: float) -> RttEstimate:
        """The estimate after one more sample."""
        if not rtt >= 0:
            raise ValueError(f"a round-trip time must be >= 0, not {rtt!r}")
        return RttEstimate(
            srtt=(1 - _ALPHA) * self.srtt + _ALPHA * rtt,
            rttvar=(1 - _BETA) * self.rttvar + _BETA * abs(self.srtt - rtt),
            samples=self.samples + 1,
        )

    @property
    def rto(self) -> float:
        """The retransmission timeout: SRTT + 4 RTTVAR, at least `MIN_RTO`."""
        return max(MIN_RTO, self.srtt + _K * self.rttvar)

    def silence_policy(self) -> RetransmitPolicy:
        """Transmissions one RTO apart, `SILENCE_TRANSMISSIONS` of them, the last given one RTO:
        a transaction on it fails ``SILENCE_TRANSMISSIONS * rto`` after its first transmission."""
        rto = self.rto
        return RetransmitPolicy(
            rto=rto, max_transmissions=SILENCE_TRANSMISSIONS, final_wait=1.0, max_rto=rto
        )

    def sub_path_policy(self, transmissions: int = SILENCE_TRANSMISSIONS) -> RetransmitPolicy:
        """For an answer that travels part of the measured path and is sent by no other host's
        program: ``transmissions`` spread evenly over one SRTT (at least `MIN_SUB_PATH_WAIT`),
        the transaction failing at its end."""
        if transmissions < 1:
            raise ValueError(f"transmissions must be at least 1, not {transmissions!r}")
        interval = max(MIN_SUB_PATH_WAIT, self.srtt) / transmissions
        return RetransmitPolicy(
            rto=interval, max_transmissions=transmissions, final_wait=1.0, max_rto=interval
        )
