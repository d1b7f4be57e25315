"""Supervisor: starts children in order, restarts them by strategy, stops them in reverse."""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Hashable, Sequence
from typing import Any

import attrs
import trio

from .actor import Actor, Fail, Stop
from .caller import Caller
from .child_spec import ChildSpec, ChildType, Restart
from .errors import ChildRunning, NoSuchChild, RestartIntensityExceeded, StartFailed
from .intensity import RestartIntensity
from .monitor import Exited
from .ref import ActorRef, shut_down, spawn

logger = logging.getLogger(__name__)


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    """Restart only the child that exited."""
    ONE_FOR_ALL = "one_for_all"
    """Stop every other child (in reverse order), then restart them all (in order)."""
    REST_FOR_ONE = "rest_for_one"
    """Stop the children started after it (in reverse order), then restart it and them."""


@attrs.frozen
class ChildInfo:
    """One row of ``which_children``; ``ref`` is None while the child is not running."""

    id: Hashable
    ref: ActorRef | None
    type: ChildType
    restart: Restart


@attrs.frozen
class ChildCounts:
    """``count_children``: specs known, children running, and how many of each type."""

    specs: int
    active: int
    supervisors: int
    workers: int


@attrs.frozen
class SupervisorStatistics:
    children: int
    active: int
    restarts: int
    """Restarts since this supervisor started (each counted against its intensity)."""
    restarts_in_period: int


@attrs.frozen
class _StartChild:
    spec: ChildSpec


@attrs.frozen
class _ById:
    op: str
    id: Hashable


class _Query(enum.Enum):
    WHICH = "which_children"
    COUNT = "count_children"
    STATISTICS = "statistics"


@attrs.define(eq=False)
class _Child:
    spec: ChildSpec
    ref: ActorRef | None = None
    restarts: int = 0


def _check_unique(specs: Sequence[ChildSpec]) -> None:
    seen: set[Hashable] = set()
    for spec in specs:
        if spec.id in seen:
            raise ValueError(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)


class _SupervisorQueries(ActorRef):
    """What every supervisor answers, static or dynamic."""

    __slots__ = ()

    async def count_children(self) -> ChildCounts:
        counts: ChildCounts = await self.call(_Query.COUNT)
        return counts

    async def supervisor_statistics(self) -> SupervisorStatistics:
        stats: SupervisorStatistics = await self.call(_Query.STATISTICS)
        return stats


class SupervisorRef(_SupervisorQueries):
    """An :class:`ActorRef` to a supervisor, with OTP's ``supervisor`` module as methods."""

    __slots__ = ()

    async def start_child(self, spec: ChildSpec) -> ActorRef:
        """Add and start a child; :class:`StartFailed` if its ``init`` raises (spec not kept)."""
        ref: ActorRef = await self.call(_StartChild(spec), math.inf)
        return ref

    async def terminate_child(self, id: Hashable) -> None:
        """Stop a child and keep its spec (a temporary child's spec is deleted)."""
        await self.call(_ById("terminate", id), math.inf)

    async def restart_child(self, id: Hashable) -> ActorRef:
        """Start a stopped child again from its spec; :class:`ChildRunning` if it runs."""
        ref: ActorRef = await self.call(_ById("restart", id), math.inf)
        return ref

    async def delete_child(self, id: Hashable) -> None:
        """Forget a stopped child's spec; :class:`ChildRunning` if it runs."""
        await self.call(_ById("delete", id), math.inf)

    async def which_children(self) -> list[ChildInfo]:
        children: list[ChildInfo] = await self.call(_Query.WHICH)
        return children


