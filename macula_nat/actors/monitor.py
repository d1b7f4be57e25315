"""Monitors: a one-shot notice, delivered to the watcher, when the target exits."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .ref import ActorRef

_ids = itertools.count(1)


@attrs.frozen(eq=False)
class MonitorRef:
    """Names one monitor; pass it to ``demonitor`` to cancel it. Compared by identity."""

    target: ActorRef
    id: int = attrs.field(factory=lambda: next(_ids))


@attrs.frozen
class Down:
    """Info message sent to a watcher when the monitored actor exits (OTP ``'DOWN'``).

    ``reason`` is the target's exit reason; monitoring an actor that already exited delivers a
    ``Down`` at once with the reason it exited with.
    """

    monitor: MonitorRef
    target: ActorRef
    reason: object


@attrs.frozen
class Exited:
    """Info message a supervisor gets when one of its children exits (OTP's ``'EXIT'`` signal
    to a parent that traps exits): the one link the runtime keeps, child to parent."""

    ref: ActorRef
    reason: object
