"""The observer: the STUN server public nodes run, as an actor.

With one address it answers Binding requests with the requester's reflexive address. With an
alternate address (a second IP and a second port) it binds all four combinations and is a full
RFC 5780 server: it honours CHANGE-REQUEST and reports OTHER-ADDRESS, so clients can classify
both mapping and filtering. Every decision about a datagram is made by the sans-IO
:func:`macula_nat.nat.binding.answer` (its docstring holds the RFC choices); this actor moves the
bytes, applies the per-source rate limit and counts outcomes.

One task per socket serves datagrams straight from the socket, not through the mailbox: the
mailbox handles only calls (statistics, addresses), so a flood cannot delay them behind packets,
and the packet path costs no mailbox round trip.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import attrs
import trio

from macula_nat.actors import Actor, ActorRef, Caller, Registry, open_actor
from macula_nat.nat.binding import (
    DEFAULT_MAX_AMPLIFICATION,
    ObserverAddresses,
    Outcome,
    answer,
)
from macula_nat.nat.rate_limit import DEFAULT_BURST, DEFAULT_RATE, TokenBuckets
from macula_nat.net.address import Address, is_unspecified, normalise_address, source_prefix
from macula_nat.net.endpoint import UdpEndpoint, UdpStack
from macula_nat.wire import stun

__all__ = [
    "DEFAULT_BURST",
    "DEFAULT_MAX_SOURCES",
    "DEFAULT_RATE",
    "GetObserverAddresses",
    "GetObserverStatistics",
    "Observer",
    "ObserverRef",
    "ObserverStatistics",
    "SocketStatistics",
    "open_observer",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_SOURCES: Final = 16_384
"""Sources the rate limit remembers (about 200 bytes each); the least recently seen go first."""

_BIND_ATTEMPTS: Final = 8
"""Tries at finding free ports for the four sockets when ports are left to the system (port 0):
a port free on the first IP may be taken on the second."""


@attrs.frozen
class GetObserverStatistics:
    """Call message; the reply is an :class:`ObserverStatistics`."""


@attrs.frozen
class GetObserverAddresses:
    """Call message; the reply is the bound :class:`~macula_nat.nat.binding.ObserverAddresses`."""


@attrs.frozen
class SocketStatistics:
    """Datagrams one observer socket received and sent (sent includes CHANGE-REQUEST answers
    for requests that reached another socket)."""

    address: Address
    received: int
    sent: int


@attrs.frozen
class ObserverStatistics:
    """What the observer has done since it started.

    Every datagram ends in exactly one of ``rate_limited``, ``malformed``, ``not_requests`` or
    ``requests``; every request in one of ``answered``, ``bad_requests``,
    ``unknown_attribute_errors`` or ``amplification_refused``. ``responses`` counts datagrams
    sent (``send_failures`` were refused by the network stack).
    """

    datagrams: int
    rate_limited: int
    """Dropped unread: their source had spent its rate-limit budget."""
    malformed: int
    not_requests: int
    """Well-formed indications and responses, dropped."""
    requests: int
    answered: int
    """Binding success responses."""
    bad_requests: int
    """400 responses (other methods, PADDING with RESPONSE-PORT, RESPONSE-PORT 0)."""
    unknown_attribute_errors: int
    """420 responses (unknown comprehension-required attributes, or CHANGE-REQUEST asking for a
    change an observer without an alternate address cannot make)."""
    amplification_refused: int
    """Requests left unanswered because no answer fitted the amplification bound."""
    trimmed: int
    """Responses sent without some optional attributes to fit the amplification bound."""
    responses: int
    send_failures: int
    sources: int
    """Sources the rate limit currently remembers."""
    source_evictions: int
    sockets: tuple[SocketStatistics, ...]


@attrs.define
class _Counters:
    datagrams: int = 0
    rate_limited: int = 0
    malformed: int = 0
    not_requests: int = 0
    requests: int = 0
    answered: int = 0
    bad_requests: int = 0
    unknown_attribute_errors: int = 0
    amplification_refused: int = 0
    trimmed: int = 0
    responses: int = 0
    send_failures: int = 0


@attrs.define
class _SocketCounters:
    received: int = 0
    sent: int = 0


class ObserverRef(ActorRef):
    """An :class:`ActorRef` to an :class:`Observer`, with its calls as methods."""

    __slots__ = ()

    async def observer_statistics(self) -> ObserverStatistics:
        """A snapshot of the observer's counters (``statistics()`` is the actor's mailbox)."""
        result: ObserverStatistics = await self.call(GetObserverStatistics())
        return result

    async def addresses(self) -> ObserverAddresses:
        """The addresses the observer's sockets are bound to (ports resolved if 0 was given)."""
        result: ObserverAddresses = await self.call(GetObserverAddresses())
        return result


