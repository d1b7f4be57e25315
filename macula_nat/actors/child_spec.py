"""Child specifications: what a supervisor starts, and how it treats each child's exit."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final

import attrs

from .exit import is_normal

if TYPE_CHECKING:
    from .actor import Actor

BRUTAL_KILL: Final = 0.0
"""Shutdown time that cancels the child at once, without ``terminate`` (OTP ``brutal_kill``)."""

INFINITY: Final = math.inf
"""Shutdown time that waits for the child however long it takes (OTP ``infinity``)."""


class Restart(enum.Enum):
    PERMANENT = "permanent"
    """Always restarted."""
    TRANSIENT = "transient"
    """Restarted only after an abnormal exit (not ``normal`` or ``shutdown``)."""
    TEMPORARY = "temporary"
    """Never restarted, even when a sibling's restart took it down; then it is removed."""

    def restarts_after(self, reason: object) -> bool:
        if self is Restart.PERMANENT:
            return True
        if self is Restart.TRANSIENT:
            return not is_normal(reason)
        return False


class ChildType(enum.Enum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


def _check_shutdown(_: object, __: object, value: float | None) -> None:
    if value is not None and not value >= 0:
        raise ValueError(f"shutdown must be >= 0 seconds (or INFINITY), not {value!r}")


@attrs.frozen
class ChildSpec:
    """How to start one child and what to do when it exits.

    ``start(*args)`` builds a fresh :class:`Actor` for every (re)start; its ``init()`` is awaited
    before the supervisor moves to the next child. ``shutdown`` is the grace time in seconds
    between asking the child to stop and cancelling it; None means 5 s for workers and INFINITY
    for supervisors, as in OTP. ``name`` registers each incarnation under that name.
    """

    id: Hashable
    start: Callable[..., Actor]
    args: tuple[Any, ...] = ()
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = attrs.field(default=None, validator=_check_shutdown)
    type: ChildType = ChildType.WORKER
    name: str | None = None

    @property
    def shutdown_time(self) -> float:
        if self.shutdown is not None:
            return self.shutdown
        return INFINITY if self.type is ChildType.SUPERVISOR else 5.0
