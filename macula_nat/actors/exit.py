"""Exit reasons, with OTP's rule for which of them are normal."""

from __future__ import annotations

import enum


class Exit(enum.Enum):
    """The exit reasons the runtime itself produces.

    Any other reason is abnormal: an exception that crashed the actor, or whatever object an
    actor stopped with.
    """

    NORMAL = "normal"
    """The actor stopped by choice."""
    SHUTDOWN = "shutdown"
    """Its supervisor (or the host) asked it to stop, and it did."""
    KILLED = "killed"
    """It was cancelled without running ``terminate``: brutal kill or shutdown timeout."""


def is_normal(reason: object) -> bool:
    """True for the reasons after which a ``transient`` child is not restarted."""
    return reason is Exit.NORMAL or reason is Exit.SHUTDOWN
