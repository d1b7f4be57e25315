"""ActorRef: one running incarnation of an actor (OTP's pid), and the loop that serves it."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .actor import NOREPLY, Actor, Fail, Stop
from .caller import Caller
from .errors import (
    ActorError,
    ActorExited,
    AlreadyRegistered,
    CallingSelf,
    CallTimeout,
    MailboxFull,
    NoProc,
    StartFailed,
)
from .exit import Exit
from .mailbox import CALL, CAST, INFO, SYSTEM, Mailbox
from .monitor import Down, Exited, MonitorRef

if TYPE_CHECKING:
    from .registry import Registry

logger = logging.getLogger(__name__)

_ids = itertools.count(1)

ExitCallback = Callable[["ActorRef", object], None]


@attrs.frozen
class ActorStatistics:
    """A snapshot of one actor: its mailbox and what it has done."""

    name: str | None
    alive: bool
    mailbox_depth: int
    mailbox_capacity: int
    received: int
    handled: int
    dropped: int
    """Casts and info messages refused because the mailbox was full."""
    restarts: int
    """How many times its supervisor restarted this child before starting this incarnation."""


class ActorRef:
    """A handle to one running incarnation: call, cast, send, stop, monitor.

    It stays valid after the actor exits (``alive`` turns False, messages raise
    :class:`NoProc`). To follow an actor across restarts, address it by name
    (:meth:`Registry.ref`).
    """

    __slots__ = (
        "__weakref__",
        "_current",
        "_deferred",
        "_exited",
        "_handled",
        "_held",
        "_id",
        "_kind",
        "_mailbox",
        "_name",
        "_nursery",
        "_parent",
        "_reason",
        "_registry",
        "_restarts",
        "_stop_reason",
        "_task",
        "_watchers",
    )

    def __init__(self, kind: str, registry: Registry, capacity: int, restarts: int = 0) -> None:
        self._id = next(_ids)
        self._kind = kind
        self._registry = registry
        self._mailbox = Mailbox(capacity)
        self._name: str | None = None
        self._nursery: trio.Nursery | None = None
        self._current: Caller | None = None
        self._deferred: set[Caller] | None = None
        self._stop_reason: object = None
        self._task: trio.lowlevel.Task | None = None
        self._reason: object = None
        self._exited: trio.Event | None = None
        self._watchers: list[tuple[MonitorRef, ActorRef | ExitCallback]] | None = None
        self._held: list[MonitorRef] | None = None
        self._parent: ActorRef | None = None
        self._handled = 0
        self._restarts = restarts

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name is not None else ""
        return f"<actor{name} {self._kind}#{self._id}>"

    # -- what users see --------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        """The registered name, if any."""
        return self._name

    @property
    def registry(self) -> Registry:
        return self._registry

    @property
    def alive(self) -> bool:
        return not self._mailbox.closed

    @property
    def exit_reason(self) -> object:
        """None while alive; afterwards the reason it exited with."""
        return self._reason

    def cast(self, message: object) -> None:
        """Queue ``message`` for ``handle_cast`` and return at once.

        Raises :class:`NoProc` if the actor is not running and :class:`MailboxFull` if its
        mailbox is at capacity; either way the message was not delivered.
        """
        self._put(CAST, message)

    def send(self, message: object) -> None:
        """Queue ``message`` for ``handle_info``; same rules as :meth:`cast`."""
        self._put(INFO, message)

    async def call(self, message: object, timeout: float = 5.0) -> Any:
        """Send ``message`` to ``handle_call`` and wait for the reply.

        Raises :class:`NoProc` at once if the actor is not running, :class:`CallingSelf` at once
        if called from the actor's own handler, :class:`ActorExited` as soon
        as it exits (crash, stop, kill) without replying, and :class:`CallTimeout` when no reply
        came within ``timeout`` seconds (``math.inf`` waits forever); a later reply is dropped.
        Waits for room when the mailbox is full (within the same timeout).
        """
        if self._task is trio.lowlevel.current_task():
            raise CallingSelf(f"{self} called itself with {message!r}; it would never reply")
        caller = Caller()
        if timeout == math.inf:
            return await self._call(message, caller)
        with trio.move_on_after(timeout):
            return await self._call(message, caller)
        raise CallTimeout(f"{self} did not reply within {timeout} s to {message!r}")

    async def _call(self, message: object, caller: Caller) -> Any:
        mailbox = self._mailbox
        while True:
            if mailbox.closed:
                raise NoProc(f"{self} is not running")
            try:
                mailbox.put_nowait((CALL, message, caller))
            except MailboxFull:
                mailbox.dropped -= 1  # a call waits for room; it is not dropped
                await mailbox.wait_room()
            else:
                return await caller._wait()

    async def stop(self, reason: object = Exit.NORMAL, timeout: float = math.inf) -> None:
        """Ask the actor to stop with ``reason`` and wait until it has (OTP ``gen_server:stop``).

        It finishes the message in hand, skips the rest (their callers get
        :class:`ActorExited`) and runs ``terminate(reason)``. Raises :class:`NoProc` if it is not
        running and :class:`CallTimeout` if it has not exited after ``timeout`` seconds.
        """
        if not self.alive:
            raise NoProc(f"{self} is not running")
        self._request_stop(reason)
        with trio.move_on_after(timeout):
            await self.wait_exited()
            return
        raise CallTimeout(f"{self} did not stop within {timeout} s")

    async def wait_exited(self) -> object:
        """Wait until the actor has exited; return its exit reason."""
        if self._exited is None:
            self._exited = trio.Event()
        if self._mailbox.closed:
            await trio.lowlevel.checkpoint()
        else:
            await self._exited.wait()
        return self._reason

    def statistics(self) -> ActorStatistics:
        mailbox = self._mailbox
        return ActorStatistics(
            name=self._name,
            alive=not mailbox.closed,
            mailbox_depth=len(mailbox),
            mailbox_capacity=mailbox.capacity,
            received=mailbox.received,
            handled=self._handled,
            dropped=mailbox.dropped,
            restarts=self._restarts,
        )

    # -- runtime internals -----------------------------------------------------------------------

    def _put(self, kind: int, message: object) -> None:
        mailbox = self._mailbox
        if mailbox.closed:
            raise NoProc(f"{self} is not running")
        try:
            mailbox.put_nowait((kind, message, None))
        except MailboxFull as exc:
            raise MailboxFull(f"{self}: {exc}; {message!r} was not delivered") from None

    def _put_unbounded(self, kind: int, message: object) -> bool:
        """Runtime messages (Down, timers, stop): never refused for lack of room."""
        if self._mailbox.closed:
            return False
        self._mailbox.put_nowait((kind, message, None), bounded=False)
        return True

    def _request_stop(self, reason: object) -> None:
        if self._stop_reason is None and self.alive:
            self._stop_reason = reason
            self._put_unbounded(SYSTEM, None)

    def _registered_as(self, name: str | None) -> None:
        self._name = name

    def _nursery_or_raise(self) -> trio.Nursery:
        if self._nursery is None:
            raise ActorError(f"{self} is not running; it cannot start tasks")
        return self._nursery

    async def _timer(self, scope: trio.CancelScope, delay: float, message: object) -> None:
        with scope:
            await trio.sleep(delay)
            self._put_unbounded(INFO, message)

    def _monitor(self, target: ActorRef) -> MonitorRef:
        monitor = MonitorRef(target)
        if target._add_watcher(monitor, self):
            if self._held is None:
                self._held = []
            self._held.append(monitor)
        else:
            self._put_unbounded(INFO, Down(monitor, target, target._reason))
        return monitor

    def _demonitor(self, monitor: MonitorRef) -> None:
        if self._held is not None and monitor in self._held:
            self._held.remove(monitor)
        monitor.target._remove_watcher(monitor)

    def _add_watcher(self, monitor: MonitorRef, watcher: ActorRef | ExitCallback) -> bool:
        """Register a watcher (an actor to get ``Down``, or a callback); False if already exited."""
        if self._mailbox.closed:
            return False
        if self._watchers is None:
            self._watchers = []
        self._watchers.append((monitor, watcher))
        return True

    def _remove_watcher(self, monitor: MonitorRef) -> None:
        if self._watchers:
            self._watchers = [entry for entry in self._watchers if entry[0] is not monitor]

    def _kill(self) -> None:
        """Cancel the actor where it stands: no ``terminate``; it exits with ``Exit.KILLED``."""
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def _entry(self, actor: Actor) -> Callable[..., Awaitable[None]]:
        """The task function that serves ``actor``: shielded for ``shutdown_on_cancel``."""
        return self._run_shielded if actor.shutdown_on_cancel else self._run

    async def _run(
        self,
        actor: Actor,
        name: str | None,
        *,
        task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``actor`` until it stops, crashes or is killed; a crash is never raised.

        A failed ``init`` raises :class:`StartFailed` out of ``nursery.start``; after a
        successful start every exit is reported through ``exit_reason``, ``wait_exited``,
        monitors and the parent supervisor. Kept to one frame around the loop: it is most of
        what an idle actor costs.
        """
        actor._ref = self
        reason: object = Exit.KILLED  # unless the loop ends by itself or something crashes
        init_error: Exception | None = None
        if name is not None:
            try:
                self._registry.register(name, self)
            except AlreadyRegistered as exc:
                self._finish(exc)
                raise
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await actor.init()
                except Exception as exc:
                    init_error = reason = exc
                    nursery.cancel_scope.cancel()
                else:
                    task_status.started(self)
                    del task_status  # it holds the starting nursery; idle actors stay small
                    self._task = trio.lowlevel.current_task()
                    try:
                        ending = await self._loop(actor)
                    except Exception as exc:
                        ending = exc
                        logger.error("%s crashed", self, exc_info=exc)
                    # Killed in terminate (its shutdown time ran out): ``reason`` stays KILLED.
                    reason = await self._terminate(actor, ending)
                    nursery.cancel_scope.cancel()
        except Exception as exc:  # a task the actor started crashed (inside an ExceptionGroup)
            reason = _unwrap(exc)
            logger.error("%s crashed in a task it started", self, exc_info=exc)
        finally:
            self._finish(reason)
        if init_error is not None:
            raise StartFailed(f"{self} failed to start: {init_error!r}") from init_error

    async def _run_shielded(
        self,
        actor: Actor,
        name: str | None,
        *,
        task_status: trio.TaskStatus[ActorRef] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """:meth:`_run` out of reach of the host's cancellation, which becomes a stop request."""
        failed: StartFailed | AlreadyRegistered | None = None
        async with trio.open_nursery() as outer:
            outer.start_soon(self._stop_when_cancelled)
            with trio.CancelScope(shield=True):
                try:
                    await self._run(actor, name, task_status=task_status)
                except (StartFailed, AlreadyRegistered) as exc:
                    failed = exc  # raised below, outside the nursery: unwrapped, like _run's
            outer.cancel_scope.cancel()
        if failed is not None:
            raise failed

    async def _stop_when_cancelled(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            self._request_stop(Exit.SHUTDOWN)

    async def _loop(self, actor: Actor) -> object:
        # No cached bound methods here: this frame lives as long as the actor, idle or not.
        mailbox = self._mailbox
        result: Any
        while self._stop_reason is None:
            kind, message, caller = await mailbox.get()
            if kind == CALL:
                self._current = caller
                result = await actor.handle_call(message, caller)
                if result is NOREPLY:
                    if caller._done is False:
                        if self._deferred is None:
                            self._deferred = set()
                        caller._deferred_in = self._deferred
                        self._deferred.add(caller)
                elif type(result) is Stop:
                    if result.has_reply:
                        caller.reply(result.reply)
                    self._handled += 1
                    return result.reason
                elif type(result) is Fail:
                    caller.fail(result.error)
                else:
                    caller.reply(result)
                self._current = None
            elif kind == CAST:
                result = await actor.handle_cast(message)
                if type(result) is Stop:
                    self._handled += 1
                    return result.reason
            elif kind == INFO:
                result = await actor.handle_info(message)
                if type(result) is Stop:
                    self._handled += 1
                    return result.reason
            else:
                continue
            self._handled += 1
        return self._stop_reason

    async def _terminate(self, actor: Actor, reason: object) -> object:
        try:
            await actor.terminate(reason)
        except Exception as exc:
            logger.error("%s crashed in terminate(%r)", self, reason, exc_info=exc)
            return exc
        return reason

    def _finish(self, reason: object) -> None:
        """Settle everything the actor owned; synchronous, so it also runs under cancellation."""
        self._reason = reason
        self._nursery = None
        self._task = None
        left = self._mailbox.close()
        if self._current is not None:
            self._current.fail(ActorExited(repr(self), reason))
            self._current = None
        for _, _, caller in left:
            if caller is not None:
                caller.fail(ActorExited(repr(self), reason))
        if self._deferred:
            for caller in list(self._deferred):
                caller.fail(ActorExited(repr(self), reason))
            self._deferred = None
        if self._name is not None:
            self._registry._release(self._name, self)
        if self._held:
            for monitor in self._held:
                monitor.target._remove_watcher(monitor)
            self._held = None
        if self._watchers:
            watchers, self._watchers = self._watchers, None
            for monitor, watcher in watchers:
                if isinstance(watcher, ActorRef):
                    watcher._put_unbounded(INFO, Down(monitor, self, reason))
                else:
                    watcher(self, reason)
        if self._parent is not None:
            self._parent._put_unbounded(INFO, Exited(self, reason))
            self._parent = None
        if self._exited is not None:
            self._exited.set()


def _unwrap(error: BaseException) -> BaseException:
    """The single exception inside (nested) one-member groups, else the group itself."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def spawn(
    nursery: trio.Nursery,
    start: Callable[..., Actor],
    args: tuple[Any, ...],
    *,
    registry: Registry,
    name: str | None = None,
    parent: ActorRef | None = None,
    restarts: int = 0,
) -> ActorRef:
    """Build an actor with ``start(*args)``, run it in ``nursery`` and wait for its ``init``.

    Raises :class:`StartFailed` if building it or its ``init`` raises, and
    :class:`AlreadyRegistered` if ``name`` is taken.
    """
    try:
        actor = start(*args)
    except Exception as exc:
        raise StartFailed(f"building {start!r} failed: {exc!r}") from exc
    return await start_actor(
        nursery, actor, registry=registry, name=name, parent=parent, restarts=restarts
    )


async def start_actor(
    nursery: trio.Nursery,
    actor: Actor,
    *,
    registry: Registry,
    name: str | None = None,
    parent: ActorRef | None = None,
    restarts: int = 0,
) -> ActorRef:
    """Run an already built actor in ``nursery``; returns once its ``init`` has succeeded."""
    ref = new_ref(actor, registry, parent=parent, restarts=restarts)
    started: ActorRef = await nursery.start(ref._entry(actor), actor, name, name=ref._kind)
    return started


def new_ref(
    actor: Actor, registry: Registry, *, parent: ActorRef | None = None, restarts: int = 0
) -> ActorRef:
    """The reference for a new incarnation of ``actor``, of the type the actor asks for."""
    ref_class = actor.ref_class or ActorRef
    ref = ref_class(type(actor).__name__, registry, actor.mailbox_capacity, restarts)
    ref._parent = parent
    return ref


async def shut_down(ref: ActorRef, grace: float) -> object:
    """Stop ``ref`` as a supervisor does: ask it to stop with ``shutdown``, give it ``grace``
    seconds, then cancel it. Returns its exit reason."""
    if grace > 0:
        ref._request_stop(Exit.SHUTDOWN)
        with trio.move_on_after(grace):
            return await ref.wait_exited()
    ref._kill()
    return await ref.wait_exited()
