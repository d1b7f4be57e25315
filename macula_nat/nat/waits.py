"""How long a detection test waits for an answer that may never come, from the measured RTT.

RFC 8489 section 6.2.1 takes its RTO from the measured RTT when there is one (500 ms when
unknown): here `RttEstimate.rto` (RFC 6298, :mod:`macula_nat.net.rtt`), never under `MIN_RTO`.

A detection test that a restricted NAT is *meant* to silence is judged unanswered once
`SILENCE_TRANSMISSIONS` transmissions, one RTO apart, have each had an RTO to be answered:
`silence_policy`. At 5 % loss per packet and direction (about 20 % per exchange on a two-link
path) the chance that an answerable test stays silent through all of them is about
0.2 ** 5 = 3e-4, so loss does not flip a verdict; at 20 ms RTT the wait is 0.3 s.

An answer whose path is a part of the measured one and needs no other host's program (a probe
hairpinned by the NAT in front) arrives within a round trip: `sub_path_policy` spreads a few
transmissions over one SRTT (at least `MIN_SUB_PATH_WAIT`) and gives up at its end.
"""

from __future__ import annotations

from macula_nat.nat.stun_client import RetransmitPolicy
from macula_nat.net.rtt import RttEstimate

__all__ = [
    "MIN_RTO",
    "MIN_SUB_PATH_WAIT",
    "SILENCE_TRANSMISSIONS",
    "rto",
    "silence_policy",
    "sub_path_policy",
]

MIN_RTO = 0.02
"""The shortest RTO, in seconds: an observer a fraction of a millisecond away still gets the
time a busy host needs to schedule its answer."""

MIN_SUB_PATH_WAIT = 0.004
"""The shortest wait of `sub_path_policy`, in seconds: a path inside one host or LAN still gets
a few scheduling rounds of the host's own event loop."""

SILENCE_TRANSMISSIONS = 5
"""Transmissions, one RTO apart, after which a test counts as unanswered (see the module)."""


def rto(estimate: RttEstimate) -> float:
    """The RTO of a detection test to an observer measured as ``estimate``: at least `MIN_RTO`."""
    return estimate.rto(floor=MIN_RTO)


def silence_policy(estimate: RttEstimate) -> RetransmitPolicy:
    """Transmissions one RTO apart, `SILENCE_TRANSMISSIONS` of them, the last given one RTO:
    a transaction on it fails ``SILENCE_TRANSMISSIONS * rto`` after its first transmission."""
    wait = rto(estimate)
    return RetransmitPolicy(
        rto=wait, max_transmissions=SILENCE_TRANSMISSIONS, final_wait=1.0, max_rto=wait
    )


def sub_path_policy(
    estimate: RttEstimate, transmissions: int = SILENCE_TRANSMISSIONS
) -> RetransmitPolicy:
    """For an answer that travels part of the measured path and is sent by no other host's
    program: ``transmissions`` spread evenly over one SRTT (at least `MIN_SUB_PATH_WAIT`), the
    transaction failing at its end."""
    if transmissions < 1:
        raise ValueError(f"transmissions must be at least 1, not {transmissions!r}")
    interval = max(MIN_SUB_PATH_WAIT, estimate.srtt) / transmissions
    return RetransmitPolicy(
        rto=interval, max_transmissions=transmissions, final_wait=1.0, max_rto=interval
    )
