"""Random operation sequences through nested supervisors, checked against a reference model.

Hypothesis draws a tree (a root supervisor over workers and child supervisors, every strategy,
restart type, intensity and period drawn) and a list of operations: crash a worker, stop it
normally or with ``shutdown``, leave a call to it unanswered, make its next starts fail, stop a
child supervisor (normal, shutdown or abnormal reason), advance the clock, and ``start_child`` /
``terminate_child`` / ``restart_child`` / ``delete_child``. They are replayed in one
``trio.run`` under a ``MockClock``; after each one the live tree is compared with ``Model``: a
small, independent statement of the OTP supervisor rules (pure Python, no Trio, none of the
library's supervisor code).

Every actor writes to a shared log when it starts (``start``), fails to start (``fail``) and goes
down (``down``, however it went: crash, stop, ``shutdown``, brutal kill), so the model checks the
exact sequence of starts and stops, which pins down restart order (start order) and termination
order (reverse start order), not only the final state. The tree's own reports (which_children,
count_children, statistics) must agree, calls to dead actors must fail at once with NoProc,
unanswered calls must end with ActorExited when their actor dies, and nothing may outlive the
tree, whether it was shut down or gave up with RestartIntensityExceeded.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import Counter
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from macula_nat.actors import (
    BRUTAL_KILL,
    NOREPLY,
    Actor,
    ActorExited,
    ActorRef,
    Caller,
    ChildRunning,
    ChildSpec,
    ChildType,
    Exit,
    NoProc,
    NoSuchChild,
    Restart,
    RestartIntensityExceeded,
    StartFailed,
    Stop,
    Strategy,
    Supervisor,
    SupervisorRef,
    open_actor,
)

# ---------------------------------------------------------------------------------------------
# The tree and the operations, as plain data (what hypothesis draws)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerDef:
    id: str
    restart: Restart
    brutal: bool = False
    """Shut down with BRUTAL_KILL (no ``terminate``) rather than the default 5 s grace."""


@dataclass(frozen=True)
class SupDef:
    id: str
    restart: Restart
    strategy: Strategy
    intensity: int
    period: float
    children: tuple[WorkerDef | SupDef, ...]


Node = WorkerDef | SupDef

OpKind = Literal[
    "crash",  # a worker's handle_call raises
    "normal",  # a worker's handle_call returns Stop(Exit.NORMAL)
    "shutdown",  # ActorRef.stop(Exit.SHUTDOWN) on a worker
    "hold",  # a call the worker never answers (NOREPLY): must end in ActorExited when it dies
    "stop_sup",  # ActorRef.stop(reason) on a child supervisor
    "poison",  # the next `amount` starts of a worker fail in init
    "advance",  # move the clock `amount` seconds on
    "start_child",
    "terminate_child",
    "restart_child",
    "delete_child",
]

Outcome = Literal["ok", "noproc", "no_such_child", "running", "start_failed", "exists"]

STOP_REASONS: dict[str, object] = {
    "normal": Exit.NORMAL,
    "shutdown": Exit.SHUTDOWN,
    "boom": "boom",  # any other reason is abnormal
}
REASONS = sorted(STOP_REASONS)


@dataclass(frozen=True)
class Op:
    kind: OpKind
    target: str = ""
    """The worker or supervisor the operation is about."""
    child: str = ""
    """For the supervisor calls: the child id."""
    reason: str = ""
    """For ``stop_sup``: a key of STOP_REASONS."""
    amount: float = 0
    """Seconds for ``advance``; how many starts fail for ``poison``."""
    restart: Restart = Restart.PERMANENT
    """For ``start_child``: the new child's restart type."""


# ---------------------------------------------------------------------------------------------
# The reference model: OTP's rules, nothing else
# ---------------------------------------------------------------------------------------------

Event = tuple[str, str]
"""``("start" | "fail" | "down", id)``."""


@dataclass(eq=False)
class MChild:
    spec: Node
    running: bool = False
    sup: MSup | None = None
    """The running incarnation, for a supervisor child."""
    restarts: int = 0
    """Automatic restarts of this child (by its strategy) in this supervisor incarnation."""


@dataclass(eq=False)
class MSup:
    spec: SupDef
    children: list[MChild]
    window: list[tuple[float, str]] = field(default_factory=list)
    """Restarts still counted against the intensity: ``(time, child id)``, oldest first."""
    restarts: int = 0
    """Restarts performed by this incarnation."""


