"""Timed callbacks run by one task: how the simulation moves datagrams through time.

All hops of all datagrams go through one heap ordered by due time, then by scheduling order, so
a run is deterministic for a seed even when many datagrams are due at the same instant (Trio
itself shuffles tasks that wake together). The waiting is a Trio sleep with a deadline, so
``trio.testing.MockClock`` drives it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import TypeVarTuple

import attrs
import trio

Ts = TypeVarTuple("Ts")


@attrs.frozen(order=True)
class _Call:
    due: float
    sequence: int
    function: Callable[[], object] = attrs.field(order=False)


class DeliveryQueue:
    """Calls functions at given times of the Trio clock, from :meth:`run`'s task."""

    def __init__(self) -> None:
        self._heap: list[_Call] = []
        self._sequence = itertools.count()
        self._wakeup = trio.lowlevel.ParkingLot()

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, function: Callable[[*Ts], object], *args: *Ts) -> None:
        """Call ``function(*args)`` at Trio time ``when`` (at once if that has passed)."""
        call = _Call(when, next(self._sequence), lambda: function(*args))
        heapq.heappush(self._heap, call)
        if self._heap[0] is call:
            self._wakeup.unpark_all()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run due calls until cancelled; an exception from a call ends the run."""
        task_status.started()
        while True:
            deadline = self._heap[0].due if self._heap else math.inf
            with trio.move_on_at(deadline):
                await self._wakeup.park()
            self._run_due(trio.current_time())

    def _run_due(self, now: float) -> None:
        """Run calls due by ``now`` that were queued before this batch started."""
        batch: list[_Call] = []
        for _ in range(len(self._heap)):
            if self._heap[0].due > now:
                break
            batch.append(heapq.heappop(self._heap))
        for call in batch:
            call.function()
