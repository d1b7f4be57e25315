"""Relay selection without I/O: smoothed measurements of relays and the choice among them.

A :class:`RelayTable` holds one :class:`RelayEstimate` per relay endpoint: the relay's node id
(from its signed registration), the latency smoothed by an exponentially weighted moving average,
its last reported load (sessions in use per thousand allowed) and how many probes in a row
failed. :func:`rank` orders the reachable relays with spare capacity by latency, and
:func:`choose` picks a relay for a target, preferring the target's home relay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Final

import attrs

from macula_nat.identity import NodeId
from macula_nat.net.address import Address, normalise_address

__all__ = [
    "DEFAULT_GAIN",
    "DEFAULT_MAX_LOAD",
    "NoRelay",
    "RelayEstimate",
    "RelayInfo",
    "RelayTable",
    "choose",
    "rank",
    "smooth",
]

DEFAULT_GAIN: Final = 0.3
"""Weight of a new latency sample in the smoothed latency."""
DEFAULT_MAX_LOAD: Final = 900
"""Relays reporting this load (permille) or more have no spare capacity."""


class NoRelay(Exception):
    """No reachable relay with spare capacity is known."""


@attrs.frozen
class RelayInfo:
    """A relay as :meth:`~.registry.RelayRegistry.find_relay` returns it."""

    node_id: NodeId
    endpoint: Address
    latency_ms: float
    """Smoothed round trip in milliseconds."""
    load: int
    """Sessions in use per thousand allowed, as the relay last reported it."""


@attrs.frozen
class RelayEstimate:
    """What is known of one relay; ``failures`` counts failed probes since the last success."""

    endpoint: Address
    node_id: NodeId | None = None
    latency_ms: float | None = None
    load: int | None = None
    failures: int = 0
    measured_at: float = -math.inf

    @property
    def reachable(self) -> bool:
        """Measured at least once, and its last probe succeeded."""
        return self.failures == 0 and self.latency_ms is not None and self.node_id is not None

    def info(self) -> RelayInfo:
        if self.node_id is None or self.latency_ms is None:
            raise ValueError(f"relay {self.endpoint} has not been measured")
        return RelayInfo(self.node_id, self.endpoint, self.latency_ms, self.load or 0)


def smooth(previous: float | None, sample: float, gain: float = DEFAULT_GAIN) -> float:
    """The exponentially weighted moving average after ``sample`` (the sample when first)."""
    if not 0 < gain <= 1:
        raise ValueError(f"gain must be in (0, 1], not {gain!r}")
    if previous is None:
        return sample
    return previous + gain * (sample - previous)


@attrs.define
class RelayTable:
    """Estimates by endpoint; every method is synchronous and takes the time from its caller."""

    gain: float = DEFAULT_GAIN
    _estimates: dict[Address, RelayEstimate] = attrs.Factory(dict)

    def __len__(self) -> int:
        return len(self._estimates)

    def get(self, endpoint: Address) -> RelayEstimate | None:
        return self._estimates.get(normalise_address(endpoint))

    def estimates(self) -> list[RelayEstimate]:
        return list(self._estimates.values())

    def observe(
        self, endpoint: Address, node_id: NodeId, latency_ms: float, load: int, now: float
    ) -> RelayEstimate:
        """A successful measurement: the latency joins the average, the load replaces the last.

        A relay answering with another node id than before is a different relay: its average
        starts again.
        """
        endpoint = normalise_address(endpoint)
        known = self._estimates.get(endpoint)
        previous = None if known is None or known.node_id != node_id else known.latency_ms
        estimate = RelayEstimate(
            endpoint, node_id, smooth(previous, latency_ms, self.gain), load, 0, now
        )
        self._estimates[endpoint] = estimate
        return estimate

    def fail(self, endpoint: Address, now: float) -> RelayEstimate:
        """A failed probe (no answer, refused, or a lost registration): unreachable until the
        next successful one."""
        endpoint = normalise_address(endpoint)
        known = self._estimates.get(endpoint) or RelayEstimate(endpoint)
        estimate = attrs.evolve(known, failures=known.failures + 1, measured_at=now)
        self._estimates[endpoint] = estimate
        return estimate

    def retain(self, endpoints: Iterable[Address]) -> None:
        """Forget every relay not in ``endpoints`` (no longer announced)."""
        keep = {normalise_address(endpoint) for endpoint in endpoints}
        for endpoint in [e for e in self._estimates if e not in keep]:
            del self._estimates[endpoint]


def rank(estimates: Iterable[RelayEstimate], max_load: int = DEFAULT_MAX_LOAD) -> list[RelayInfo]:
    """The reachable relays with load below ``max_load``, lowest latency first (ties by
    endpoint, so the order is deterministic)."""
    usable = [
        estimate.info()
        for estimate in estimates
        if estimate.reachable and (estimate.load or 0) < max_load
    ]
    return sorted(usable, key=lambda info: (info.latency_ms, info.endpoint))


def choose(
    estimates: Iterable[RelayEstimate],
    home: Address | None = None,
    max_load: int = DEFAULT_MAX_LOAD,
) -> RelayInfo:
    """The relay to reach a target whose home relay is ``home`` (None: unknown).

    The home relay when it is reachable, whatever its load (the target is registered there
    and nowhere else); otherwise the best of :func:`rank`. Raises :class:`NoRelay`.
    """
    values = list(estimates)
    if home is not None:
        home = normalise_address(home)
        for estimate in values:
            if estimate.endpoint == home and estimate.reachable:
                return estimate.info()
    ranked = rank(values, max_load)
    if not ranked:
        measured = sum(1 for estimate in values if estimate.reachable)
        raise NoRelay(
            f"no reachable relay with load below {max_load}/1000 "
            f"({len(values)} known, {measured} reachable)"
        )
    return ranked[0]