class Model:
    """OTP supervisor semantics over ``SupDef`` trees.

    * restart types: permanent always restarted, transient only after an abnormal exit (not
      normal/shutdown), temporary never, and removed from the children when it exits or a
      sibling's restart takes it down;
    * one_for_one restarts the dead child; one_for_all terminates every other child in reverse
      order, then starts every remaining (non-temporary) child in order, stopped ones included;
      rest_for_one does the same with the children after the dead one;
    * each restart counts against the intensity (a restart at t counts while now - t < period);
      a start that fails during a restart is retried by restarting again, which counts again;
    * more than ``intensity`` restarts in the window: terminate all children in reverse order
      and exit abnormally, which the parent treats as a crash of that child (escalation);
    * terminate_child keeps the spec (a temporary child's is deleted), restart_child and
      delete_child need a stopped child, start_child discards a spec whose start fails,
      manual restarts do not count against the intensity (nor in a child's restart count).
    """

    def __init__(self, root: SupDef) -> None:
        self.events: list[Event] = []
        self.poison: Counter[str] = Counter()
        self.root_spec = root
        self.gave_up: list[tuple[float, str]] | None = None
        """The root's counted restarts when it gave up (the tree is then gone)."""
        holder = MChild(root)
        assert self._start(holder)
        self.root: MSup | None = holder.sup

    # -- queries -------------------------------------------------------------------------------

    def live_sups(self) -> Iterator[MSup]:
        stack = [self.root] if self.root is not None else []
        while stack:
            sup = stack.pop()
            yield sup
            stack.extend(c.sup for c in sup.children if c.sup is not None)

    def find(self, id: str) -> tuple[MSup, MChild] | None:
        """The (running) supervisor that has a child ``id``, and that child."""
        for sup in self.live_sups():
            for child in sup.children:
                if child.spec.id == id:
                    return sup, child
        return None

    def find_sup(self, id: str) -> MSup | None:
        return next((s for s in self.live_sups() if s.spec.id == id), None)

    def running_workers(self) -> list[str]:
        return [
            c.spec.id
            for s in self.live_sups()
            for c in s.children
            if c.running and isinstance(c.spec, WorkerDef)
        ]

    # -- starting and stopping -----------------------------------------------------------------

    def _start(self, child: MChild) -> bool:
        spec = child.spec
        if isinstance(spec, WorkerDef):
            if self.poison[spec.id] > 0:
                self.poison[spec.id] -= 1
                self.events.append(("fail", spec.id))
                return False
            self.events.append(("start", spec.id))
            child.running = True
            return True
        self.events.append(("start", spec.id))
        sup = MSup(spec, [MChild(c) for c in spec.children])
        for index, sub in enumerate(sup.children):
            if not self._start(sub):
                for started in reversed(sup.children[:index]):
                    self._terminate(started)
                self.events.append(("fail", spec.id))
                return False
        child.running, child.sup = True, sup
        return True

    def _terminate(self, child: MChild) -> None:
        if not child.running:
            return
        if child.sup is not None:
            self._terminate_all(child.sup)
        child.running, child.sup = False, None
        self.events.append(("down", child.spec.id))

    def _terminate_all(self, sup: MSup) -> None:
        for child in reversed(sup.children):
            self._terminate(child)

    # -- exits ---------------------------------------------------------------------------------

    def _exited(self, sup: MSup, child: MChild, abnormal: bool, now: float) -> None:
        """``child`` of ``sup`` went down on its own (its ``down`` event is already logged)."""
        child.running, child.sup = False, None
        while not self._handle_exit(sup, child, abnormal, now):
            # ``sup`` gave up: it has terminated its children; now it goes down itself.
            self.events.append(("down", sup.spec.id))
            if sup is self.root:
                self.gave_up = sup.window
                self.root = None
                return
            found = self.find(sup.spec.id)
            assert found is not None
            sup, child = found
            child.running, child.sup = False, None
            abnormal = True

    def _handle_exit(self, sup: MSup, child: MChild, abnormal: bool, now: float) -> bool:
        """Apply the restart rules; False if ``sup`` exceeded its intensity."""
        restart = child.spec.restart
        if restart is Restart.TEMPORARY:
            sup.children.remove(child)
            return True
        if restart is Restart.TRANSIENT and not abnormal:
            return True
        failed: MChild | None = child
        while failed is not None:
            period = sup.spec.period
            sup.window = [(t, i) for t, i in sup.window if now - t < period]
            sup.window.append((now, failed.spec.id))
            if len(sup.window) > sup.spec.intensity:
                self._terminate_all(sup)
                return False
            sup.restarts += 1
            failed = self._restart(sup, failed)
        return True

    def _restart(self, sup: MSup, child: MChild) -> MChild | None:
        """Restart ``child`` and what the strategy takes with it; the child that failed to start."""
        strategy = sup.spec.strategy
        if strategy is Strategy.ONE_FOR_ONE:
            group = [child]
        else:
            if strategy is Strategy.ONE_FOR_ALL:
                others = [c for c in sup.children if c is not child]
            else:
                others = sup.children[sup.children.index(child) + 1 :]
            for other in reversed(others):
                self._terminate(other)
            sup.children = [
                c
                for c in sup.children
                if not (c.spec.restart is Restart.TEMPORARY and any(c is o for o in others))
            ]
            group = [c for c in sup.children if c is child or any(c is o for o in others)]
        for member in group:
            member.restarts += 1
            if not self._start(member):
                return member
        return None

    # -- operations ----------------------------------------------------------------------------

    def apply(self, op: Op, now: float) -> Outcome:
        kind = op.kind
        if kind == "advance":
            return "ok"
        if kind == "poison":
            self.poison[op.target] = int(op.amount)
            return "ok"
        if kind == "hold":
            found = self.find(op.target)
            return "ok" if found is not None and found[1].running else "noproc"
        if kind in ("crash", "normal", "shutdown"):
            found = self.find(op.target)
            if found is None or not found[1].running:
                return "noproc"
            sup, child = found
            self.events.append(("down", op.target))
            self._exited(sup, child, kind == "crash", now)
            return "ok"
        if kind == "stop_sup":
            found = self.find(op.target)
            if found is None or found[1].sup is None:
                return "noproc"
            sup, child = found
            self._terminate(child)  # its children in reverse order, then the supervisor itself
            self._exited(sup, child, op.reason == "boom", now)
            return "ok"
        target = self.find_sup(op.target)
        if target is None:
            return "noproc"
        existing = next((c for c in target.children if c.spec.id == op.child), None)
        if kind == "start_child":
            if existing is not None:
                return "exists"
            new = MChild(WorkerDef(op.child, op.restart))
            if not self._start(new):
                return "start_failed"
            target.children.append(new)
            return "ok"
        if existing is None:
            return "no_such_child"
        if kind == "terminate_child":
            self._terminate(existing)
            if existing.spec.restart is Restart.TEMPORARY:
                target.children.remove(existing)
            return "ok"
        if existing.running:
            return "running"
        if kind == "delete_child":
            target.children.remove(existing)
            return "ok"
        assert kind == "restart_child"
        return "ok" if self._start(existing) else "start_failed"

    def shut_down(self) -> None:
        """Leaving ``open_actor``: the root stops with ``shutdown``."""
        if self.root is not None:
            holder = MChild(self.root_spec, running=True, sup=self.root)
            self._terminate(holder)
            self.root = None


