"""Actor runtime benchmarks, each side by side with the raw Trio primitive it wraps."""

from __future__ import annotations

import contextlib
import functools
import resource
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.lowlevel

from macula_nat.actors import (
    Actor,
    ActorExited,
    Caller,
    ChildSpec,
    DynamicSupervisor,
    MailboxFull,
    Stop,
    Supervisor,
    open_actor,
)
from macula_nat.actors.mailbox import BURST

from .timing import Figure, LiveMemory, now

CALLS = 20_000
CASTS = 200_000
REPS = 5


class Echo(Actor):
    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if message == "crash":
            raise RuntimeError("benchmark crash")
        return message


class Sink(Actor):
    def __init__(self) -> None:
        self.count = 0

    async def handle_cast(self, message: Any) -> Stop | None:
        self.count += 1
        return None

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        return self.count


class Idle(Actor):
    pass


async def raw_round_trips(n: int) -> float:
    """Request/response over two trio memory channels: the floor a call is compared to."""
    req_send, req_recv = trio.open_memory_channel[int](0)
    resp_send, resp_recv = trio.open_memory_channel[int](0)

    async def server() -> None:
        async for request in req_recv:
            await resp_send.send(request)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = now()
        for i in range(n):
            await req_send.send(i)
            await resp_recv.receive()
        elapsed = now() - start
        nursery.cancel_scope.cancel()
    return elapsed / n


async def actor_round_trips(n: int) -> float:
    async with open_actor(Echo()) as ref:
        start = now()
        for i in range(n):
            await ref.call(i)
        return (now() - start) / n


async def raw_throughput(n: int, capacity: float = 1024, burst: int = 1) -> float:
    """Messages per second through a trio memory channel of ``capacity``, the producer never
    blocking; the consumer takes up to ``burst`` buffered messages per ``receive`` (one
    scheduling turn), as the best simple consumer of a backlog does."""
    send, recv = trio.open_memory_channel[int](capacity)
    done = trio.Event()

    async def consumer() -> None:
        count = 0
        async for _ in recv:
            count += 1
            for _ in range(burst - 1):
                try:
                    recv.receive_nowait()
                except trio.WouldBlock:
                    break
                count += 1
            if count >= n:
                done.set()
                return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consumer)
        start = now()
        i = 0
        while i < n:
            try:
                send.send_nowait(i)
                i += 1
            except trio.WouldBlock:
                await trio.lowlevel.checkpoint()
        await done.wait()
        return n / (now() - start)


async def actor_throughput(n: int, capacity: int = Sink.mailbox_capacity) -> float:
    sink = Sink()
    sink.mailbox_capacity = capacity
    async with open_actor(sink) as ref:
        start = now()
        i = 0
        while i < n:
            try:
                ref.cast(i)
                i += 1
            except MailboxFull:
                await trio.lowlevel.checkpoint()
        while sink.count < n:
            await trio.lowlevel.checkpoint()
        return n / (now() - start)


async def alternating(
    reps: int, ours: Callable[[], Awaitable[float]], baseline: Callable[[], Awaitable[float]]
) -> tuple[list[float], list[float]]:
    """``reps`` runs of each, taken in turn, so a noisy neighbour hits both alike."""
    mine: list[float] = []
    theirs: list[float] = []
    for _ in range(reps):
        mine.append(await ours())
        theirs.append(await baseline())
    return mine, theirs


async def restart_latency(rounds: int) -> float:
    """Seconds from a crash until the restarted actor answers a call by name again."""
    spec = ChildSpec("echo", Echo, name="echo")
    best = float("inf")
    async with open_actor(Supervisor([spec], intensity=rounds + 1, period=1e9)) as sup:
        echo = sup.registry.ref("echo")
        for _ in range(rounds):
            start = now()
            with contextlib.suppress(ActorExited):
                await echo.call("crash")
            while sup.registry.whereis("echo") is None:
                await trio.lowlevel.checkpoint()
            await echo.call("ok")
            best = min(best, now() - start)
    return best


async def memory_per_idle_actor(n: int) -> float:
    memory = LiveMemory()
    memory.start()
    try:
        async with open_actor(DynamicSupervisor(ChildSpec("idle", Idle))) as sup:
            for _ in range(n):
                await sup.start_child()
            live = memory.measure()
        return live / n
    finally:
        memory.stop()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


async def start_many_children(n: int) -> tuple[float, float, float]:
    """(seconds to start n children, seconds to shut them down, RSS growth in bytes)."""
    rss_before = _rss_bytes()
    async with open_actor(DynamicSupervisor(ChildSpec("idle", Idle))) as sup:
        start = now()
        for _ in range(n):
            await sup.start_child()
        started = now() - start
        rss = _rss_bytes() - rss_before
        stop_start = now()
    stopped = now() - stop_start
    return started, stopped, rss


async def run() -> list[Figure]:
    actor_rts, raw_rts = await alternating(
        REPS, lambda: actor_round_trips(CALLS), lambda: raw_round_trips(CALLS)
    )
    worst = max(a / r for a, r in zip(actor_rts, raw_rts, strict=True))
    cast_figures = []
    for label, capacity, burst in (
        ("mailbox 1024 vs channel 1024", 1024, 1),
        ("unbounded vs unbounded channel", CASTS, 1),
        ("unbounded vs channel read 16/turn", CASTS, BURST),
    ):
        casts, raws = await alternating(
            REPS,
            functools.partial(actor_throughput, CASTS, capacity),
            functools.partial(raw_throughput, CASTS, capacity, burst),
        )
        cast_figures.append(
            Figure(
                f"actors: cast msg/s, {label}",
                statistics.median(casts),
                "msg/s",
                statistics.median(raws),
                ">= 0.6x" if burst == 1 and capacity == CASTS else "",
            )
        )
    restart = await restart_latency(50)
    per_actor = await memory_per_idle_actor(10_000)
    started, stopped, rss = await start_many_children(100_000)
    return [
        Figure(
            "actors: call round trip (us) vs raw channel req/resp",
            statistics.median(actor_rts) * 1e6,
            "us",
            statistics.median(raw_rts) * 1e6,
            "<= 1.5x",
        ),
        Figure(
            f"actors: call round trip, worst of {REPS} reps (ratio)", worst, "x", None, "<= 1.5"
        ),
        *cast_figures,
        Figure("actors: restart, crash to serving again", restart * 1e6, "us"),
        Figure(
            "actors: memory per idle actor (10,000 under a dynamic sup)",
            per_actor / 1024,
            "KiB",
            None,
            "<= 4 KiB",
        ),
        Figure("actors: start 100,000 children (dynamic supervisor)", started, "s"),
        Figure("actors: shut down 100,000 children", stopped, "s"),
        Figure("actors: RSS growth with 100,000 children", rss / 2**20, "MiB"),
    ]
