"""Running actors and trees inside a host Trio program."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final, overload

import trio

from .actor import Actor
from .child_spec import INFINITY
from .dynamic_supervisor import DynamicSupervisor, DynamicSupervisorRef
from .errors import ActorExited
from .exit import Exit, is_normal
from .ref import ActorRef, new_ref, shut_down
from .registry import Registry
from .supervisor import Supervisor, SupervisorRef

ROOT_SHUTDOWN: Final = 5.0
"""Seconds a plain (non-supervisor) root actor gets to stop before it is killed: a worker
child's default shutdown time. A supervisor root gets INFINITY (its children are bounded)."""


@overload
def open_actor(
    actor: Supervisor,
    name: str | None = None,
    registry: Registry | None = None,
    *,
    shutdown: float | None = None,
) -> AbstractAsyncContextManager[SupervisorRef]: ...
@overload
def open_actor(
    actor: DynamicSupervisor,
    name: str | None = None,
    registry: Registry | None = None,
    *,
    shutdown: float | None = None,
) -> AbstractAsyncContextManager[DynamicSupervisorRef]: ...
@overload
def open_actor(
    actor: Actor,
    name: str | None = None,
    registry: Registry | None = None,
    *,
    shutdown: float | None = None,
) -> AbstractAsyncContextManager[ActorRef]: ...
def open_actor(
    actor: Actor,
    name: str | None = None,
    registry: Registry | None = None,
    *,
    shutdown: float | None = None,
) -> AbstractAsyncContextManager[ActorRef]:
    """Run ``actor`` (usually the root :class:`Supervisor` of a tree) for the ``async with`` block.

    Yields its reference once ``init`` has succeeded (for a tree: once every child started).
    Leaving the block stops it (reason ``shutdown``); a supervisor stops its children in
    reverse order. As a supervisor does with a child, the actor gets ``shutdown`` seconds to
    stop, then it is killed (exit reason ``killed``): None means :data:`ROOT_SHUTDOWN` (5 s)
    for a plain actor and INFINITY for a supervisor, whose children have shutdown times of
    their own.

    If it exits abnormally while the block runs, the block is cancelled and the exit reason is
    raised out of the ``async with``: a tree that exceeds its restart intensity raises
    :class:`RestartIntensityExceeded`. A single failure (the block's own exception or the
    actor's) is raised as itself; simultaneous failures come out as an ExceptionGroup.
    """
    if shutdown is None:
        is_supervisor = isinstance(actor, Supervisor | DynamicSupervisor)
        shutdown = INFINITY if is_supervisor else ROOT_SHUTDOWN
    elif not shutdown >= 0:
        raise ValueError(f"shutdown must be >= 0 seconds (or INFINITY), not {shutdown!r}")
    return _open_actor(actor, name, registry, shutdown)


@asynccontextmanager
async def _open_actor(
    actor: Actor, name: str | None, registry: Registry | None, shutdown: float
) -> AsyncIterator[ActorRef]:
    try:
        async with trio.open_nursery() as nursery:
            ref: ActorRef = await nursery.start(run_actor, actor, name, registry)
            try:
                yield ref
            finally:
                # In a task of the nursery, so the stop runs even when the block was cancelled
                # (a shielded actor then still gets its full shutdown time).
                ref._request_stop(Exit.SHUTDOWN)
                nursery.start_soon(shut_down, ref, shutdown)
    except BaseExceptionGroup as group:
        # One failure (the body's, or the actor's abnormal exit) comes out as itself, as it
        # would from any context manager; only simultaneous failures stay grouped.
        if len(group.exceptions) != 1 or isinstance(group.exceptions[0], BaseExceptionGroup):
            raise
        error = group.exceptions[0]
        raise error from error.__cause__


async def run_actor(
    actor: Actor,
    name: str | None = None,
    registry: Registry | None = None,
    *,
    task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``actor`` in the calling task until it exits: the ``nursery.start`` form.

    ``sup = await nursery.start(run_actor, Supervisor(children))``. A normal exit returns; an
    abnormal one raises its reason (the crash exception, else :class:`ActorExited`), so an
    unsupervised actor's crash reaches the host like any failed task. Without ``registry``
    the actor starts a new tree with a registry of its own.
    """
    ref = new_ref(actor, registry if registry is not None else Registry())
    await ref._entry(actor)(actor, name, task_status=task_status)
    reason = ref.exit_reason
    if is_normal(reason) or reason is Exit.KILLED:
        return
    if isinstance(reason, Exception):
        raise reason
    raise ActorExited(repr(ref), reason)