# ---------------------------------------------------------------------------------------------
# The real actors: they log their starts and ends
# ---------------------------------------------------------------------------------------------


class Boom(Exception):
    """What a crashing worker raises."""


@dataclass(eq=False)
class Recorder:
    events: list[Event] = field(default_factory=list)
    poison: Counter[str] = field(default_factory=Counter)
    refs: dict[str, ActorRef] = field(default_factory=dict)
    """The latest incarnation of each id."""
    every_ref: list[ActorRef] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)


_PENDING = object()


@dataclass(eq=False)
class Held:
    """A call its target never answers; it must end when the target does."""

    ref: ActorRef
    outcome: object = _PENDING

    async def call(self) -> None:
        try:
            self.outcome = await self.ref.call("hold", math.inf)
        except ActorExited as exc:
            self.outcome = exc

    def check(self) -> None:
        if self.ref.alive:
            assert self.outcome is _PENDING
        else:
            assert isinstance(self.outcome, ActorExited), self.outcome
            assert self.outcome.reason is self.ref.exit_reason


class Worker(Actor):
    def __init__(self, log: Recorder, id: str) -> None:
        self._log = log
        self._id = id

    async def init(self) -> None:
        log = self._log
        if log.poison[self._id] > 0:
            log.poison[self._id] -= 1
            log.events.append(("fail", self._id))
            raise Boom(f"{self._id} poisoned")
        log.events.append(("start", self._id))
        log.refs[self._id] = self.ref
        log.every_ref.append(self.ref)
        self.start_soon(self._down_sentinel)

    async def _down_sentinel(self) -> None:
        # Cancelled whenever the incarnation ends, even when killed without ``terminate``.
        try:
            await trio.sleep_forever()
        finally:
            self._log.events.append(("down", self._id))

    async def handle_call(self, message: object, caller: Caller) -> object:
        if message == "crash":
            raise Boom(self._id)
        if message == "normal":
            return Stop(Exit.NORMAL, reply="bye")
        if message == "ping":
            return ("pong", self._id)
        if message == "hold":
            return NOREPLY
        return await super().handle_call(message, caller)


