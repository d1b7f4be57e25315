"""Registry: unique names, lookup, automatic release on exit, calls by name across restarts."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from macula_nat.actors import (
    ActorError,
    ActorExited,
    AlreadyRegistered,
    ChildSpec,
    NoProc,
    Registry,
    Supervisor,
    open_actor,
)

from .conftest import Worker


async def test_names_are_unique_and_released_when_the_actor_exits(
    autojump_clock: MockClock,
) -> None:
    registry = Registry()
    async with open_actor(Worker(), "svc", registry) as ref:
        assert registry.whereis("svc") is ref
        assert ref.name == "svc"
        assert registry.registered() == ("svc",)
        with pytest.raises(AlreadyRegistered):
            async with open_actor(Worker(), "svc", registry):
                pass  # pragma: no cover
        await ref.stop()
        assert registry.whereis("svc") is None
        assert registry.registered() == ()
    async with open_actor(Worker(), "svc", registry) as again:
        assert registry.whereis("svc") is again


async def test_register_and_unregister_at_runtime(autojump_clock: MockClock) -> None:
    registry = Registry()
    async with open_actor(Worker(), None, registry) as ref:
        registry.register("late", ref)
        with pytest.raises(ActorError):
            registry.register("second-name", ref)
        assert await registry.ref("late").call(("echo", 1)) == 1
        registry.unregister("late")
        assert ref.name is None
        with pytest.raises(NoProc):
            await registry.ref("late").call(("echo", 1))
        await ref.stop()
        with pytest.raises(NoProc):
            registry.register("dead", ref)


async def test_call_by_name_fails_at_once_when_nobody_holds_it(autojump_clock: MockClock) -> None:
    named = Registry().ref("ghost")
    start = trio.current_time()
    with pytest.raises(NoProc, match="ghost"):
        await named.call("anything")
    with pytest.raises(NoProc):
        named.cast("anything")
    assert trio.current_time() == start


async def test_a_named_ref_follows_the_actor_across_restarts(autojump_clock: MockClock) -> None:
    spec = ChildSpec("db", Worker, name="db")
    async with open_actor(Supervisor([spec], intensity=5)) as sup:
        db = sup.registry.ref("db")
        first = db.resolve()
        with pytest.raises(ActorExited):
            await db.call("crash")
        await trio.testing.wait_all_tasks_blocked()
        second = db.resolve()
        assert second is not first and not first.alive
        assert await db.call(("echo", "back")) == "back"
        assert second.statistics().restarts == 1
