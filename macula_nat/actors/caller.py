"""The reply side of a call: one waiting task, one reply, late replies dropped."""

from __future__ import annotations

from typing import Any

import outcome
import trio


class Caller:
    """Handed to ``handle_call``; the reply goes through it, now or later.

    Returning from ``handle_call`` replies for you. Return :data:`NOREPLY` to keep the caller
    waiting and call :meth:`reply` (or :meth:`fail`) later, from any task: OTP's
    ``{noreply, State}`` followed by ``gen_server:reply(From, Reply)``.
    """

    __slots__ = ("_deferred_in", "_done", "_result", "_task")

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None
        self._result: outcome.Outcome[Any] | None = None
        self._done = False
        self._deferred_in: set[Caller] | None = None

    @property
    def waiting(self) -> bool:
        """False once replied to, or once the caller gave up (timeout or cancellation)."""
        return not self._done

    def reply(self, value: object) -> bool:
        """Send the reply; False if it came too late (already replied, or the caller left)."""
        return self._settle(outcome.Value(value))

    def fail(self, error: BaseException) -> bool:
        """Raise ``error`` in the caller instead of replying; the actor itself keeps running."""
        return self._settle(outcome.Error(error))

    def _settle(self, result: outcome.Outcome[Any]) -> bool:
        if self._done:
            return False
        self._done = True
        if self._deferred_in is not None:
            self._deferred_in.discard(self)
            self._deferred_in = None
        task = self._task
        if task is None:
            self._result = result
        else:
            self._task = None
            trio.lowlevel.reschedule(task, result)
        return True

    async def _wait(self) -> Any:
        if self._done:
            await trio.lowlevel.checkpoint()
            assert self._result is not None
            return self._result.unwrap()
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            # The caller leaves (timeout or cancellation): any later reply is dropped.
            self._task = None
            self._done = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)