class LoggedSupervisor(Supervisor):
    def __init__(
        self,
        log: Recorder,
        id: str,
        children: tuple[ChildSpec, ...],
        strategy: Strategy,
        intensity: int,
        period: float,
    ) -> None:
        super().__init__(children, strategy=strategy, intensity=intensity, period=period)
        self._log = log
        self._id = id

    async def init(self) -> None:
        self._log.events.append(("start", self._id))
        self._log.refs[self._id] = self.ref
        self._log.every_ref.append(self.ref)
        try:
            await super().init()
        except BaseException:
            self._log.events.append(("fail", self._id))
            raise

    async def terminate(self, reason: object) -> None:
        await super().terminate(reason)  # the children, in reverse order
        self._log.events.append(("down", self._id))


def build_spec(node: Node, log: Recorder) -> ChildSpec:
    if isinstance(node, WorkerDef):
        shutdown = BRUTAL_KILL if node.brutal else None
        return ChildSpec(node.id, Worker, (log, node.id), restart=node.restart, shutdown=shutdown)
    return ChildSpec(
        node.id,
        LoggedSupervisor,
        (log, *sup_args(node, log)),
        restart=node.restart,
        type=ChildType.SUPERVISOR,
    )


def sup_args(
    node: SupDef, log: Recorder
) -> tuple[str, tuple[ChildSpec, ...], Strategy, int, float]:
    children = tuple(build_spec(child, log) for child in node.children)
    return node.id, children, node.strategy, node.intensity, node.period


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

RESTARTS = st.sampled_from(list(Restart))
STRATEGIES = st.sampled_from(list(Strategy))
INTENSITIES = st.integers(0, 5)
# Dyadic values, so window arithmetic is exact; advancing exactly `period` hits the boundary.
PERIODS = st.sampled_from([0.5, 1.0, 2.0, 4.0])
ADVANCES = st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0])


@st.composite
def trees(draw: st.DrawFn) -> SupDef:
    workers = itertools.count(1)
    sups = itertools.count(1)

    def worker() -> WorkerDef:
        return WorkerDef(f"w{next(workers)}", draw(RESTARTS), draw(st.booleans()))

    def supervisor(depth: int, id: str | None = None) -> SupDef:
        sid = id if id is not None else f"s{next(sups)}"
        children: list[Node] = []
        for _ in range(draw(st.integers(1, 3))):
            nested = depth < 2 and draw(st.integers(0, 4)) == 0
            children.append(supervisor(depth + 1) if nested else worker())
        flags = draw(RESTARTS), draw(STRATEGIES), draw(INTENSITIES), draw(PERIODS)
        return SupDef(sid, *flags, tuple(children))

    root_children: list[Node] = []
    count = draw(st.integers(1, 4))
    sub_at = draw(st.integers(0, count - 1))  # at least one child supervisor under the root
    for index in range(count):
        if index == sub_at or draw(st.integers(0, 3)) == 0:
            root_children.append(supervisor(1))
        else:
            root_children.append(worker())
    root = SupDef(
        "root",
        Restart.PERMANENT,
        draw(STRATEGIES),
        draw(INTENSITIES),
        draw(PERIODS),
        tuple(root_children),
    )
    return root


def all_sups(root: SupDef) -> list[SupDef]:
    found = [root]
    for child in root.children:
        if isinstance(child, SupDef):
            found.extend(all_sups(child))
    return found


