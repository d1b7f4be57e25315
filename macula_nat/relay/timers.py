"""Deadlines for many actors, kept by one task, as the BEAM keeps timers for its processes.

``Actor.send_after`` runs a Trio task per timer, about 3.8 KiB each (measured), which doubled
what a relayed session costs. A relay with 10,000 sessions instead keeps their deadlines in one
heap served by one task: each entry is a tuple, and a due entry becomes an ordinary info message
in its actor's mailbox.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from typing import Final

import trio

from macula_nat.actors import ActorRef, MailboxFull, NoProc

__all__ = ["Timers"]

logger = logging.getLogger(__name__)

_RETRY: Final = 0.1
"""Seconds before a message that found its actor's mailbox full is delivered again."""


class Timers:
    """``send_at(when, ref, message)`` delivers ``message`` to ``ref`` at ``when`` while
    :meth:`run` runs (deliveries due while it does not run are made when it starts again).

    Messages to actors that have exited are dropped when due; until then their entries stay
    (about 100 bytes each), so the heap holds at most the live deadlines plus those of actors
    that exited within the longest deadline."""

    __slots__ = ("_heap", "_scope", "_sequence")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, ActorRef, object]] = []
        self._sequence = itertools.count()
        self._scope: trio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def send_at(self, when: float, ref: ActorRef, message: object) -> None:
        heapq.heappush(self._heap, (when, next(self._sequence), ref, message))
        scope = self._scope
        if scope is not None and when < scope.deadline:
            scope.deadline = when

    async def run(self) -> None:
        """Deliver every message when it is due, until cancelled."""
        heap = self._heap
        while True:
            now = trio.current_time()
            for _ in range(len(heap)):
                if heap[0][0] > now:
                    break
                _, _, ref, message = heapq.heappop(heap)
                self._deliver(ref, message, now)
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None

    def _deliver(self, ref: ActorRef, message: object, now: float) -> None:
        try:
            ref.send(message)
        except NoProc:
            return
        except MailboxFull:
            logger.debug("%s: mailbox full; %r again in %.1f s", ref, message, _RETRY)
            heapq.heappush(self._heap, (now + _RETRY, next(self._sequence), ref, message))
