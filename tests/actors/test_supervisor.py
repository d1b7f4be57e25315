"""Supervisors: shutdown order and timing, escalation, host cancellation, child management."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import (
    BRUTAL_KILL,
    Actor,
    ActorExited,
    ChildRunning,
    ChildSpec,
    ChildType,
    DynamicSupervisor,
    Exit,
    MaxChildren,
    NoSuchChild,
    Restart,
    RestartIntensityExceeded,
    StartFailed,
    Stop,
    Strategy,
    Supervisor,
    open_actor,
    run_actor,
)

from .conftest import Boom, Worker


class SlowStop(Worker):
    """Takes ``delay`` seconds in terminate and records when it finished."""

    def __init__(self, log: list[Any], label: str, delay: float) -> None:
        super().__init__(log, label)
        self.delay = delay

    async def terminate(self, reason: object) -> None:
        await trio.sleep(self.delay)
        self.log.append(("terminated", self.label, reason, trio.current_time()))


def spec(label: str, log: list[Any], **options: Any) -> ChildSpec:
    return ChildSpec(label, Worker, (log, label), name=label, **options)


async def test_children_start_in_order_and_stop_in_reverse_with_slow_terminate(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    children = [
        ChildSpec("a", SlowStop, (log, "a", 1.0)),
        ChildSpec("b", SlowStop, (log, "b", 10.0), shutdown=2.0),  # overruns: cancelled at 2 s
        ChildSpec("c", SlowStop, (log, "c", 1.0)),
    ]
    start = trio.current_time()
    async with open_actor(Supervisor(children)):
        assert [entry for entry in log if entry[0] == "start"] == [
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]
    stops = [(e[1], e[3] - start) for e in log if e[0] == "terminated"]
    # c takes 1 s, b is cancelled after its 2 s grace (no "terminated" entry), then a takes 1 s
    assert stops == [("c", pytest.approx(1.0)), ("a", pytest.approx(4.0))]


async def test_brutal_kill_skips_terminate(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    async with open_actor(Supervisor([spec("a", log, shutdown=BRUTAL_KILL), spec("b", log)])):
        pass
    assert [e[:2] for e in log if e[0] == "terminate"] == [("terminate", "b")]


async def test_cancelling_the_host_shuts_the_tree_down_in_reverse_order(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    inner = Supervisor([spec("x", log), spec("y", log)])
    children = [
        spec("a", log),
        ChildSpec("inner", lambda: inner, type=ChildType.SUPERVISOR),
        spec("b", log),
    ]
    with trio.move_on_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_actor, Supervisor(children))
            await trio.sleep_forever()
    terminated = [(e[1], e[2]) for e in log if e[0] == "terminate"]
    assert terminated == [
        ("b", Exit.SHUTDOWN),
        ("y", Exit.SHUTDOWN),
        ("x", Exit.SHUTDOWN),
        ("a", Exit.SHUTDOWN),
    ]


async def test_no_task_outlives_its_tree(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    before = len(trio.lowlevel.current_root_task().child_nurseries)
    async with open_actor(Supervisor([spec("a", log), spec("b", log)])) as sup:
        refs = [child.ref for child in await sup.which_children()]
    assert all(ref is not None and not ref.alive for ref in refs)
    assert not sup.alive
    assert len(trio.lowlevel.current_root_task().child_nurseries) == before


async def test_escalation_through_two_levels_reaches_the_host(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    leaf = ChildSpec("leaf", Worker, (log, "leaf"), name="leaf")
    middle = ChildSpec(
        "middle",
        Supervisor,
        ([leaf],),
        type=ChildType.SUPERVISOR,
    )
    top = Supervisor([middle], intensity=0)
    with pytest.raises(RestartIntensityExceeded) as raised:
        async with open_actor(top) as sup:
            for _ in range(2):  # the middle supervisor allows one restart, gives up on the second
                with pytest.raises(ActorExited):
                    await sup.registry.ref("leaf").call("crash")
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_forever()
    top_error = raised.value
    [(_, child, reason)] = top_error.history
    assert child == "middle" and isinstance(reason, RestartIntensityExceeded)
    assert [c for _, c, _ in reason.history] == ["leaf", "leaf"]


async def test_a_child_that_fails_to_start_fails_the_supervisor_and_stops_started_ones(
    autojump_clock: MockClock,
) -> None:
    class Broken(Worker):
        async def init(self) -> None:
            raise Boom("no config")

    log: list[Any] = []
    with pytest.raises(StartFailed):
        async with open_actor(Supervisor([spec("a", log), ChildSpec("x", Broken)])):
            pass  # pragma: no cover
    assert [e[:2] for e in log] == [("start", "a"), ("terminate", "a")]


async def test_restart_types_under_one_for_one(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    children = [
        spec("p", log, restart=Restart.PERMANENT),
        spec("t", log, restart=Restart.TRANSIENT),
        spec("tmp", log, restart=Restart.TEMPORARY),
    ]
    async with open_actor(Supervisor(children, intensity=10)) as sup:
        for name in ("p", "t"):
            await sup.registry.ref(name).call(("stop", Exit.NORMAL))
        await sup.registry.ref("tmp").call(("stop", "abnormal"))
        await trio.testing.wait_all_tasks_blocked()
        running = {c.id: c.ref is not None for c in await sup.which_children()}
        assert running == {"p": True, "t": False}  # temporary child removed, transient kept
        counts = await sup.count_children()
        assert (counts.specs, counts.active, counts.workers) == (2, 1, 2)


async def test_child_management_calls(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    async with open_actor(Supervisor([spec("a", log)])) as sup:
        b = await sup.start_child(spec("b", log))
        assert await b.call(("echo", 1)) == 1
        with pytest.raises(ValueError, match="already has a child"):
            await sup.start_child(spec("b", log))
        with pytest.raises(ChildRunning):
            await sup.restart_child("b")
        with pytest.raises(ChildRunning):
            await sup.delete_child("b")
        await sup.terminate_child("b")
        assert not b.alive
        again = await sup.restart_child("b")
        assert again is not b and again.alive
        await sup.terminate_child("b")
        await sup.delete_child("b")
        with pytest.raises(NoSuchChild):
            await sup.terminate_child("b")
        assert [c.id for c in await sup.which_children()] == ["a"]


async def test_start_child_failure_keeps_nothing(autojump_clock: MockClock) -> None:
    class Broken(Actor):
        async def init(self) -> None:
            raise Boom("bad")

    async with open_actor(Supervisor()) as sup:
        with pytest.raises(StartFailed) as info:
            await sup.start_child(ChildSpec("x", Broken))
        assert isinstance(info.value.__cause__, Boom)
        assert await sup.which_children() == []


async def test_rest_for_one_restarts_the_dead_child_and_those_after_it(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    children = [spec(name, log) for name in "abc"]
    async with open_actor(Supervisor(children, strategy=Strategy.REST_FOR_ONE)) as sup:
        log.clear()
        with pytest.raises(ActorExited):
            await sup.registry.ref("b").call("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert [e[:2] for e in log] == [
            ("terminate", "b"),  # its own terminate, with the crash as the reason
            ("terminate", "c"),
            ("start", "b"),
            ("start", "c"),
        ]


async def test_helper_task_crash_crashes_the_actor_and_send_after_delivers(
    autojump_clock: MockClock,
) -> None:
    class Ticker(Worker):
        async def init(self) -> None:
            await super().init()
            self.send_after(2, "tick")
            self.start_soon(self.fail_later)

        async def fail_later(self) -> None:
            await trio.sleep(5)
            raise Boom("helper")

    log: list[Any] = []
    async with open_actor(Supervisor([ChildSpec("t", Ticker, (log, "t"), name="t")])) as sup:
        await trio.sleep(3)
        ticker = sup.registry.ref("t").resolve()
        assert await ticker.call("infos") == ["tick"]
        reason = await ticker.wait_exited()
        assert isinstance(reason, Boom)
        await trio.testing.wait_all_tasks_blocked()
        assert sup.registry.ref("t").resolve() is not ticker  # restarted


class Sized(Actor):
    def __init__(self, size: int) -> None:
        self.size = size

    async def handle_call(self, message: Any, caller: object) -> Any:
        if message == "crash":
            raise Boom("dyn")
        return self.size

    async def handle_cast(self, message: Any) -> Stop | None:
        return Stop(Exit.NORMAL)


async def test_dynamic_supervisor(autojump_clock: MockClock) -> None:
    template = ChildSpec("sized", Sized, restart=Restart.TRANSIENT)
    async with open_actor(DynamicSupervisor(template, max_children=3, intensity=5)) as sup:
        refs = [await sup.start_child(size) for size in (1, 2, 3)]
        with pytest.raises(MaxChildren):
            await sup.start_child(4)
        with pytest.raises(ActorExited):
            await refs[1].call("crash")
        await trio.testing.wait_all_tasks_blocked()
        children = await sup.which_children()
        assert len(children) == 3 and refs[1] not in children
        assert sorted([await c.call("size") for c in children]) == [1, 2, 3]  # same arguments
        refs[0].cast("stop normally")  # transient: not restarted
        await trio.testing.wait_all_tasks_blocked()
        assert (await sup.count_children()).active == 2
        with pytest.raises(NoSuchChild):
            await sup.terminate_child(refs[0])
        await sup.terminate_child(refs[2])
        assert (await sup.supervisor_statistics()).restarts == 1
        assert not refs[2].alive


async def test_keyboard_interrupt_in_an_actor_propagates_and_ends_the_tree(
    autojump_clock: MockClock,
) -> None:
    class Interrupted(Worker):
        async def handle_cast(self, message: Any) -> Stop | None:
            raise KeyboardInterrupt

    log: list[Any] = []
    refs = []
    with pytest.RaisesGroup(KeyboardInterrupt, flatten_subgroups=True):
        async with open_actor(
            Supervisor([spec("a", log), ChildSpec("k", Interrupted, name="k")])
        ) as sup:
            refs = [c.ref for c in await sup.which_children()]
            sup.registry.ref("k").cast("now")
            await trio.sleep(math.inf)
    assert all(ref is not None and not ref.alive for ref in refs)


async def test_restarts_in_period_forgets_restarts_older_than_the_period(
    autojump_clock: MockClock,
) -> None:
    async with open_actor(Supervisor([ChildSpec("a", Worker)], intensity=5, period=1.0)) as sup:
        [child] = await sup.which_children()
        assert child.ref is not None
        with pytest.raises(ActorExited):
            await child.ref.call("crash")
        await trio.testing.wait_all_tasks_blocked()
        assert (await sup.supervisor_statistics()).restarts_in_period == 1
        await trio.sleep(1.0)
        stats = await sup.supervisor_statistics()
        assert (stats.restarts, stats.restarts_in_period) == (1, 0)


async def test_a_child_killed_in_terminate_after_its_shutdown_time_exits_killed(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    children = [
        ChildSpec("slow", SlowStop, (log, "slow", 10.0), shutdown=2.0),
        ChildSpec("quick", SlowStop, (log, "quick", 1.0)),
    ]
    async with open_actor(Supervisor(children)) as sup:
        refs = {c.id: c.ref for c in await sup.which_children()}
        await sup.terminate_child("slow")  # asked to stop, still in terminate at 2 s: killed
        assert refs["slow"] is not None and refs["slow"].exit_reason is Exit.KILLED
    assert refs["quick"] is not None and refs["quick"].exit_reason is Exit.SHUTDOWN


class Hung(Actor):
    """Stuck for an hour in whatever it handles."""

    async def handle_cast(self, message: Any) -> Stop | None:
        await trio.sleep(3600)
        return None


@pytest.mark.parametrize(("shutdown", "waited"), [(None, 5.0), (1.0, 1.0), (BRUTAL_KILL, 0.0)])
async def test_leaving_open_actor_kills_a_plain_root_stuck_in_a_handler(
    autojump_clock: MockClock, shutdown: float | None, waited: float
) -> None:
    with trio.fail_after(60):  # before the fix, leaving waited the whole hour
        async with open_actor(Hung(), shutdown=shutdown) as ref:
            ref.cast("hang")
            await trio.testing.wait_all_tasks_blocked()
            left = trio.current_time()
    assert trio.current_time() - left == pytest.approx(waited)
    assert ref.exit_reason is Exit.KILLED


async def test_open_actor_refuses_a_negative_shutdown_time() -> None:
    with pytest.raises(ValueError, match="shutdown"):
        open_actor(Hung(), shutdown=-1.0)
