"""One relayed session as an actor: its timeouts, its notices, and its end.

The session's state (members, byte bucket, counters) lives in the relay's core, where the
forwarding path reads it without a mailbox round trip; this actor owns the session's life. It
ends the session after ``session_timeout`` seconds, or ``idle_timeout`` seconds without a
forwarded datagram, tells the target of the session again until it acknowledges, and ends the
session (``session_failed``) if it crashes. It is a temporary child of the relay's session
supervisor: a crash costs this session only, and it is not restarted (the peers were told and
may ask again).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import trio

from macula_nat.actors import Actor, Exit, Stop

from .frames import Reason

if TYPE_CHECKING:
    from .core import RelayedSession
    from .node import RelayNode

__all__ = ["SESSION_OVER", "SessionActor"]

logger = logging.getLogger(__name__)


class _Tick:
    def __repr__(self) -> str:
        return "TICK"


class _Over:
    def __repr__(self) -> str:
        return "SESSION_OVER"


_TICK: Final = _Tick()
SESSION_OVER: Final = _Over()
"""Cast by the relay to a session's actor when the session ended elsewhere (a CLOSE, expiry,
``disable``): the actor stops."""


class SessionActor(Actor):
    """The life of session ``session_id`` of ``relay``."""

    mailbox_capacity = 8

    def __init__(self, relay: RelayNode, session_id: int) -> None:
        self._relay = relay
        self._id = session_id
        self._session: RelayedSession | None = None
        self._next_notice = 0.0

    def __repr__(self) -> str:
        return f"<SessionActor {self._id}>"

    async def init(self) -> None:
        session = self._relay._core.session(self._id)
        if session is None:
            raise LookupError(f"relay session {self._id} ended before its actor started")
        session.actor = self.ref
        self._session = session
        self._relay._actors[self.ref] = self._id
        now = trio.current_time()
        self._next_notice = now + self._relay.config.notice_interval
        self._arm(now)

    def _arm(self, now: float) -> None:
        """One tick at the next deadline, from the relay's timers (no task of its own)."""
        session = self._session
        assert session is not None
        deadline = min(session.deadline, session.last_active + session.idle_timeout)
        if self._notices_due():
            deadline = min(deadline, self._next_notice)
        self._relay._timers.send_at(max(now, deadline), self.ref, _TICK)

    def _notices_due(self) -> bool:
        session = self._session
        assert session is not None
        return not session.confirmed and session.notices < self._relay.config.notice_attempts

    async def handle_info(self, message: Any) -> Stop | None:
        if message is _TICK:
            return await self._tick()
        return await super().handle_info(message)

    async def handle_cast(self, message: Any) -> Stop | None:
        if message is SESSION_OVER:
            return Stop(Exit.NORMAL)
        return await super().handle_cast(message)

    async def terminate(self, reason: object) -> None:
        await self._relay._session_actor_exited(self.ref, reason)

    async def _tick(self) -> Stop | None:
        session = self._session
        assert session is not None
        if self._relay._core.session(self._id) is not session:
            return Stop(Exit.NORMAL)  # ended elsewhere; SESSION_OVER is on its way
        now = trio.current_time()
        reason: Reason | None = None
        if now >= session.deadline:
            reason = Reason.SESSION_TIMEOUT
        elif now >= session.last_active + session.idle_timeout:
            reason = Reason.IDLE_TIMEOUT
        if reason is not None:
            logger.debug("relay session %d ends: %s", self._id, reason.label)
            await self._relay._end_session(self._id, reason)
            return Stop(Exit.NORMAL)
        if self._notices_due() and now >= self._next_notice:
            self._next_notice = now + self._relay.config.notice_interval
            await self._relay._flush(self._relay._core.renotice(self._id))
        self._arm(now)
        return None
