"""The mailbox's reader: a backlog is taken in bursts, each message a cancellation point."""

from __future__ import annotations

import itertools
from typing import Any

import trio
import trio.lowlevel
from trio.testing import MockClock

from macula_nat.actors import Actor, Stop, open_actor, run_actor
from macula_nat.actors.mailbox import BURST

BACKLOG = 5 * BURST


class Recorder(Actor):
    """Notes each cast in a log shared with the test; cancels ``scope`` at ``cancel_at``."""

    mailbox_capacity = BACKLOG

    def __init__(self, log: list[Any], cancel_at: int = -1) -> None:
        self.log = log
        self.cancel_at = cancel_at
        self.scope: trio.CancelScope | None = None

    async def handle_cast(self, message: Any) -> Stop | None:
        self.log.append(message)
        if message == self.cancel_at and self.scope is not None:
            self.scope.cancel()
        return None


async def test_a_backlog_is_handled_in_bursts_that_let_other_tasks_run(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    async with open_actor(Recorder(log)) as ref, trio.open_nursery() as nursery:
        for i in range(BACKLOG):
            ref.cast(i)

        async def ticker() -> None:
            while len(log) < BACKLOG + 1 or log[-1] != "tick":
                log.append("tick")
                await trio.lowlevel.checkpoint()

        nursery.start_soon(ticker)
    handled = [m for m in log if m != "tick"]
    assert handled == list(range(BACKLOG))
    runs = [
        len(list(run)) for tick, run in itertools.groupby(log, lambda m: m == "tick") if not tick
    ]
    # Trio runs each batch of ready tasks in either order, so two turns of the actor can meet
    # between ticks: a run is at most two bursts, and well over one message (a turn per
    # message would keep every run at one or two).
    assert BURST <= max(runs) <= 2 * BURST
    assert len(runs) >= BACKLOG // (2 * BURST)


async def test_a_cancelled_reader_stops_at_the_next_message_even_inside_a_burst(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    recorder = Recorder(log, cancel_at=2)
    async with trio.open_nursery() as nursery:
        recorder.scope = nursery.cancel_scope
        ref = await nursery.start(run_actor, recorder)
        for i in range(BURST):  # one burst's worth, queued before the reader wakes
            ref.cast(i)
    assert log == [0, 1, 2]
