"""The Actor base class (gen_server callbacks) and what its handlers may return."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs
import trio

from .errors import UnexpectedMessage
from .exit import Exit

if TYPE_CHECKING:
    from .caller import Caller
    from .monitor import MonitorRef
    from .ref import ActorRef
    from .registry import Registry

logger = logging.getLogger(__name__)


class _NoReply:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NOREPLY"


NOREPLY: Final = _NoReply()
"""Returned by ``handle_call`` to reply later through the :class:`Caller` (OTP ``noreply``)."""

_NO_REPLY_GIVEN: Final[Any] = _NoReply()


@attrs.frozen
class Stop:
    """Returned by any handler to stop the actor with ``reason`` after it returns.

    From ``handle_call``, ``reply`` (if given) goes to the caller first; without it the caller gets
    :class:`ActorExited`. ``terminate(reason)`` runs next, as in OTP's ``{stop, Reason, ...}``.
    """

    reason: object = Exit.NORMAL
    reply: Any = _NO_REPLY_GIVEN

    @property
    def has_reply(self) -> bool:
        return self.reply is not _NO_REPLY_GIVEN


@attrs.frozen
class Fail:
    """Returned by ``handle_call`` to raise ``error`` in the caller; the actor keeps running."""

    error: BaseException


class Actor:
    """A gen_server: subclass it and override the callbacks you need.

    Construct the instance with its configuration (``__init__`` is synchronous and may not do
    I/O); the runtime then awaits ``init()`` before the actor is considered started. A restart
    builds a fresh instance, so state never leaks from a crashed incarnation into the next.

    Handlers run one message at a time. ``handle_call`` returns the reply (or :data:`NOREPLY`,
    :class:`Fail`, :class:`Stop`); ``handle_cast`` and ``handle_info`` return None or
    :class:`Stop`. An exception escaping any callback crashes the actor: its supervisor sees the
    exception as the exit reason and callers waiting on it get :class:`ActorExited`.
    """

    mailbox_capacity: ClassVar[int] = 1024
    """How many messages may wait in the mailbox; see :mod:`.mailbox` for the overflow policy."""

    shutdown_on_cancel: ClassVar[bool] = False
    """When the host nursery is cancelled, stop gracefully (``terminate`` runs; a supervisor
    stops its children in reverse order, each within its shutdown time) instead of being cancelled
    mid-handler. The stop is then bounded only by the actor's own shutdown work."""

    ref_class: ClassVar[type[ActorRef] | None] = None
    """The reference type handed out for this actor; None means :class:`ActorRef`.
    Supervisors use a subclass that adds their own methods."""

    _ref: ActorRef

    @property
    def ref(self) -> ActorRef:
        """This incarnation's reference (valid from ``init`` on)."""
        return self._ref

    @property
    def registry(self) -> Registry:
        """The registry of the tree this actor runs in."""
        return self._ref.registry

    async def init(self) -> None:
        """Prepare the actor; an exception here fails the start (``StartFailed``)."""

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        """Answer a call. The default crashes, as an unhandled call does in OTP."""
        raise UnexpectedMessage(f"{self._ref} got an unexpected call: {message!r}")

    async def handle_cast(self, message: Any) -> Stop | None:
        """Handle a cast. The default crashes, as an unhandled cast does in OTP."""
        raise UnexpectedMessage(f"{self._ref} got an unexpected cast: {message!r}")

    async def handle_info(self, message: Any) -> Stop | None:
        """Handle any other message (monitor ``Down`` notices, timers). Default: log and drop."""
        logger.warning("%s dropped an unexpected message: %r", self._ref, message)
        return None

    async def terminate(self, reason: object) -> None:
        """Clean up after the loop ends (stop or crash); not called when killed."""

    # -- helpers for use inside the actor ------------------------------------------------------

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        """Run a task that lives and dies with this incarnation; if it raises, the actor crashes."""
        self._ref._nursery_or_raise().start_soon(fn, *args)

    async def start(self, fn: Callable[..., Awaitable[object]], *args: object) -> Any:
        """Like :meth:`start_soon`, waiting for the task's ``task_status.started()`` value."""
        return await self._ref._nursery_or_raise().start(fn, *args)

    def send_after(self, delay: float, message: object) -> trio.CancelScope:
        """Deliver ``message`` to ``handle_info`` after ``delay`` seconds; cancel the scope to stop
        the timer. Timer messages are not subject to the mailbox bound (one per timer)."""
        scope = trio.CancelScope()
        self.start_soon(self._ref._timer, scope, delay, message)
        return scope

    def monitor(self, target: ActorRef) -> MonitorRef:
        """Get a :class:`Down` in ``handle_info`` when ``target`` exits."""
        return self._ref._monitor(target)

    def demonitor(self, monitor: MonitorRef) -> None:
        """Cancel a monitor; no ``Down`` arrives for it afterwards (unless already queued)."""
        self._ref._demonitor(monitor)