class Supervisor(Actor):
    """A static supervisor (OTP ``supervisor`` with one_for_one, one_for_all or rest_for_one).

    More than ``intensity`` restarts within ``period`` seconds make it give up: it stops every
    child and exits with :class:`RestartIntensityExceeded`, which its own supervisor handles like
    any crash (escalation). Cancelling the host stops the children in reverse order, each within
    its shutdown time.
    """

    ref_class = SupervisorRef
    shutdown_on_cancel = True

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: int = 1,
        period: float = 5.0,
    ) -> None:
        _check_unique(children)
        self._specs = tuple(children)
        self._strategy = strategy
        self._intensity = RestartIntensity(intensity, period)
        self._children: list[_Child] = []
        self._restarts = 0

    async def init(self) -> None:
        for spec in self._specs:
            child = _Child(spec)
            self._children.append(child)
            try:
                await self._start(child)
            except StartFailed:
                await self._terminate_all()
                raise

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if isinstance(message, _StartChild):
            return await self._start_child(message.spec)
        if isinstance(message, _ById):
            return await self._by_id(message)
        if message is _Query.WHICH:
            return [
                ChildInfo(c.spec.id, c.ref, c.spec.type, c.spec.restart) for c in self._children
            ]
        if message is _Query.COUNT:
            supervisors = sum(c.spec.type is ChildType.SUPERVISOR for c in self._children)
            return ChildCounts(
                specs=len(self._children),
                active=sum(c.ref is not None for c in self._children),
                supervisors=supervisors,
                workers=len(self._children) - supervisors,
            )
        if message is _Query.STATISTICS:
            return SupervisorStatistics(
                children=len(self._children),
                active=sum(c.ref is not None for c in self._children),
                restarts=self._restarts,
                restarts_in_period=len(self._intensity.history(trio.current_time())),
            )
        return await super().handle_call(message, caller)

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, Exited):
            return await self._child_exited(message.ref, message.reason)
        return await super().handle_info(message)

    async def terminate(self, reason: object) -> None:
        await self._terminate_all()

    # -- calls -------------------------------------------------------------------------------------

    async def _start_child(self, spec: ChildSpec) -> Any:
        if self._find(spec.id) is not None:
            return Fail(ValueError(f"{self.ref} already has a child with id {spec.id!r}"))
        child = _Child(spec)
        try:
            await self._start(child)
        except StartFailed as exc:
            return Fail(exc)
        self._children.append(child)
        return child.ref

    async def _by_id(self, message: _ById) -> Any:
        child = self._find(message.id)
        if child is None:
            return Fail(NoSuchChild(f"{self.ref} has no child {message.id!r}"))
        if message.op == "terminate":
            await self._terminate(child)
            if child.spec.restart is Restart.TEMPORARY:
                self._children.remove(child)
            return None
        if child.ref is not None:
            return Fail(ChildRunning(f"child {message.id!r} of {self.ref} is running"))
        if message.op == "delete":
            self._children.remove(child)
            return None
        try:
            await self._start(child)
        except StartFailed as exc:
            return Fail(exc)
        return child.ref

    # -- exits and restarts ------------------------------------------------------------------------

    async def _child_exited(self, ref: ActorRef, reason: object) -> Stop | None:
        child = next((c for c in self._children if c.ref is ref), None)
        if child is None:
            return None  # a child we stopped ourselves, or an older incarnation
        child.ref = None
        if not child.spec.restart.restarts_after(reason):
            logger.debug("%s: child %r exited (%r), not restarted", self.ref, child.spec.id, reason)
            if child.spec.restart is Restart.TEMPORARY:
                self._children.remove(child)
            return None
        logger.warning("%s: child %r exited (%r), restarting", self.ref, child.spec.id, reason)
        failed: _Child | None = child
        while failed is not None:
            now = trio.current_time()
            if not self._intensity.record(now, failed.spec.id, reason):
                logger.error("%s: restart intensity exceeded, giving up", self.ref)
                history = self._intensity.history(now)
                await self._terminate_all()
                return Stop(RestartIntensityExceeded(repr(self.ref), history))
            self._restarts += 1
            failed, error = await self._restart_by_strategy(failed)
            reason = error
        return None

    async def _restart_by_strategy(self, child: _Child) -> tuple[_Child | None, object]:
        """Restart ``child`` and whatever the strategy takes down with it.

        Returns the child whose start failed (and the error), or ``(None, None)``.
        """
        group = [child]
        if self._strategy is not Strategy.ONE_FOR_ONE:
            if self._strategy is Strategy.ONE_FOR_ALL:
                others = [c for c in self._children if c is not child]
            else:
                others = self._children[self._children.index(child) + 1 :]
            for other in reversed(others):
                await self._terminate(other)
            gone = {id(c) for c in others if c.spec.restart is Restart.TEMPORARY}
            self._children = [c for c in self._children if id(c) not in gone]
            members = {id(child), *(id(c) for c in others)}
            group = [c for c in self._children if id(c) in members]
        for member in group:
            member.restarts += 1
            try:
                await self._start(member)
            except StartFailed as exc:
                return member, exc
        return None, None

    # -- starting and stopping ---------------------------------------------------------------

    def _find(self, id: Hashable) -> _Child | None:
        return next((c for c in self._children if c.spec.id == id), None)

    async def _start(self, child: _Child) -> None:
        spec = child.spec
        child.ref = await spawn(
            self._ref._nursery_or_raise(),
            spec.start,
            spec.args,
            registry=self.registry,
            name=spec.name,
            parent=self._ref,
            restarts=child.restarts,
        )

    async def _terminate(self, child: _Child) -> None:
        ref, child.ref = child.ref, None
        if ref is not None:
            await shut_down(ref, child.spec.shutdown_time)

    async def _terminate_all(self) -> None:
        for child in reversed(self._children):
            await self._terminate(child)
