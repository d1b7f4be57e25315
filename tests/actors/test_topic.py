"""Topics: events to actors and tasks, dead subscribers removed, slow ones never block."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import (
    Actor,
    ActorExited,
    ChildSpec,
    Stop,
    Supervisor,
    Topic,
    open_actor,
)

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


async def test_a_subscriber_by_name_gets_events_across_its_restarts(
    autojump_clock: MockClock,
) -> None:
    topic: Topic[str] = Topic("changes")
    async with open_actor(Supervisor([ChildSpec("w", Worker, name="w")], intensity=5)) as sup:
        named = sup.registry.ref("w")
        topic.subscribe(named)
        topic.subscribe(sup.registry.ref("w"))  # idempotent: the same name
        assert topic.subscribed(named) and topic.statistics().named_subscribers == 1
        topic.publish("before")
        first = named.resolve()
        assert await first.call("infos") == ["before"]
        with pytest.raises(ActorExited):
            await first.call("crash")
        topic.publish("while down")  # nobody holds the name: missed, counted
        await trio.testing.wait_all_tasks_blocked()
        topic.publish("after")
        second = named.resolve()
        assert second is not first
        assert await second.call("infos") == ["after"]
        assert topic.missed(named) == 1 and topic.statistics().missed == 1
        topic.unsubscribe(named)
        topic.publish("unsubscribed")
        assert await second.call("infos") == ["after"]
        assert not topic.subscribed(named)


async def test_subscribe_refuses_what_is_not_a_reference() -> None:
    topic: Topic[str] = Topic("changes")
    with pytest.raises(TypeError, match="ActorRef or a NamedRef"):
        topic.subscribe("w")  # type: ignore[arg-type]


async def test_drops_are_logged_once_per_interval_with_their_count(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    topic: Topic[int] = Topic("changes", drop_log_interval=10.0)
    caplog.set_level(logging.WARNING, logger="macula_nat.actors.topic")
    async with open_actor(Stuck()) as slow:
        topic.subscribe(slow)
        for i in range(503):  # one handed over, two queued, 500 dropped
            topic.publish(i)
        await trio.sleep(10)
        topic.publish(503)  # the first drop after the interval logs the count
        for i in range(3):
            topic.publish(504 + i)
        topic.unsubscribe(slow)  # what is left unlogged is logged as it leaves
        assert topic.missed(slow) == 0  # no longer a subscriber
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert "dropped 1 events for" in messages[0]
    assert "dropped 500 events for" in messages[1] and "in the last 10 s" in messages[1]
    assert "dropped 3 events for" in messages[2] and "before it left" in messages[2]
    assert topic.statistics().missed == 504


def test_the_drop_log_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="drop_log_interval"):
        Topic("changes", drop_log_interval=0)