def extra_ids(sup: SupDef) -> list[str]:
    """Ids ``start_child`` may add under ``sup``."""
    return [f"{sup.id}.x{k}" for k in range(2)]


OP_WEIGHTS: dict[OpKind, int] = {
    "crash": 8,
    "normal": 3,
    "shutdown": 3,
    "hold": 1,
    "stop_sup": 1,
    "poison": 1,
    "advance": 3,
    "start_child": 1,
    "terminate_child": 3,
    "restart_child": 2,
    "delete_child": 1,
}
OP_KINDS: list[OpKind] = [kind for kind, weight in OP_WEIGHTS.items() for _ in range(weight)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SupDef, list[Op]]:
    root = draw(trees())
    sups = all_sups(root)
    static_workers = [c.id for s in sups for c in s.children if isinstance(c, WorkerDef)]
    extra_workers = [x for s in sups for x in extra_ids(s)]
    sub_sups = [s.id for s in sups if s is not root]

    def worker() -> str:
        # Mostly the workers of the tree; sometimes one that start_child may have added.
        if draw(st.integers(0, 5)) == 0:
            return draw(st.sampled_from(extra_workers))
        return draw(st.sampled_from(static_workers))

    def op() -> Op:
        kind = draw(st.sampled_from(OP_KINDS))
        if kind in ("crash", "normal", "shutdown", "hold"):
            return Op(kind, worker())
        if kind == "poison":
            return Op(kind, worker(), amount=draw(st.integers(1, 2)))
        if kind == "advance":
            return Op(kind, amount=draw(ADVANCES))
        if kind == "stop_sup":
            return Op(kind, draw(st.sampled_from(sub_sups)), reason=draw(st.sampled_from(REASONS)))
        sup = draw(st.sampled_from(sups))
        if kind == "start_child":
            return Op(kind, sup.id, draw(st.sampled_from(extra_ids(sup))), restart=draw(RESTARTS))
        if draw(st.integers(0, 3)) == 0:
            return Op(kind, sup.id, draw(st.sampled_from([*extra_ids(sup), "ghost"])))
        return Op(kind, sup.id, draw(st.sampled_from([c.id for c in sup.children])))

    count = draw(st.integers(1, 50))
    return root, [op() for _ in range(count)]


# ---------------------------------------------------------------------------------------------
# Replaying a scenario
# ---------------------------------------------------------------------------------------------

OP_TIMEOUT = 1000.0
"""Virtual seconds; with the autojumping clock a hang fails at once instead of waiting."""


async def settle() -> None:
    # Child exits reach supervisors as messages: wait until every task is blocked again.
    # (Tasks in wait_all_tasks_blocked wake before the MockClock autojumps.)
    await trio.testing.wait_all_tasks_blocked()


async def perform(
    op: Op, expected: Outcome, log: Recorder, clock: trio.testing.MockClock, callers: trio.Nursery
) -> None:
    kind = op.kind
    if kind == "advance":
        clock.jump(op.amount)
        return
    if kind == "poison":
        log.poison[op.target] = int(op.amount)
        return
    ref = log.refs.get(op.target)
    if ref is None:  # a start_child id that never started
        assert expected == "noproc", op
        return
    if expected == "noproc":
        await assert_dead(ref)
        return
    if kind == "hold":
        held = Held(ref)
        log.held.append(held)
        callers.start_soon(held.call)
        return
    if kind == "crash":
        with pytest.raises(ActorExited) as exited:
            await ref.call("crash")
        assert isinstance(exited.value.reason, Boom)
        return
    if kind == "normal":
        assert await ref.call("normal") == "bye"
        assert await ref.wait_exited() is Exit.NORMAL  # the reply comes first, then the exit
        return
    if kind == "shutdown":
        await ref.stop(Exit.SHUTDOWN)
        assert ref.exit_reason is Exit.SHUTDOWN
        return
    if kind == "stop_sup":
        await ref.stop(STOP_REASONS[op.reason])
        assert ref.exit_reason == STOP_REASONS[op.reason]
        return
    assert isinstance(ref, SupervisorRef)
    await supervisor_call(ref, op, expected, log)


