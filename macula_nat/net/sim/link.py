"""One-way properties of a link between an interface and its network."""

from __future__ import annotations

import random

import attrs


def _non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{attribute.name} must be >= 0, not {value!r}")


def _probability(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{attribute.name} must be in [0, 1], not {value!r}")


@attrs.frozen
class LinkProfile:
    """Latency, jitter and loss, applied to every datagram crossing the link either way.

    A crossing takes ``latency`` plus a uniform random extra in ``[0, jitter)`` seconds; jitter
    larger than the gap between datagrams reorders them. Each crossing loses a datagram with
    probability ``loss``.
    """

    latency: float = attrs.field(default=0.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.0, validator=_non_negative)
    loss: float = attrs.field(default=0.0, validator=_probability)

    def sample(self, rng: random.Random) -> float | None:
        """One crossing: its delay in seconds, or None if the datagram is lost."""
        if self.loss and rng.random() < self.loss:
            return None
        if self.jitter:
            return self.latency + rng.random() * self.jitter
        return self.latency
