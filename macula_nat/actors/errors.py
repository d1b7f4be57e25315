"""Errors raised by the actor runtime; every one names what went wrong and with whom."""

from __future__ import annotations


class ActorError(Exception):
    """Base class of the runtime's errors."""


class NoProc(ActorError):
    """The target actor is not running (never started, or already exited).

    The Erlang equivalent is ``noproc``: raised at once, never after a wait.
    """


class ActorExited(ActorError):
    """The actor exited before replying to a call.

    ``reason`` is its exit reason: an :class:`~macula_nat.actors.Exit` or, after a crash, the
    exception that crashed it (also attached as ``__cause__``).
    """

    def __init__(self, target: str, reason: object) -> None:
        super().__init__(f"{target} exited before replying: {reason!r}")
        self.target = target
        self.reason = reason
        if isinstance(reason, BaseException):
            self.__cause__ = reason


class CallTimeout(ActorError, TimeoutError):
    """No reply arrived within the call's timeout; a later reply is dropped."""


class CallingSelf(ActorError):
    """An actor called itself from its own handler: it would wait for a reply only it can give.

    Raised at once, as OTP's ``gen_server:call`` exits with ``calling_self``. A task the actor
    started (``start_soon``) may call it: that task is not the one serving the mailbox.
    """


class MailboxFull(ActorError):
    """A cast or info message found the target's mailbox at capacity; it was not delivered."""


class AlreadyRegistered(ActorError):
    """The name is taken by another running actor of the same tree."""


class StartFailed(ActorError):
    """An actor's ``init`` raised; the exception is the ``__cause__``."""


class UnexpectedMessage(ActorError):
    """A handler received a message it does not handle (crashes the actor, as in OTP)."""


class NoSuchChild(ActorError):
    """A supervisor has no child with that id (OTP: ``not_found``)."""


class ChildRunning(ActorError):
    """The operation needs a stopped child, but the child is running (OTP: ``running``)."""


class MaxChildren(ActorError):
    """A dynamic supervisor is at its ``max_children`` limit."""


class RestartIntensityExceeded(ActorError):
    """A supervisor restarted children more often than its intensity allows and gave up.

    ``history`` holds the restarts that were counted, oldest first, as
    ``(time, child_id, reason)`` tuples; the supervisor stopped every child and exited with this
    error as its reason, so its own supervisor sees it (escalation).
    """

    def __init__(self, supervisor: str, history: tuple[tuple[float, object, object], ...]) -> None:
        restarts = ", ".join(f"{child!r}: {reason!r}" for _, child, reason in history)
        super().__init__(
            f"{supervisor} reached its maximum restart intensity "
            f"({len(history)} restarts: {restarts})"
        )
        self.supervisor = supervisor
        self.history = history
