"""``macula-nat demo --runtime``: a supervision tree doing real work under faults.

A root supervisor runs a ticker that publishes to a topic, a pool of workers under a dynamic
supervisor, and a flaky worker that crashes on every third job. Jobs keep flowing while crashes
are contained and restarted; at the end the tree shuts down in reverse order. The caller gets each
line through ``emit`` (the library itself never prints).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import trio

from macula_nat.actors import (
    Actor,
    ActorExited,
    Caller,
    ChildSpec,
    ChildType,
    DynamicSupervisor,
    DynamicSupervisorRef,
    NoProc,
    Restart,
    Stop,
    Strategy,
    Supervisor,
    Topic,
    open_actor,
)


@attrs.frozen
class Tick:
    number: int


class Ticker(Actor):
    """Publishes a Tick every ``period`` seconds (a timer message to itself)."""

    def __init__(self, topic: Topic[Tick], period: float) -> None:
        self.topic = topic
        self.period = period
        self.count = 0

    async def init(self) -> None:
        self.send_after(self.period, "tick")

    async def handle_info(self, message: Any) -> Stop | None:
        self.count += 1
        self.topic.publish(Tick(self.count))
        self.send_after(self.period, "tick")
        return None


class Squarer(Actor):
    """A pool worker: squares numbers."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return message * message


class Flaky(Actor):
    """Crashes on every third job: its supervisor restarts it with fresh state."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.jobs = 0

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        self.jobs += 1
        if self.jobs == 3:
            raise RuntimeError(f"flaky worker failed on job {message}")
        return f"job {message} done (job #{self.jobs} of this incarnation)"

    async def terminate(self, reason: object) -> None:
        self.emit(f"  flaky worker terminating: {reason!r}")


async def run(emit: Callable[[str], None], seconds: float = 3.0) -> None:
    """Run the demonstration for about ``seconds``."""
    ticks: Topic[Tick] = Topic("ticks")
    pool = ChildSpec(
        "pool",
        DynamicSupervisor,
        (ChildSpec("squarer", Squarer),),
        type=ChildType.SUPERVISOR,
        name="pool",
    )
    children = [
        ChildSpec("ticker", Ticker, (ticks, 0.5), name="ticker"),
        pool,
        ChildSpec("flaky", Flaky, (emit,), name="flaky", restart=Restart.PERMANENT),
    ]
    tree = Supervisor(children, strategy=Strategy.ONE_FOR_ONE, intensity=10, period=5.0)
    emit("starting a tree: ticker, pool (dynamic supervisor), flaky worker")
    async with open_actor(tree) as root, ticks.subscription() as events:
        registry = root.registry
        pool_ref = registry.whereis("pool")
        assert isinstance(pool_ref, DynamicSupervisorRef)
        squarers = [await pool_ref.start_child() for _ in range(3)]
        emit(f"pool started {len(squarers)} workers")
        job = 0
        with trio.move_on_after(seconds):
            async for tick in events:
                job += 1
                square = await squarers[job % len(squarers)].call(job)
                try:
                    answer = await registry.ref("flaky").call(job)
                except ActorExited as exc:
                    answer = f"crashed ({exc.reason!r}); its supervisor restarts it"
                except NoProc:
                    answer = "restarting"
                emit(f"tick {tick.number}: {job}^2 = {square}; flaky: {answer}")
        stats = await root.supervisor_statistics()
        emit(f"root supervisor: {stats.children} children, {stats.restarts} restarts")
        for info in await root.which_children():
            if info.ref is not None:
                s = info.ref.statistics()
                emit(
                    f"  {info.id}: handled {s.handled} messages, "
                    f"restarted {s.restarts} times, mailbox {s.mailbox_depth}/"
                    f"{s.mailbox_capacity}"
                )
        emit("shutting the tree down (reverse start order)")
    emit("tree stopped: no task outlived it")
