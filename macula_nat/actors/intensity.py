"""Restart intensity: how many restarts a supervisor tolerates per period (pure; time passed in)."""

from __future__ import annotations

from collections import deque

import attrs


@attrs.define
class RestartIntensity:
    """OTP's rule: more than ``intensity`` restarts within ``period`` seconds is too many.

    A restart at time ``t`` stays counted while ``now - t < period``.
    """

    intensity: int = attrs.field(validator=attrs.validators.ge(0))
    period: float = attrs.field(validator=attrs.validators.gt(0))
    _history: deque[tuple[float, object, object]] = attrs.field(factory=deque, init=False)

    def record(self, now: float, child: object, reason: object) -> bool:
        """Count a restart of ``child`` after ``reason``; False once the limit is exceeded."""
        self._history.append((now, child, reason))
        return len(self.history(now)) <= self.intensity

    def history(self, now: float) -> tuple[tuple[float, object, object], ...]:
        """The restarts still counted at ``now``, oldest first, as ``(time, child, reason)``."""
        history = self._history
        while history and now - history[0][0] >= self.period:
            history.popleft()
        return tuple(history)
