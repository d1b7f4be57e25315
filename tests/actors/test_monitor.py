"""Monitors: Down notices with the exit reason, for live and already-dead targets."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import (
    Actor,
    ActorRef,
    Caller,
    Down,
    Exit,
    MonitorRef,
    Stop,
    open_actor,
)

from .conftest import Worker


class Watcher(Actor):
    def __init__(self) -> None:
        self.downs: list[Down] = []
        self.monitors: dict[ActorRef, MonitorRef] = {}

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("monitor", target):
                self.monitors[target] = self.monitor(target)
                return self.monitors[target]
            case ("demonitor", target):
                self.demonitor(self.monitors.pop(target))
                return None
            case "downs":
                return list(self.downs)
        return await super().handle_call(message, caller)

    async def handle_info(self, message: Any) -> Stop | None:
        self.downs.append(message)
        return None


async def test_down_carries_the_monitor_the_target_and_its_reason(
    autojump_clock: MockClock,
) -> None:
    async with open_actor(Watcher()) as watcher, open_actor(Worker()) as target:
        monitor = await watcher.call(("monitor", target))
        await target.stop(Exit.SHUTDOWN)
        await trio.testing.wait_all_tasks_blocked()
        [down] = await watcher.call("downs")
        assert down == Down(monitor, target, Exit.SHUTDOWN)


async def test_monitoring_a_dead_actor_delivers_down_at_once(autojump_clock: MockClock) -> None:
    async with open_actor(Watcher()) as watcher:
        async with open_actor(Worker()) as target:
            await target.stop()
        await watcher.call(("monitor", target))
        [down] = await watcher.call("downs")
        assert down.target is target and down.reason is Exit.NORMAL


async def test_demonitor_means_no_down(autojump_clock: MockClock) -> None:
    async with open_actor(Watcher()) as watcher, open_actor(Worker()) as target:
        await watcher.call(("monitor", target))
        await watcher.call(("demonitor", target))
        await target.stop()
        await trio.testing.wait_all_tasks_blocked()
        assert await watcher.call("downs") == []


async def test_a_watcher_that_exits_leaves_nothing_behind_on_the_target(
    autojump_clock: MockClock,
) -> None:
    async with open_actor(Worker()) as target:
        for _ in range(3):
            async with open_actor(Watcher()) as watcher:
                await watcher.call(("monitor", target))
        assert target._watchers == []


async def test_down_bypasses_a_full_mailbox(autojump_clock: MockClock) -> None:
    class Busy(Watcher):
        mailbox_capacity = 1

    async with open_actor(Busy()) as watcher, open_actor(Worker()) as target:
        await watcher.call(("monitor", target))
        watcher.send(None)  # handed over at once
        watcher.send(None)  # fills the mailbox
        with pytest.raises(Exception, match="full"):
            watcher.send(None)
        await target.stop()
        await trio.testing.wait_all_tasks_blocked()
        downs = [m for m in await watcher.call("downs") if m is not None]
        assert [d.target for d in downs] == [target]


async def test_wait_exited_returns_the_reason_to_a_plain_task(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as target, trio.open_nursery() as nursery:
        reasons: list[object] = []

        async def wait() -> None:
            reasons.append(await target.wait_exited())

        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        await target.stop(Exit.SHUTDOWN)
    assert reasons == [Exit.SHUTDOWN]
