"""The simulated internet: the public network, the clock-driven delivery task and the dice.

One seeded ``random.Random`` decides everything random: each host and NAT box gets its own
generator drawn from it when created, and link loss and jitter draw from it as each hop is
scheduled. So, under ``trio.testing.MockClock``, the same seed and the same sequence of calls give
the same run, datagram for datagram. (Trio may run tasks woken at the same instant in either
order; the simulation's choices do not depend on that, but the calls those tasks make do.)
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.delivery_queue import DeliveryQueue
from macula_nat.net.sim.front import NetworkFront
from macula_nat.net.sim.host import SimHost
from macula_nat.net.sim.interface import Interface
from macula_nat.net.sim.network import Network, private_subnet
from macula_nat.net.sim.streams import StreamTable

logger = logging.getLogger(__name__)


@attrs.frozen
class InternetStatistics:
    """Datagram counters of the whole simulation (NAT drops are in each box's statistics)."""

    sent: int
    delivered: int
    lost: int
    """Dropped by a link's loss rate."""
    unroutable: int
    """No address on the way held the destination, or the TTL ran out."""
    no_listener: int
    """Reached the destination host (or NAT box), where nothing was bound to the port."""
    overflowed: int
    """Dropped because the receiving endpoint's buffer was full."""
    in_flight: int


@attrs.define
class _Counters:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    unroutable: int = 0
    no_listener: int = 0
    overflowed: int = 0


class Internet(NetworkFront):
    """The public network plus the machinery that moves datagrams; use :func:`open_internet`."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._queue = DeliveryQueue()
        self._counters = _Counters()
        self._names: dict[str, itertools.count[int]] = {}
        self._subnets = itertools.count(1)
        self._hosts: list[SimHost] = []
        self._public = Network(self, "internet")
        self._streams = StreamTable(random.Random(f"streams {seed}"))
        """Its own generator: the datagrams' draws stay what they were before streams."""

    @property
    def public(self) -> Network:
        """The public internet, where every address reaches every other one."""
        return self._public

    def _front_network(self) -> Network:
        return self._public

    def statistics(self) -> InternetStatistics:
        counters = self._counters
        return InternetStatistics(
            sent=counters.sent,
            delivered=counters.delivered,
            lost=counters.lost,
            unroutable=counters.unroutable,
            no_listener=counters.no_listener,
            overflowed=counters.overflowed,
            in_flight=len(self._queue),
        )

    def _derive_rng(self) -> random.Random:
        return random.Random(self._rng.getrandbits(64))

    def _next_name(self, kind: str) -> str:
        return f"{kind}{next(self._names.setdefault(kind, itertools.count(1)))}"

    def _next_subnet(self) -> ipaddress.IPv4Network:
        return private_subnet(next(self._subnets))

    def _carry(self, packet: Datagram, sender: Interface, receiver: Interface) -> None:
        """Schedule ``packet``'s arrival at ``receiver``: out over one link, in over the other."""
        out_delay = sender.link.sample(self._rng)
        in_delay = None if out_delay is None else receiver.link.sample(self._rng)
        if out_delay is None or in_delay is None:
            self._counters.lost += 1
            logger.debug("lost %s -> %s", packet.source, packet.destination)
            return
        arrival = trio.current_time() + out_delay + in_delay
        self._queue.call_at(arrival, receiver.owner._packet_arrived, receiver, packet)

    def _close(self) -> None:
        for host in self._hosts:
            host._close()

    def _count_sent(self) -> None:
        self._counters.sent += 1

    def _count_delivered(self) -> None:
        self._counters.delivered += 1

    def _count_unroutable(self) -> None:
        self._counters.unroutable += 1

    def _count_no_listener(self) -> None:
        self._counters.no_listener += 1

    def _count_overflowed(self) -> None:
        self._counters.overflowed += 1


@asynccontextmanager
async def open_internet(*, seed: int = 0) -> AsyncIterator[Internet]:
    """Run a simulated internet for the duration of the block.

    Its delivery task lives in a nursery of its own; leaving the block cancels it and closes
    every endpoint bound on it.
    """
    internet = Internet(seed)
    async with trio.open_nursery() as nursery:
        await nursery.start(internet._queue.run)
        try:
            yield internet
        finally:
            internet._close()
            nursery.cancel_scope.cancel()
