"""Measuring helpers shared by the benchmarks: best-of-N timing and live memory."""

from __future__ import annotations

import gc
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import attrs


@attrs.frozen
class Figure:
    """One printed line: what, how much, and (for side-by-side runs) the ratio to a baseline."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    goal: str = ""

    def render(self) -> str:
        line = f"{self.name:<58} {self.value:>12.3f} {self.unit:<8}"
        if self.baseline is not None:
            line += f" baseline {self.baseline:>10.3f}  ratio {self.value / self.baseline:6.2f}x"
        if self.goal:
            line += f"  goal {self.goal}"
        return line


async def best_of(rounds: int, run: Callable[[], Awaitable[float]]) -> float:
    """The best (lowest) of ``rounds`` runs: the least disturbed by a shared, noisy machine."""
    return min([await run() for _ in range(rounds)])


def now() -> float:
    return time.perf_counter()


class LiveMemory:
    """Bytes allocated and still alive between ``start`` and ``measure`` (tracemalloc)."""

    def start(self) -> None:
        gc.collect()
        tracemalloc.start()
        self._before = tracemalloc.get_traced_memory()[0]

    def measure(self) -> int:
        gc.collect()
        live = tracemalloc.get_traced_memory()[0] - self._before
        return live

    def stop(self) -> None:
        tracemalloc.stop()
