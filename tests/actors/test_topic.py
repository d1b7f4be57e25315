"""Topics: events to actors and tasks, dead subscribers removed, slow ones never block."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import Actor, Stop, Topic, open_actor

from .conftest import Worker


async def test_actor_subscribers_get_each_event_as_an_info_message(
    autojump_clock: MockClock,
) -> None:
    topic: Topic[str] = Topic("changes")
    async with open_actor(Worker()) as a, open_actor(Worker()) as b:
        topic.subscribe(a)
        topic.subscribe(a)  # idempotent
        topic.subscribe(b)
        topic.publish("one")
        topic.unsubscribe(b)
        topic.publish("two")
        assert await a.call("infos") == ["one", "two"]
        assert await b.call("infos") == ["one"]
        assert topic.statistics().published == 2


async def test_a_subscriber_that_exits_is_removed(autojump_clock: MockClock) -> None:
    topic: Topic[str] = Topic("changes")
    async with open_actor(Worker()) as keeper:
        async with open_actor(Worker()) as leaver:
            topic.subscribe(leaver)
            topic.subscribe(keeper)
        assert not topic.subscribed(leaver)
        assert topic.statistics().actor_subscribers == 1
        topic.publish("after")  # nothing raised for the departed subscriber
        assert await keeper.call("infos") == ["after"]


class Stuck(Actor):
    """Never gets round to its mailbox while the test publishes."""

    mailbox_capacity = 2

    async def handle_info(self, message: Any) -> Stop | None:
        await trio.sleep(3600)
        return None


async def test_a_slow_subscriber_never_blocks_the_publisher_and_misses_are_counted(
    autojump_clock: MockClock,
) -> None:
    topic: Topic[int] = Topic("changes")
    async with open_actor(Stuck()) as slow, open_actor(Worker()) as fast:
        topic.subscribe(slow)
        topic.subscribe(fast)
        start = trio.current_time()
        for i in range(10):
            topic.publish(i)
        assert trio.current_time() == start
        # one handed over, two queued: seven missed, and counted
        assert topic.missed(slow) == 7
        assert topic.statistics().missed == 7
        assert await fast.call("infos") == list(range(10))


async def test_tasks_iterate_events_with_a_bounded_buffer_that_keeps_the_newest(
    autojump_clock: MockClock,
) -> None:
    topic: Topic[int] = Topic("changes")
    async with topic.subscription(buffer=3) as events:
        for i in range(5):
            topic.publish(i)
        assert events.missed == 2
        assert [events.receive_nowait() for _ in range(3)] == [2, 3, 4]
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()
    assert topic.statistics().task_subscribers == 0
    assert topic.statistics().missed == 2


async def test_task_iteration_ends_when_the_topic_closes(autojump_clock: MockClock) -> None:
    topic: Topic[str] = Topic("changes")
    seen: list[str] = []

    async def consume(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with topic.subscription() as events:
            task_status.started()
            async for event in events:
                seen.append(event)

    async with trio.open_nursery() as nursery:
        await nursery.start(consume)
        topic.publish("a")
        await trio.sleep(1)
        topic.publish("b")
        topic.close()
    assert seen == ["a", "b"]
    with pytest.raises(RuntimeError, match="closed"):
        topic.publish("late")
