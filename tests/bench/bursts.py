"""Round trips timed in interleaved bursts, for drivers compared side by side.

Every driver's connection is open at once; ``ROUNDS`` rounds each time ``BURST`` round trips
of every driver, the order alternating round by round. Whatever slows the machine for a while
(a neighbour's load, a CPU's frequency, where the kernel put a process) then falls on every
driver of a round alike, and the ratio of two drivers within one round (paired) cancels it.
On this 2-core machine, medians of such ratios moved by about 0.02 from run to run, where
the ratio of medians of whole reps on fresh connections, seconds apart, moved by 0.1-0.3.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from statistics import median, quantiles
from typing import Final

import attrs

from .timing import now

__all__ = ["BURST", "ROUNDS", "WARM_UP", "Bursts", "RoundTrip", "interleave"]

RoundTrip = Callable[[], Awaitable[None]]
"""One round trip of a driver on its open connection: a message out, its echo back."""
BURST: Final = 50
ROUNDS: Final = 30
WARM_UP: Final = 20
"""Round trips of each driver before the first round (caches, windows, the peer's task)."""


@attrs.frozen
class Bursts:
    """Seconds per round trip of each driver, one value per round."""

    seconds: Mapping[str, tuple[float, ...]]

    def median(self, name: str) -> float:
        return median(self.seconds[name])

    def paired(self, name: str, baseline: str) -> tuple[float, float, float]:
        """The first quartile, median and third quartile of ``name``'s time over
        ``baseline``'s, round by round."""
        ratios = [
            ours / theirs
            for ours, theirs in zip(self.seconds[name], self.seconds[baseline], strict=True)
        ]
        low, middle, high = quantiles(ratios, n=4)
        return low, middle, high

    def describe(self, name: str, baseline: str) -> str:
        low, middle, high = self.paired(name, baseline)
        return f"{name}/{baseline} {middle:.2f}x (quartiles {low:.2f}-{high:.2f})"


async def interleave(
    round_trips: Mapping[str, RoundTrip], *, rounds: int = ROUNDS, burst: int = BURST
) -> Bursts:
    """Time ``burst`` round trips of each driver per round, for ``rounds`` rounds, the
    drivers' order reversed every other round (neither always goes first)."""
    names = list(round_trips)
    for name in names:
        for _ in range(WARM_UP):
            await round_trips[name]()
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for number in range(rounds):
        for name in names if number % 2 == 0 else names[::-1]:
            round_trip = round_trips[name]
            started = now()
            for _ in range(burst):
                await round_trip()
            seconds[name].append((now() - started) / burst)
    return Bursts({name: tuple(values) for name, values in seconds.items()})
