"""Errors of the relay and its clients; each names what went wrong and why."""

from __future__ import annotations

from .frames import Reason

__all__ = ["RegistrationFailed", "RelayError", "RelayRefused", "RelayTimeout", "SessionClosed"]


class RelayError(Exception):
    """Base class of the relay's errors."""


class RelayRefused(RelayError):
    """The relay refused a session or registration; ``reason`` says why, e.g.
    ``max_sessions_reached``."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"relay refused: {reason.label}{f' ({detail})' if detail else ''}")
        self.reason = reason


class RelayTimeout(RelayError, TimeoutError):
    """The relay did not answer in time."""


class RegistrationFailed(RelayError):
    """A node could not register with its relay (no answer, or refused: see ``__cause__``)."""


class SessionClosed(RelayError):
    """The relay session ended; ``reason`` says why (``normal`` when a peer closed it)."""

    def __init__(self, session: int, reason: Reason) -> None:
        super().__init__(f"relay session {session} closed: {reason.label}")
        self.session = session
        self.reason = reason
