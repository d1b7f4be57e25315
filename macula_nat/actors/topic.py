"""Topic: publish events to subscribed actors and to plain Trio tasks, never blocking.

A topic is a plain object, not an actor: the component that publishes owns it and hands it to
each incarnation of its actor, so subscriptions survive the publisher's restarts.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeVar

import attrs
import trio

from .errors import MailboxFull
from .monitor import MonitorRef
from .ref import ActorRef

logger = logging.getLogger(__name__)

T = TypeVar("T")


@attrs.frozen
class TopicStatistics:
    actor_subscribers: int
    task_subscribers: int
    published: int
    missed: int
    """Deliveries lost to full mailboxes or full task buffers, over all subscribers."""


@attrs.define(eq=False)
class _ActorSubscriber:
    ref: ActorRef
    monitor: MonitorRef
    missed: int = 0


class Subscription(Generic[T]):
    """A task's view of a topic: an async iterator over the events published since it began.

    At most ``buffer`` events wait; when a new one arrives with the buffer full the oldest is
    dropped (the newest state matters most) and ``missed`` counts it. Iteration ends when the
    topic is closed.
    """

    def __init__(self, buffer: int) -> None:
        if buffer < 1:
            raise ValueError(f"buffer must be at least 1, not {buffer}")
        self._events: deque[T] = deque(maxlen=buffer)
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.missed = 0

    def _push(self, event: T) -> bool:
        full = len(self._events) == self._events.maxlen
        if full:
            self.missed += 1
        self._events.append(event)
        self._lot.unpark_all()
        return not full

    def _close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def receive_nowait(self) -> T:
        """The oldest waiting event; trio.WouldBlock if none (EndOfChannel once closed)."""
        if self._events:
            return self._events.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> T:
        """Wait for the next event; trio.EndOfChannel once the topic is closed and drained."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._events and not self._closed:
            await self._lot.park()
        event = self.receive_nowait()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return event

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class Topic(Generic[T]):
    """Delivers each published event to every subscriber, without ever waiting.

    Actors get the event as an info message (``handle_info``); if a subscriber's mailbox is full
    that delivery is dropped and counted, so a slow subscriber never blocks the publisher. A
    subscriber that exits is removed through a monitor.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._actors: dict[ActorRef, _ActorSubscriber] = {}
        self._tasks: set[Subscription[T]] = set()
        self._published = 0
        self._missed = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Topic {self.name!r}>"

    def subscribe(self, ref: ActorRef) -> None:
        """Deliver future events to ``ref`` until it unsubscribes or exits (idempotent)."""
        if ref in self._actors:
            return
        monitor = MonitorRef(ref)
        if not ref._add_watcher(monitor, self._subscriber_exited):
            return  # already gone: nothing to deliver to
        self._actors[ref] = _ActorSubscriber(ref, monitor)

    def unsubscribe(self, ref: ActorRef) -> None:
        """Stop delivering to ``ref``; no error if it was not subscribed."""
        subscriber = self._actors.pop(ref, None)
        if subscriber is not None:
            ref._remove_watcher(subscriber.monitor)

    def subscribed(self, ref: ActorRef) -> bool:
        return ref in self._actors

    def missed(self, ref: ActorRef) -> int:
        """How many events ``ref`` missed because its mailbox was full."""
        subscriber = self._actors.get(ref)
        return subscriber.missed if subscriber is not None else 0

    @asynccontextmanager
    async def subscription(self, buffer: int = 64) -> AsyncIterator[Subscription[T]]:
        """Receive events in a Trio task for the duration of the block."""
        subscription: Subscription[T] = Subscription(buffer)
        if self._closed:
            subscription._close()
        self._tasks.add(subscription)
        try:
            await trio.lowlevel.checkpoint()
            yield subscription
        finally:
            self._tasks.discard(subscription)
            self._missed += subscription.missed

    def publish(self, event: T) -> None:
        """Deliver ``event`` to every current subscriber; never waits, never raises for them."""
        if self._closed:
            raise RuntimeError(f"{self} is closed")
        self._published += 1
        for subscriber in self._actors.values():
            try:
                subscriber.ref.send(event)
            except MailboxFull:
                subscriber.missed += 1
                self._missed += 1
                logger.warning("%s: %s missed an event (mailbox full)", self, subscriber.ref)
        for subscription in self._tasks:
            subscription._push(event)

    def close(self) -> None:
        """End every task subscription (their iteration stops) and refuse further events."""
        self._closed = True
        for subscription in self._tasks:
            subscription._close()

    def statistics(self) -> TopicStatistics:
        return TopicStatistics(
            actor_subscribers=len(self._actors),
            task_subscribers=len(self._tasks),
            published=self._published,
            missed=self._missed + sum(s.missed for s in self._tasks),
        )

    def _subscriber_exited(self, ref: ActorRef, reason: object) -> None:
        self._actors.pop(ref, None)