async def supervisor_call(sup: SupervisorRef, op: Op, expected: Outcome, log: Recorder) -> None:
    errors: dict[Outcome, type[Exception]] = {
        "no_such_child": NoSuchChild,
        "running": ChildRunning,
        "start_failed": StartFailed,
        "exists": ValueError,
    }
    if expected != "ok":
        with pytest.raises(errors[expected]):
            await sup_call(sup, op, log)
        return
    result = await sup_call(sup, op, log)
    if op.kind in ("start_child", "restart_child"):
        assert isinstance(result, ActorRef)
        assert result.alive
        assert result is log.refs[op.child]
    else:
        assert result is None


async def sup_call(sup: SupervisorRef, op: Op, log: Recorder) -> ActorRef | None:
    if op.kind == "start_child":
        spec = ChildSpec(op.child, Worker, (log, op.child), restart=op.restart)
        return await sup.start_child(spec)
    if op.kind == "terminate_child":
        await sup.terminate_child(op.child)
        return None
    if op.kind == "restart_child":
        return await sup.restart_child(op.child)
    assert op.kind == "delete_child"
    await sup.delete_child(op.child)
    return None


async def assert_dead(ref: ActorRef) -> None:
    """A dead actor refuses everything at once, without waiting."""
    assert not ref.alive
    with pytest.raises(NoProc):
        await ref.call("ping")
    with pytest.raises(NoProc):
        ref.cast("ping")
    with pytest.raises(NoProc):
        await ref.stop()


async def check_tree(model: Model, log: Recorder) -> None:
    """The live tree is the model's: children, order, running state, counts, restarts."""
    live: set[str] = set()
    for sup in model.live_sups():
        ref = log.refs[sup.spec.id]
        assert isinstance(ref, SupervisorRef)
        live.add(sup.spec.id)
        infos = await ref.which_children()
        actual = [(i.id, i.ref is not None, i.type, i.restart) for i in infos]
        wanted: list[tuple[Hashable, bool, ChildType, Restart]] = [
            (
                c.spec.id,
                c.running,
                ChildType.SUPERVISOR if isinstance(c.spec, SupDef) else ChildType.WORKER,
                c.spec.restart,
            )
            for c in sup.children
        ]
        assert actual == wanted, f"children of {sup.spec.id}"
        for info, child in zip(infos, sup.children, strict=True):
            if info.ref is not None:
                assert info.ref is log.refs[str(info.id)]
                assert info.ref.alive
                assert info.ref.statistics().restarts == child.restarts, f"restarts of {info.id}"
        counts = await ref.count_children()
        supervisors = sum(isinstance(c.spec, SupDef) for c in sup.children)
        assert (counts.specs, counts.active, counts.supervisors, counts.workers) == (
            len(sup.children),
            sum(c.running for c in sup.children),
            supervisors,
            len(sup.children) - supervisors,
        )
        stats = await ref.supervisor_statistics()
        assert stats.restarts == sup.restarts, f"restarts of {sup.spec.id}"
    for wid in model.running_workers():
        live.add(wid)
        assert await log.refs[wid].call("ping") == ("pong", wid)
    for id, ref in log.refs.items():
        if id not in live:
            await assert_dead(ref)
    for held in log.held:
        held.check()


def check_events(model: Model, log: Recorder, since: int, context: str) -> int:
    assert log.events[since:] == model.events[since:], context
    assert Counter(e for e in log.events if e[0] == "start") == Counter(
        e for e in model.events if e[0] == "start"
    )
    return len(log.events)


def tasks_below(task: trio.lowlevel.Task | None) -> list[trio.lowlevel.Task]:
    assert task is not None
    found: list[trio.lowlevel.Task] = []
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found.append(child)
            found.extend(tasks_below(child))
    return found


def leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(leaves(exc))
        else:
            found.append(exc)
    return found


async def replay(root: SupDef, ops: list[Op], clock: trio.testing.MockClock) -> None:
    tasks_before = set(tasks_below(trio.lowlevel.current_root_task()))
    log = Recorder()
    model = Model(root)
    with trio.fail_after(OP_TIMEOUT * (len(ops) + 2) + sum(op.amount for op in ops)):
        async with trio.open_nursery() as callers:  # outlives the tree: held calls must end
            await run_tree(root, ops, clock, model, log, callers)
            await settle()
            for held in log.held:
                held.check()
    # Nothing outlives the tree: every incarnation is dead and refuses calls, no task is left.
    assert model.root is None
    for ref in log.every_ref:
        await assert_dead(ref)
    assert tasks_below(trio.lowlevel.current_task()) == []
    assert set(tasks_below(trio.lowlevel.current_root_task())) == tasks_before


