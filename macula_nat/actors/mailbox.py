"""An actor's mailbox: buffered, bounded, one reader.

Overflow policy (what a user can rely on):

* ``cast`` and ``send`` never wait. When the mailbox holds ``capacity`` messages they raise
  :class:`MailboxFull` and the message stays with the sender. Since nothing waits, two actors that
  cast to each other can never deadlock.
* ``call`` waits for room (within its timeout): a caller waits for the reply anyway.
* Runtime messages (monitor ``Down`` notices, stop requests) bypass the bound: at most one exists
  per monitor or stop request, so they cannot grow without limit, and losing one would break the
  runtime's promises.

A reader with a backlog takes up to :data:`BURST` envelopes per scheduling turn: every take
checks for cancellation, but only every BURST-th yields to the scheduler. A turn costs more
than handling a message, so an actor behind on its mail catches up several times faster, and
no actor holds the scheduler for more than BURST messages.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable
from typing import Any, Final

import outcome
import trio

from .errors import MailboxFull

CALL: Final = 0
CAST: Final = 1
INFO: Final = 2
SYSTEM: Final = 3

BURST: Final = 16
"""Envelopes a reader takes from a backlog between two yields to the scheduler."""

Envelope = tuple[int, Any, Any]
"""``(kind, message, caller)``; ``caller`` is a :class:`Caller` for calls, else None."""


class Mailbox:
    """The queue behind one actor; the actor's loop is its only reader."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_queue",
        "_reader",
        "_room",
        "_unyielded",
        "dropped",
        "received",
    )

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._queue: deque[Envelope] | None = None  # made on first backlog: idle actors stay small
        self._reader: trio.lowlevel.Task | None = None
        self._room: trio.lowlevel.ParkingLot | None = None
        self._closed = False
        self._unyielded = 0  # envelopes taken from a backlog since the last yield
        self.received = 0
        self.dropped = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    def put_nowait(self, envelope: Envelope, *, bounded: bool = True) -> None:
        """Deliver at once or raise :class:`MailboxFull`; the caller checks ``closed`` first."""
        reader = self._reader
        if reader is not None:
            self._reader = None
            self.received += 1
            trio.lowlevel.reschedule(reader, outcome.Value(envelope))
            return
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        elif bounded and len(queue) >= self._capacity:
            self.dropped += 1
            raise MailboxFull(f"mailbox full ({self._capacity} messages)")
        self.received += 1
        queue.append(envelope)

    async def wait_room(self) -> None:
        """Wait until a bounded put would succeed (or the mailbox closes)."""
        while not self._closed and self._queue is not None and len(self._queue) >= self._capacity:
            if self._room is None:
                self._room = trio.lowlevel.ParkingLot()
            await self._room.park()

    def get(self) -> Awaitable[Envelope]:
        """Await the next envelope: a cancellation point always, a yield to the scheduler
        unless it comes from a backlog and fewer than :data:`BURST` came since the last.

        Synchronous on purpose: an idle reader waits in trio's own frame, with no frame of ours
        kept alive for it (idle actors are mostly frames).
        """
        if self._queue:
            return self._take()
        self._unyielded = 0
        self._reader = trio.lowlevel.current_task()
        return trio.lowlevel.wait_task_rescheduled(self._abort_get)  # noqa: ASYNC105 (awaited by get's caller)

    async def _take(self) -> Envelope:
        await trio.lowlevel.checkpoint_if_cancelled()  # raises, or returns without yielding
        assert self._queue
        envelope = self._queue.popleft()
        if self._room:
            self._room.unpark()
        self._unyielded += 1
        if self._unyielded >= BURST:
            self._unyielded = 0
            await trio.lowlevel.cancel_shielded_checkpoint()
        return envelope

    def _abort_get(self, _: object) -> trio.lowlevel.Abort:
        self._reader = None
        return trio.lowlevel.Abort.SUCCEEDED

    def close(self) -> list[Envelope]:
        """Refuse further messages; return what was left unread."""
        self._closed = True
        left = list(self._queue) if self._queue else []
        self._queue = None
        if self._room is not None:
            self._room.unpark_all()
        return left
