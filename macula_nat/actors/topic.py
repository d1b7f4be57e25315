"""Topic: publish events to subscribed actors and to plain Trio tasks, never blocking.

A topic is a plain object, not an actor: the component that publishes owns it and hands it to
each incarnation of its actor, so subscriptions survive the publisher's restarts. A subscriber
given by name (``registry.ref("name")``) gets each event at whichever actor holds the name when
it is published, so its subscription survives the subscriber's restarts too.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic, TypeAlias, TypeVar

import attrs
import trio

from .errors import MailboxFull
from .monitor import MonitorRef
from .ref import ActorRef
from .registry import NamedRef, Registry

logger = logging.getLogger(__name__)

T = TypeVar("T")

DROP_LOG_INTERVAL = 10.0
"""Seconds between two warnings about one subscriber's dropped events (the default)."""

_Name: TypeAlias = tuple[Registry, str]


@attrs.frozen
class TopicStatistics:
    actor_subscribers: int
    task_subscribers: int
    published: int
    missed: int
    """Deliveries lost to full mailboxes or full task buffers (or, for a subscriber by name,
    while nobody held the name), over all subscribers."""
    named_subscribers: int = 0


@attrs.define(eq=False)
class _Drops:
    """What one actor subscriber missed, and what of it is not logged yet."""

    missed: int = 0
    unlogged: int = 0
    logged_at: float | None = None


@attrs.define(eq=False)
class _ActorSubscriber:
    ref: ActorRef
    monitor: MonitorRef
    drops: _Drops = attrs.Factory(_Drops)


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
    subscriber that exits is removed through a monitor. Drops are logged as one WARNING per
    subscriber per ``drop_log_interval`` seconds, with the count since the last one; the count of
    a subscriber that leaves is logged as it leaves.
    """

    def __init__(self, name: str, *, drop_log_interval: float = DROP_LOG_INTERVAL) -> None:
        if drop_log_interval <= 0:
            raise ValueError(f"drop_log_interval must be positive, not {drop_log_interval!r}")
        self.name = name
        self.drop_log_interval = drop_log_interval
        self._actors: dict[ActorRef, _ActorSubscriber] = {}
        self._names: dict[_Name, _Drops] = {}
        self._tasks: set[Subscription[T]] = set()
        self._published = 0
        self._missed = 0
        self._closed = False

    def __repr__(self) -> str:
        return f"<Topic {self.name!r}>"

    def subscribe(self, ref: ActorRef | NamedRef) -> None:
        """Deliver future events to ``ref`` until it unsubscribes or exits (idempotent).

        An :class:`ActorRef` is one incarnation: it is removed when it exits. A
        :class:`NamedRef` stays subscribed until :meth:`unsubscribe`; each event goes to the
        actor holding the name at that moment (as OTP's sends to a registered name), and an
        event published while nobody holds it is missed and counted.
        """
        if isinstance(ref, NamedRef):
            self._names.setdefault((ref.registry, ref.name), _Drops())
            return
        if not isinstance(ref, ActorRef):
            raise TypeError(f"subscribe takes an ActorRef or a NamedRef, not {ref!r}")
        if ref in self._actors:
            return
        monitor = MonitorRef(ref)
        if not ref._add_watcher(monitor, self._subscriber_exited):
            return  # already gone: nothing to deliver to
        self._actors[ref] = _ActorSubscriber(ref, monitor)

    def unsubscribe(self, ref: ActorRef | NamedRef) -> None:
        """Stop delivering to ``ref``; no error if it was not subscribed."""
        if isinstance(ref, NamedRef):
            drops = self._names.pop((ref.registry, ref.name), None)
            if drops is not None:
                self._log_unlogged(ref, drops)
            return
        subscriber = self._actors.pop(ref, None)
        if subscriber is not None:
            ref._remove_watcher(subscriber.monitor)
            self._log_unlogged(ref, subscriber.drops)

    def subscribed(self, ref: ActorRef | NamedRef) -> bool:
        if isinstance(ref, NamedRef):
            return (ref.registry, ref.name) in self._names
        return ref in self._actors

    def missed(self, ref: ActorRef | NamedRef) -> int:
        """How many events ``ref`` missed: its mailbox was full (or nobody held its name)."""
        if isinstance(ref, NamedRef):
            drops = self._names.get((ref.registry, ref.name))
        else:
            subscriber = self._actors.get(ref)
            drops = subscriber.drops if subscriber is not None else None
        return drops.missed if drops is not None else 0

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
                self._dropped(subscriber.ref, subscriber.drops, "mailbox full")
        for (registry, name), drops in self._names.items():
            holder = registry.whereis(name)
            if holder is None:
                self._dropped(registry.ref(name), drops, "nobody holds the name")
                continue
            try:
                holder.send(event)
            except MailboxFull:
                self._dropped(registry.ref(name), drops, "mailbox full")
        for subscription in self._tasks:
            subscription._push(event)

    def _dropped(self, ref: ActorRef | NamedRef, drops: _Drops, why: str) -> None:
        """Count a missed delivery; warn at most once per ``drop_log_interval``."""
        drops.missed += 1
        drops.unlogged += 1
        self._missed += 1
        now = trio.current_time()
        if drops.logged_at is None or now - drops.logged_at >= self.drop_log_interval:
            since = "" if drops.logged_at is None else f" in the last {now - drops.logged_at:.0f} s"
            logger.warning(
                "%s: dropped %d events for %s%s (%s)", self, drops.unlogged, ref, since, why
            )
            drops.unlogged = 0
            drops.logged_at = now

    def _log_unlogged(self, ref: ActorRef | NamedRef, drops: _Drops) -> None:
        if drops.unlogged:
            logger.warning("%s: dropped %d events for %s before it left", self, drops.unlogged, ref)
            drops.unlogged = 0

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
            named_subscribers=len(self._names),
        )

    def _subscriber_exited(self, ref: ActorRef, reason: object) -> None:
        subscriber = self._actors.pop(ref, None)
        if subscriber is not None:
            self._log_unlogged(ref, subscriber.drops)