async def run_tree(
    root: SupDef,
    ops: list[Op],
    clock: trio.testing.MockClock,
    model: Model,
    log: Recorder,
    callers: trio.Nursery,
) -> None:
    seen = 0
    gave_up: list[BaseException] = []
    step = -1
    try:
        async with open_actor(LoggedSupervisor(log, *sup_args(root, log))) as tree:
            assert tree is log.refs["root"]
            await settle()
            seen = check_events(model, log, seen, "initial start")
            await check_tree(model, log)
            for step, op in enumerate(ops):
                expected = model.apply(op, trio.current_time())
                with trio.fail_after(OP_TIMEOUT):
                    await perform(op, expected, log, clock, callers)
                    await settle()
                # Had the root given up, open_actor would have cancelled us by now.
                assert model.gave_up is None, f"step {step}: {op}: root should have given up"
                seen = check_events(model, log, seen, f"step {step}: {op} -> {expected}")
                with trio.fail_after(OP_TIMEOUT):
                    await check_tree(model, log)
    except* RestartIntensityExceeded as group:
        gave_up = leaves(group)
    if model.gave_up is None:
        assert not gave_up
        model.shut_down()
        check_events(model, log, seen, "shutting the tree down")
    else:
        assert len(gave_up) == 1, gave_up
        error = gave_up[0]
        assert isinstance(error, RestartIntensityExceeded)
        assert [(t, c) for t, c, _ in error.history] == model.gave_up
        check_events(model, log, seen, f"step {step}: {ops[step]}: the root gives up")


# Rare but important paths, always run (hypothesis finds them only now and then).
P, TR, TE = Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY
O41, O4A, R41 = Strategy.ONE_FOR_ONE, Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE

ONE_FOR_ALL_TREE = SupDef(
    "root",
    P,
    O4A,
    3,
    1.0,
    (
        WorkerDef("w1", TR),
        WorkerDef("w2", TE),
        SupDef("s1", P, O41, 1, 1.0, (WorkerDef("w3", P), WorkerDef("w4", P, brutal=True))),
        WorkerDef("w5", P),
    ),
)
"""one_for_all: a sibling's crash restarts the transient child that had stopped normally too,
and drops the temporary one."""
ONE_FOR_ALL_OPS = [Op("normal", "w1"), Op("crash", "w5")]

REST_FOR_ONE_TREE = SupDef(
    "root",
    P,
    R41,
    3,
    1.0,
    (
        WorkerDef("w1", P),
        SupDef("s1", P, O41, 1, 1.0, (WorkerDef("w2", P),)),
        WorkerDef("w3", TE),
        WorkerDef("w4", TR),
    ),
)
REST_FOR_ONE_OPS = [Op("stop_sup", "s1", reason="boom"), Op("crash", "w1")]

ESCALATION_TREE = SupDef(
    "root",
    P,
    O41,
    0,
    1.0,
    (
        WorkerDef("w3", P),
        SupDef("s1", P, O41, 0, 1.0, (WorkerDef("w1", P), WorkerDef("w2", P))),
    ),
)
"""The child supervisor gives up at its first restart, and so does the root: the tree is gone."""
ESCALATION_OPS = [Op("crash", "w1")]

TRANSIENT_SUB_TREE = SupDef(
    "root",
    P,
    O41,
    2,
    4.0,
    (
        SupDef("s1", TR, O41, 0, 1.0, (WorkerDef("w1", P), WorkerDef("w2", P))),
        WorkerDef("w3", P),
    ),
)
"""A transient child supervisor is restarted after escalating, not after a normal stop."""
TRANSIENT_SUB_OPS = [
    Op("crash", "w2"),
    Op("stop_sup", "s1", reason="normal"),
    Op("crash", "w1"),
    Op("restart_child", "root", "s1"),
    Op("delete_child", "root", "s1"),
    Op("terminate_child", "root", "s1"),
    Op("delete_child", "root", "s1"),
    Op("restart_child", "root", "s1"),
]

