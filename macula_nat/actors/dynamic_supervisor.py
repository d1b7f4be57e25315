"""DynamicSupervisor: many children of one kind, started on demand (OTP simple_one_for_one)."""

from __future__ import annotations

import logging
import math
from typing import Any

import attrs
import trio

from .actor import Actor, Fail, Stop
from .caller import Caller
from .child_spec import ChildSpec, ChildType
from .errors import MaxChildren, NoSuchChild, RestartIntensityExceeded, StartFailed
from .exit import Exit
from .intensity import RestartIntensity
from .monitor import Exited
from .ref import ActorRef, shut_down, spawn
from .supervisor import ChildCounts, SupervisorStatistics, _Query, _SupervisorQueries

logger = logging.getLogger(__name__)


@attrs.frozen
class _StartChild:
    args: tuple[Any, ...]


@attrs.frozen
class _TerminateChild:
    ref: ActorRef


class DynamicSupervisorRef(_SupervisorQueries):
    """An :class:`ActorRef` to a dynamic supervisor, with its operations as methods."""

    __slots__ = ()

    async def start_child(self, *args: Any) -> ActorRef:
        """Start a child built with ``template.start(*template.args, *args)``.

        Raises :class:`MaxChildren` at the limit and :class:`StartFailed` if ``init`` raises.
        """
        ref: ActorRef = await self.call(_StartChild(args), math.inf)
        return ref

    async def terminate_child(self, ref: ActorRef) -> None:
        """Stop one child (it is not restarted); :class:`NoSuchChild` if it is not ours."""
        await self.call(_TerminateChild(ref), math.inf)

    async def which_children(self) -> list[ActorRef]:
        children: list[ActorRef] = await self.call(_Query.WHICH)
        return children


class DynamicSupervisor(Actor):
    """Supervises any number (up to ``max_children``) of children built from one template.

    Children restart one for one, with their original arguments, per the template's restart
    type; the intensity rule is the same as :class:`Supervisor`'s. On shutdown every child is
    asked to stop at once and given the template's shutdown time (OTP stops
    simple_one_for_one children concurrently too).
    """

    ref_class = DynamicSupervisorRef
    shutdown_on_cancel = True

    def __init__(
        self,
        template: ChildSpec,
        *,
        max_children: int | None = None,
        intensity: int = 1,
        period: float = 5.0,
    ) -> None:
        if max_children is not None and max_children < 0:
            raise ValueError(f"max_children must be >= 0, not {max_children}")
        if template.name is not None:
            raise ValueError("a dynamic supervisor's template cannot register a name")
        self._template = template
        self._max_children = max_children
        self._intensity = RestartIntensity(intensity, period)
        self._children: dict[ActorRef, tuple[Any, ...]] = {}
        self._restarts = 0

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if isinstance(message, _StartChild):
            if self._max_children is not None and len(self._children) >= self._max_children:
                return Fail(MaxChildren(f"{self.ref} has {self._max_children} children already"))
            try:
                return await self._start(message.args, 0)
            except StartFailed as exc:
                return Fail(exc)
        if isinstance(message, _TerminateChild):
            if self._children.pop(message.ref, None) is None:
                return Fail(NoSuchChild(f"{message.ref} is not a child of {self.ref}"))
            await shut_down(message.ref, self._template.shutdown_time)
            return None
        if message is _Query.WHICH:
            return list(self._children)
        if message is _Query.COUNT:
            active = len(self._children)
            supervisors = active if self._template.type is ChildType.SUPERVISOR else 0
            return ChildCounts(
                specs=active, active=active, supervisors=supervisors, workers=active - supervisors
            )
        if message is _Query.STATISTICS:
            return SupervisorStatistics(
                children=len(self._children),
                active=len(self._children),
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

    async def _start(self, args: tuple[Any, ...], restarts: int) -> ActorRef:
        template = self._template
        ref = await spawn(
            self._ref._nursery_or_raise(),
            template.start,
            (*template.args, *args),
            registry=self.registry,
            parent=self._ref,
            restarts=restarts,
        )
        self._children[ref] = args
        return ref

    async def _child_exited(self, ref: ActorRef, reason: object) -> Stop | None:
        args = self._children.pop(ref, None)
        if args is None or not self._template.restart.restarts_after(reason):
            return None
        restarts = ref.statistics().restarts
        while True:
            now = trio.current_time()
            if not self._intensity.record(now, ref, reason):
                logger.error("%s: restart intensity exceeded, giving up", self.ref)
                history = self._intensity.history(now)
                await self._terminate_all()
                return Stop(RestartIntensityExceeded(repr(self.ref), history))
            self._restarts += 1
            restarts += 1
            try:
                await self._start(args, restarts)
            except StartFailed as exc:
                reason = exc
            else:
                return None

    async def _terminate_all(self) -> None:
        children = list(self._children)
        self._children.clear()
        grace = self._template.shutdown_time
        if grace > 0:
            for ref in children:
                ref._request_stop(Exit.SHUTDOWN)
            with trio.move_on_after(grace):
                for ref in children:
                    await ref.wait_exited()
        for ref in children:
            if ref.alive:
                await shut_down(ref, 0)