def _format(address: Address) -> str:
    ip, port = address
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _check_config(listen: Address, alternate: Address | None) -> None:
    if alternate is None:
        return
    (ip1, port1), (ip2, port2) = listen, alternate
    if is_unspecified(ip1) or is_unspecified(ip2):
        raise ValueError("an observer with an alternate address needs concrete IPs, not wildcards")
    if ip1 == ip2:
        raise ValueError(f"alternate {alternate} needs an IP other than {ip1}")
    if port1 != 0 and port1 == port2:
        raise ValueError(f"alternate {alternate} needs a port other than {port1}")
    if (":" in ip1) != (":" in ip2):
        raise ValueError(f"listen {listen} and alternate {alternate} differ in IP version")


class Observer(Actor):
    """A STUN server (Binding only) on ``listen``, and RFC 5780's four sockets with ``alternate``.

    ``listen`` is ``IP1:P1`` and ``alternate`` ``IP2:P2``: a different IP and a different port
    (both ports may be 0 to let the system choose). ``rate`` and ``burst`` set the token bucket
    each source IP (IPv6: each /64) answers from; ``max_sources`` bounds how many buckets are
    kept. ``max_amplification`` bounds response wire bytes per request wire byte. ``software``,
    if given, is sent as SOFTWARE. Use :func:`open_observer` (or a supervisor) to run it; calls
    go through :class:`ObserverRef`.
    """

    ref_class = ObserverRef

    def __init__(
        self,
        stack: UdpStack,
        listen: Address,
        alternate: Address | None = None,
        *,
        rate: float = DEFAULT_RATE,
        burst: float = DEFAULT_BURST,
        max_sources: int = DEFAULT_MAX_SOURCES,
        max_amplification: float = DEFAULT_MAX_AMPLIFICATION,
        software: str | None = None,
    ) -> None:
        self._stack = stack
        self._listen = normalise_address(listen)
        self._alternate = None if alternate is None else normalise_address(alternate)
        _check_config(self._listen, self._alternate)
        if not 1.0 <= max_amplification < float("inf"):
            raise ValueError(
                f"max_amplification must be a finite factor >= 1, not {max_amplification}"
            )
        if software is not None and len(software.encode("utf-8")) > stun.MAX_TEXT_SIZE:
            raise ValueError(f"SOFTWARE must be at most {stun.MAX_TEXT_SIZE} bytes of UTF-8")
        self._buckets = TokenBuckets(rate, burst, max_sources)
        self._max_amplification = float(max_amplification)
        self._software = software
        self._counters = _Counters()
        self._endpoints: dict[Address, UdpEndpoint] = {}
        self._socket_counters: dict[Address, _SocketCounters] = {}
        self._addresses: ObserverAddresses | None = None

    async def init(self) -> None:
        endpoints = await _bind_sockets(self._stack, self._listen, self._alternate)
        # Owned from here on: closed when this incarnation ends, whichever way it ends.
        self._endpoints = {endpoint.local_address: endpoint for endpoint in endpoints}
        self.start_soon(self._close_sockets_on_exit)
        alternate = endpoints[-1].local_address if self._alternate is not None else None
        self._addresses = ObserverAddresses(endpoints[0].local_address, alternate)
        for endpoint in endpoints:
            self._socket_counters[endpoint.local_address] = _SocketCounters()
        for endpoint in endpoints:
            self.start_soon(self._serve, endpoint)
        kind = "RFC 5780 observer" if alternate is not None else "observer"
        where = ", ".join(_format(address) for address in self._addresses.sockets)
        logger.info("%s answering Binding requests on %s", kind, where)

    async def handle_call(self, message: Any, caller: Caller) -> Any:
        if isinstance(message, GetObserverStatistics):
            return self._statistics()
        if isinstance(message, GetObserverAddresses):
            return self._addresses
        return await super().handle_call(message, caller)

    async def _close_sockets_on_exit(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            for endpoint in self._endpoints.values():
                endpoint.close()

    async def _serve(self, endpoint: UdpEndpoint) -> None:
        """Answer what arrives on ``endpoint`` until it is closed."""
        local = endpoint.local_address
        addresses = self._addresses
        assert addresses is not None
        endpoints = self._endpoints
        counters = self._counters
        socket_counters = self._socket_counters
        received = socket_counters[local]
        allow = self._buckets.allow
        software = self._software
        max_amplification = self._max_amplification
        now = trio.current_time
        try:
            while True:
                data, source = await endpoint.receive_from()
                counters.datagrams += 1
                received.received += 1
                # Keyed by IP: every reply goes to the source IP, whatever RESPONSE-PORT says.
                if not allow(source_prefix(source[0]), now()):
                    counters.rate_limited += 1
                    continue
                decision = answer(
                    data,
                    source,
                    local,
                    addresses,
                    software=software,
                    max_amplification=max_amplification,
                )
                outcome = decision.outcome
                if outcome is Outcome.ANSWERED:
                    counters.requests += 1
                    counters.answered += 1
                elif outcome is Outcome.MALFORMED:
                    counters.malformed += 1
                    continue
                elif outcome is Outcome.NOT_A_REQUEST:
                    counters.not_requests += 1
                    continue
                else:
                    self._count_refusal(outcome)
                if decision.response is None or decision.origin is None:
                    continue
                if decision.left_out:
                    counters.trimmed += 1
                assert decision.destination is not None
                try:
                    await endpoints[decision.origin].send_to(
                        decision.response, decision.destination
                    )
                except OSError as exc:
                    counters.send_failures += 1
                    logger.debug("answer to %s not sent: %s", decision.destination, exc)
                else:
                    counters.responses += 1
                    socket_counters[decision.origin].sent += 1
        except trio.ClosedResourceError:
            return  # the observer is stopping

    def _count_refusal(self, outcome: Outcome) -> None:
        counters = self._counters
        counters.requests += 1
        if outcome is Outcome.BAD_REQUEST:
            counters.bad_requests += 1
        elif outcome is Outcome.UNKNOWN_ATTRIBUTE:
            counters.unknown_attribute_errors += 1
        else:
            counters.amplification_refused += 1

    def _statistics(self) -> ObserverStatistics:
        counters = self._counters
        return ObserverStatistics(
            **attrs.asdict(counters),
            sources=len(self._buckets),
            source_evictions=self._buckets.evictions,
            sockets=tuple(
                SocketStatistics(address, counts.received, counts.sent)
                for address, counts in self._socket_counters.items()
            ),
        )


async def _bind_sockets(
    stack: UdpStack, listen: Address, alternate: Address | None
) -> list[UdpEndpoint]:
    """Bind ``listen`` alone, or IP1:P1, IP1:P2, IP2:P1, IP2:P2 (in that order).

    Ports given as 0 are chosen on the first IP; if one is taken on the second IP, everything is
    closed and tried again, at most :data:`_BIND_ATTEMPTS` times.
    """
    if alternate is None:
        return [await stack.bind(listen)]
    (ip1, port1), (ip2, port2) = listen, alternate
    chosen_by_system = port1 == 0 or port2 == 0
    for attempt in range(1, _BIND_ATTEMPTS + 1):
        endpoints: list[UdpEndpoint] = []
        try:
            endpoints.append(await stack.bind((ip1, port1)))
            endpoints.append(await stack.bind((ip1, port2)))
            bound1, bound2 = endpoints[0].local_address[1], endpoints[1].local_address[1]
            endpoints.append(await stack.bind((ip2, bound1)))
            endpoints.append(await stack.bind((ip2, bound2)))
        except OSError as exc:
            for endpoint in endpoints:
                endpoint.close()
            if exc.errno != errno.EADDRINUSE or not chosen_by_system or attempt == _BIND_ATTEMPTS:
                raise
            logger.debug("ports taken on %s (%s); trying others", ip2, exc)
        except BaseException:
            for endpoint in endpoints:
                endpoint.close()
            raise
        else:
            return endpoints
    raise AssertionError("unreachable: the last attempt returns or raises")


@asynccontextmanager
async def open_observer(
    observer: Observer, name: str | None = None, registry: Registry | None = None
) -> AsyncIterator[ObserverRef]:
    """Run ``observer`` for the ``async with`` block (see ``open_actor``); yields its typed ref."""
    async with open_actor(observer, name, registry) as ref:
        assert isinstance(ref, ObserverRef)
        yield ref