WINDOW_TREE = SupDef(
    "root",
    P,
    O41,
    1,
    1.0,
    (WorkerDef("w1", P), SupDef("s1", P, O41, 1, 1.0, (WorkerDef("w2", P),))),
)
"""A restart exactly ``period`` seconds old no longer counts; two within it are one too many."""
WINDOW_OPS = [
    Op("crash", "w1"),
    Op("advance", amount=1.0),
    Op("crash", "w1"),
    Op("advance", amount=0.5),
    Op("crash", "w1"),
]

RETRY_TREE = SupDef(
    "root",
    P,
    O4A,
    3,
    4.0,
    (WorkerDef("w1", P), SupDef("s1", P, O41, 1, 1.0, (WorkerDef("w2", P), WorkerDef("w3", P)))),
)
"""A restart whose start fails is retried, each attempt counting against the intensity."""
RETRY_OPS = [Op("poison", "w3", amount=2), Op("crash", "w1"), Op("poison", "w1", amount=1)]
RETRY_OPS += [Op("terminate_child", "root", "w1"), Op("restart_child", "root", "w1")]


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(scenarios())
@example((ONE_FOR_ALL_TREE, ONE_FOR_ALL_OPS))
@example((REST_FOR_ONE_TREE, REST_FOR_ONE_OPS))
@example((ESCALATION_TREE, ESCALATION_OPS))
@example((TRANSIENT_SUB_TREE, TRANSIENT_SUB_OPS))
@example((WINDOW_TREE, WINDOW_OPS))
@example((RETRY_TREE, RETRY_OPS))
def test_nested_supervisors_follow_the_otp_rules(scenario: tuple[SupDef, list[Op]]) -> None:
    root, ops = scenario
    clock = trio.testing.MockClock(autojump_threshold=0)
    actors_logger = logging.getLogger("macula_nat.actors")
    level = actors_logger.level
    actors_logger.setLevel(logging.CRITICAL)  # crashes are the point here; skip their tracebacks
    try:
        trio.run(replay, root, ops, clock, clock=clock)
    finally:
        actors_logger.setLevel(level)


# The model itself, on the rare paths above, against sequences written out by hand.


def model_events(root: SupDef, ops: list[Op]) -> list[Event]:
    model = Model(root)
    start = len(model.events)
    now = 0.0
    for op in ops:
        now += op.amount if op.kind == "advance" else 0.0
        model.apply(op, now)
    return model.events[start:]


def test_model_one_for_all_stops_in_reverse_and_restarts_in_order() -> None:
    down, start = "down", "start"
    assert model_events(ONE_FOR_ALL_TREE, ONE_FOR_ALL_OPS) == [
        (down, "w1"),  # normal exit of a transient child: not restarted
        (down, "w5"),  # the crash
        *[(down, "w4"), (down, "w3"), (down, "s1"), (down, "w2")],  # the others, reversed
        *[(start, "w1"), (start, "s1"), (start, "w3"), (start, "w4"), (start, "w5")],
    ]


def test_model_rest_for_one_takes_the_later_children_only() -> None:
    down, start = "down", "start"
    assert model_events(REST_FOR_ONE_TREE, REST_FOR_ONE_OPS) == [
        *[(down, "w2"), (down, "s1")],  # the stopped supervisor, its child first
        *[(down, "w4"), (down, "w3")],  # those after it, reversed; w3 is temporary: dropped
        *[(start, "s1"), (start, "w2"), (start, "w4")],
        (down, "w1"),
        *[(down, "w4"), (down, "w2"), (down, "s1")],
        *[(start, "w1"), (start, "s1"), (start, "w2"), (start, "w4")],
    ]


def test_model_escalation_takes_the_tree_down() -> None:
    model = Model(ESCALATION_TREE)
    model.apply(ESCALATION_OPS[0], 0.0)
    assert model.root is None
    assert model.gave_up == [(0.0, "s1")]
    assert model.events[-5:] == [
        ("down", "w1"),
        ("down", "w2"),  # s1 gives up: its other children go, then s1 itself
        ("down", "s1"),
        ("down", "w3"),  # the root gives up in turn
        ("down", "root"),
    ]


def test_model_intensity_window() -> None:
    model = Model(WINDOW_TREE)
    for now, op in zip([0.0, 1.0, 1.0, 1.5, 1.5], WINDOW_OPS, strict=True):
        model.apply(op, now)
    assert model.gave_up == [(1.0, "w1"), (1.5, "w1")]
