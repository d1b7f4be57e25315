"""Calls, casts and info messages: replies, failures, timeouts, overflow, deadlock freedom."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import (
    NOREPLY,
    Actor,
    ActorExited,
    Caller,
    CallingSelf,
    CallTimeout,
    Exit,
    MailboxFull,
    NoProc,
    Stop,
    UnexpectedMessage,
    open_actor,
)

from .conftest import Boom, Worker


async def test_call_returns_the_handlers_reply(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref:
        assert await ref.call(("echo", 42)) == 42
        assert ref.statistics().handled == 1


async def test_cast_and_send_reach_their_handlers_in_order(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref:
        for i in range(5):
            ref.cast(i)
        ref.send("tick")
        assert await ref.call("casts") == [0, 1, 2, 3, 4]
        assert await ref.call("infos") == ["tick"]


async def test_call_to_a_stopped_actor_fails_at_once_with_noproc(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref:
        await ref.stop()
        start = trio.current_time()
        with pytest.raises(NoProc):
            await ref.call(("echo", 1))
        with pytest.raises(NoProc):
            ref.cast("x")
        with pytest.raises(NoProc):
            ref.send("x")
        assert trio.current_time() == start


async def test_a_crash_in_handle_call_reaches_the_caller_and_ends_the_actor(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    with pytest.raises(Boom):
        async with open_actor(Worker(log)) as ref:
            with pytest.raises(ActorExited) as info:
                await ref.call("crash")
            assert isinstance(info.value.reason, Boom)
            assert info.value.__cause__ is info.value.reason
            assert not ref.alive
            await trio.sleep_forever()  # the unsupervised crash cancels the host block
    assert log[-1][:2] == ("terminate", "w")


async def test_callers_waiting_on_a_dying_actor_fail_at_once_not_at_timeout(
    autojump_clock: MockClock,
) -> None:
    async with open_actor(Worker()) as ref:
        outcomes: list[str] = []

        async def waiting_call() -> None:
            try:
                await ref.call(("sleep", 1), timeout=60)
                outcomes.append("replied")
            except ActorExited as exc:
                outcomes.append(f"exited {exc.reason!r}")

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiting_call)  # being handled when the stop arrives
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(3):
                nursery.start_soon(waiting_call)  # queued behind it
            await trio.testing.wait_all_tasks_blocked()
            await ref.stop(Exit.SHUTDOWN)
        assert outcomes == [
            "replied",
            "exited <Exit.SHUTDOWN: 'shutdown'>",
            "exited <Exit.SHUTDOWN: 'shutdown'>",
            "exited <Exit.SHUTDOWN: 'shutdown'>",
        ]
        assert trio.current_time() - start == pytest.approx(1)


async def test_deferred_reply_from_another_task_and_failure_on_exit(
    autojump_clock: MockClock,
) -> None:
    worker = Worker()
    async with open_actor(worker) as ref:
        async with trio.open_nursery() as nursery:
            results: list[Any] = []

            async def defer() -> None:
                results.append(await ref.call("defer"))

            nursery.start_soon(defer)
            await trio.testing.wait_all_tasks_blocked()
            assert worker.deferred[0].waiting
            assert worker.deferred[0].reply("later")
            assert not worker.deferred[0].reply("twice")  # second reply is dropped
        assert results == ["later"]


async def test_deferred_callers_fail_when_the_actor_stops(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref:
        errors: list[BaseException] = []

        async def defer() -> None:
            try:
                await ref.call("defer")
            except ActorExited as exc:
                errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(defer)
            await trio.testing.wait_all_tasks_blocked()
            await ref.stop(Exit.SHUTDOWN)
        assert len(errors) == 1 and errors[0].reason is Exit.SHUTDOWN  # type: ignore[attr-defined]


async def test_timeout_raises_and_a_late_reply_is_dropped(autojump_clock: MockClock) -> None:
    worker = Worker()
    async with open_actor(worker) as ref:
        with pytest.raises(CallTimeout):
            await ref.call("defer", timeout=2)
        assert not worker.deferred[0].waiting
        assert worker.deferred[0].reply("too late") is False
        assert await ref.call(("echo", "still serving")) == "still serving"


async def test_default_timeout_is_five_seconds(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref:
        start = trio.current_time()
        with pytest.raises(CallTimeout):
            await ref.call("defer")
        assert trio.current_time() - start == pytest.approx(5.0)


async def test_fail_raises_in_the_caller_and_the_actor_keeps_serving(
    autojump_clock: MockClock,
) -> None:
    async with open_actor(Worker()) as ref:
        with pytest.raises(KeyError):
            await ref.call(("fail", KeyError("missing")))
        assert await ref.call(("echo", 1)) == 1


async def test_stop_with_reply_replies_then_exits_with_reason(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    async with open_actor(Worker(log)) as ref:
        assert await ref.call(("stop", Exit.NORMAL)) == "stopping"
        assert await ref.wait_exited() is Exit.NORMAL
        assert log[-1] == ("terminate", "w", Exit.NORMAL)


async def test_unexpected_call_crashes_like_otp(autojump_clock: MockClock) -> None:
    with pytest.raises(UnexpectedMessage):
        async with open_actor(Worker()) as ref:
            with pytest.raises(ActorExited):
                await ref.call("no such request")
            await trio.sleep_forever()


class Slow(Actor):
    """Handles casts slowly so its mailbox fills up."""

    mailbox_capacity = 3

    def __init__(self) -> None:
        self.seen: list[Any] = []

    async def handle_cast(self, message: Any) -> Stop | None:
        await trio.sleep(1)
        self.seen.append(message)
        return None

    async def handle_call(self, message: Any, caller: object) -> Any:
        return list(self.seen)


async def test_cast_to_a_full_mailbox_raises_and_keeps_the_message_with_the_sender(
    autojump_clock: MockClock,
) -> None:
    actor = Slow()
    async with open_actor(actor) as ref:
        ref.cast(0)  # handed straight to the idle actor
        await trio.testing.wait_all_tasks_blocked()
        for i in range(1, 4):
            ref.cast(i)  # three fill the mailbox
        with pytest.raises(MailboxFull):
            ref.cast(4)
        assert ref.statistics().dropped == 1
        assert ref.statistics().mailbox_depth == 3
        # A call waits for room rather than failing, and sees every accepted cast handled.
        assert await ref.call("seen", timeout=math.inf) == [0, 1, 2, 3]


class PingPong(Actor):
    """Casts to its peer for every cast it gets: two of them would deadlock on blocking sends."""

    mailbox_capacity = 4

    def __init__(self) -> None:
        self.peer: Any = None
        self.got = 0
        self.refused = 0

    async def handle_cast(self, message: Any) -> Stop | None:
        if message[0] == "peer":
            self.peer = message[1]
            return None
        self.got += 1
        if self.got > 200:
            return None  # let the test quiesce; until then both mailboxes stay full
        for _ in range(2):  # fan-out: mailboxes fill up on both sides
            try:
                self.peer.cast(("ball",))
            except MailboxFull:
                self.refused += 1
        return None

    async def handle_call(self, message: Any, caller: object) -> Any:
        return (self.got, self.refused)


async def test_two_actors_casting_to_each_other_never_deadlock(autojump_clock: MockClock) -> None:
    async with open_actor(PingPong()) as a, open_actor(PingPong()) as b:
        a.cast(("peer", b))
        b.cast(("peer", a))
        a.cast(("ball",))
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked()
            got_a, refused_a = await a.call("stats")
            got_b, refused_b = await b.call("stats")
        assert got_a > 0 and got_b > 0
        assert refused_a + refused_b > 0  # the bound held, and nothing blocked


async def test_stop_from_outside_finishes_the_message_in_hand_and_skips_the_rest(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    worker = Worker(log)
    results: list[Any] = []

    async def call(message: Any) -> None:
        try:
            results.append(await ref.call(message, timeout=60))
        except ActorExited as exc:
            results.append(exc.reason)

    async with open_actor(worker) as ref:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, ("sleep", 2))
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(call, ("echo", "queued"))
            await trio.testing.wait_all_tasks_blocked()
            ref.cast("queued cast")
            await ref.stop(Exit.NORMAL)
        assert results == ["slept", Exit.NORMAL]
        assert worker.casts == []
        assert log[-1] == ("terminate", "w", Exit.NORMAL)


async def test_stop_timeout_raises_call_timeout(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref, trio.open_nursery() as nursery:
        nursery.start_soon(ref.call, ("sleep", 10), 60)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(CallTimeout):
            await ref.stop(timeout=1)
        assert ref.alive


async def test_exit_reason_is_none_while_alive(autojump_clock: MockClock) -> None:
    async with open_actor(Worker()) as ref:
        assert ref.alive and ref.exit_reason is None
        await ref.stop(Exit.SHUTDOWN)
        assert not ref.alive and ref.exit_reason is Exit.SHUTDOWN


class SelfCaller(Worker):
    """Calls itself: from its handler (a deadlock OTP refuses), or from a task it started."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        match message:
            case ("self", target):
                try:
                    await target.call(("echo", "never"))
                except CallingSelf as exc:
                    return exc
            case "from a task":
                self.start_soon(self._ask_and_reply, caller)
                return NOREPLY
        return await super().handle_call(message, caller)

    async def _ask_and_reply(self, caller: Caller) -> None:
        caller.reply(await self.ref.call(("echo", "answered")))


async def test_an_actor_calling_itself_fails_at_once(autojump_clock: MockClock) -> None:
    async with open_actor(SelfCaller(), name="me") as ref:
        start = trio.current_time()
        for target in (ref, ref.registry.ref("me")):
            error = await ref.call(("self", target))
            assert isinstance(error, CallingSelf) and "called itself" in str(error)
        assert trio.current_time() == start  # no call timeout waited
        # a task the actor started is not its mailbox loop: it may call the actor
        assert await ref.call("from a task") == "answered"
