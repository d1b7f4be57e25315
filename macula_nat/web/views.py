"""What a status page looks at: a node (:class:`NodeView`), a gateway (:class:`GatewayView`) or
the demo's pair matrix (:class:`DemoBoard`).

Each view gathers its component's statistics into a :mod:`~macula_nat.web.snapshot` record
(``await view.snapshot()``) and tells the page's event streams when to send a new one
(``async with view.watch() as changed: await changed()``): a node at each
``nat_profile_changed`` (a subscription to the detector's ``changes`` topic), the demo as each
pair ends. Between changes, streams refresh the counters every second.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol

import attrs
import trio

from macula_nat.actors import ActorError
from macula_nat.gateway import Gateway
from macula_nat.identity import NodeId
from macula_nat.nat.observer import GetObserverStatistics, ObserverRef, ObserverStatistics
from macula_nat.relay import RelayNode
from macula_nat.system import NatSystem
from macula_nat.traversal.errors import ConnectTimeout, TraversalError
from macula_nat.web.snapshot import (
    ConnectionFacts,
    Json,
    PendingFacts,
    SessionFacts,
    gateway_snapshot,
    matrix_snapshot,
    node_snapshot,
)

__all__ = ["CONNECT_TIMEOUT", "DemoBoard", "GatewayView", "NodeView", "View"]

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT: Final = 10.0
"""Seconds the connect form waits for a peer before saying it did not answer."""
_OBSERVER_CALL: Final = 1.0
"""Seconds a snapshot waits for the observer's statistics (it may be restarting)."""

Changed = Callable[[], Awaitable[None]]


class View(Protocol):
    """What the page's routes need of the thing they show."""

    async def snapshot(self) -> Json: ...

    def watch(self) -> Any:
        """An async context manager yielding ``changed``: ``await changed()`` returns at the
        next change worth an immediate push."""


@asynccontextmanager
async def _never() -> AsyncIterator[Changed]:
    """No change events: the streams' one-second refresh is all there is."""
    await trio.lowlevel.checkpoint()
    yield trio.sleep_forever


def _sessions(relay: RelayNode) -> list[SessionFacts]:
    return [
        SessionFacts(s.id, s.peer_a, s.peer_b, s.started_at, s.bytes_transferred, s.datagrams)
        for s in relay.sessions()
    ]


async def _observer_statistics(ref: ObserverRef | None) -> ObserverStatistics | None:
    if ref is None:
        return None
    try:
        statistics: ObserverStatistics = await ref.call(GetObserverStatistics(), _OBSERVER_CALL)
    except ActorError:  # restarting, or gone: the page says so and carries on
        return None
    return statistics


@attrs.define(eq=False)
class NodeView:
    """A running node's page: its profile, connections, punches, cache and components.

    ``relay`` is the node's own relay when it runs one (its sessions and limits are shown).
    """

    system: NatSystem
    relay: RelayNode | None = None

    async def snapshot(self) -> Json:
        system = self.system
        coordinator = system.coordinator
        connections = []
        for connection in coordinator.connections():
            if connection.closed:  # the coordinator forgets it in a moment
                continue
            info = connection.info()
            link = connection.link
            links = link.statistics() if link is not None else None
            connections.append(
                ConnectionFacts(
                    peer=info.peer_id,
                    method=str(info.connection_method),
                    rtt=info.rtt,
                    local_address=info.local_address,
                    remote_address=info.remote_address,
                    opened_at=connection.opened_at,
                    sent=links.sent_direct + links.sent_relayed if links else 0,
                    received=links.received_direct + links.received_relayed if links else 0,
                    upgrades=links.upgrades if links else 0,
                    fallbacks=links.fallbacks if links else 0,
                    held=connection.statistics().held,
                )
            )
        pending = [
            PendingFacts(p.peer, p.attempt, p.started_at, p.targets)
            for p in coordinator.get_pending()
        ]
        observer = await _observer_statistics(system.observer)
        return node_snapshot(
            node_id=system.node_id,
            profile=system.detector.profile.value,
            wall_now=system.config.wall_clock(),
            now=trio.current_time(),
            connections=connections,
            pending=pending,
            cache=system.cache.stats(),
            detector=system.detector.statistics(),
            coordinator=coordinator.statistics(),
            registry=system.relays.statistics(),
            home_relay=system.relays.home.value,
            relay=self.relay.statistics() if self.relay is not None else None,
            relay_sessions=_sessions(self.relay) if self.relay is not None else (),
            observer=observer,
            dht=system.dht.statistics() if system.dht is not None else None,
            profile6=system.detector6.profile.value if system.detector6 is not None else None,
            detector6=system.detector6.statistics() if system.detector6 is not None else None,
        )

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[Changed]:
        """``changed`` returns at each ``nat_profile_changed`` (the detector's topic)."""
        async with self.system.detector.changes.subscription(buffer=1) as events:

            async def changed() -> None:
                try:
                    await events.receive()
                except trio.EndOfChannel:  # the detector is gone: nothing more to wait for
                    await trio.sleep_forever()

            yield changed

    async def connect(self, peer: str) -> Json:
        """Connect to the node whose id is ``peer`` (text): ``{"ok": true, "method": ...}`` or
        ``{"ok": false, "error": <in words>}``; never raises for bad input or a silent peer."""
        text = peer.strip().lower()
        try:
            node = NodeId.from_text(text)
        except ValueError as exc:
            return _failed(f"not a node id: {exc}")
        if node == self.system.node_id:
            return _failed("that is this node's own id")
        lookup_failed: str | None = None
        try:
            with trio.fail_after(CONNECT_TIMEOUT):
                record = await self.system.directory.resolve_record(node.text())
        except (trio.TooSlowError, OSError, ActorError) as exc:
            record, lookup_failed = None, f"the directory did not answer ({exc or 'timeout'})"
        if record is None:
            return _failed(
                lookup_failed
                or f"unknown node {node.short()}: the directory has no record of it"
                " (is it running, and joined through the same gateways?)"
            )
        try:
            connection = await self.system.connector.connect(node, timeout=CONNECT_TIMEOUT)
        except ConnectTimeout:
            return _failed(f"the peer did not answer within {CONNECT_TIMEOUT:g} s")
        except TraversalError as exc:
            return _failed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        except (ActorError, OSError, trio.ClosedResourceError) as exc:
            logger.info("connect to %s failed: %r", node.short(), exc)
            return _failed(f"the connection could not be made: {exc or type(exc).__name__}")
        return {"ok": True, "peer": node.text(), "method": str(connection.method.value)}

    async def close(self, peer: str) -> Json:
        """Close the connection to ``peer``: ``{"ok": true}``, or why not in words."""
        try:
            node = NodeId.from_text(peer.strip().lower())
        except ValueError as exc:
            return _failed(f"not a node id: {exc}")
        for connection in self.system.coordinator.connections():
            if connection.peer_id == node and not connection.closed:
                await connection.aclose()
                return {"ok": True, "peer": node.text()}
        await trio.lowlevel.checkpoint()
        return _failed(f"no open connection to {node.short()} (closed already?)")


def _failed(error: str) -> Json:
    return {"ok": False, "error": error}


@attrs.define(eq=False)
class GatewayView:
    """A gateway's page: relay sessions, limits and traffic; observer, registry and DHT
    figures. ``observer`` finds the observer's current incarnation (None while it restarts)."""

    gateway: Gateway
    observer: Callable[[], ObserverRef | None] = lambda: None

    async def snapshot(self) -> Json:
        gateway = self.gateway
        config = gateway.config
        return gateway_snapshot(
            node_id=gateway.key.node_id,
            listen=config.listen,
            relay_address=config.relay_address,
            dht_address=config.dht_address,
            now=trio.current_time(),
            relay=gateway.relay.statistics(),
            relay_sessions=_sessions(gateway.relay),
            registry=gateway.registry.statistics(),
            dht=gateway.dht.statistics(),
            observer=await _observer_statistics(self.observer()),
        )

    def watch(self) -> Any:
        return _never()


@attrs.define(eq=False)
class DemoBoard:
    """The demo's pair matrix, filled in by the demo's callbacks (:meth:`node_ready`,
    :meth:`pair_done`) as nodes detect their NATs and pairs connect."""

    types: Sequence[str]
    _detected: dict[str, str] = attrs.field(init=False, factory=dict)
    _methods: dict[tuple[str, str], str] = attrs.field(init=False, factory=dict)
    _lot: trio.lowlevel.ParkingLot = attrs.field(init=False, factory=trio.lowlevel.ParkingLot)

    def node_ready(self, name: str, nat_type: str) -> None:
        self._detected[name] = nat_type
        self._lot.unpark_all()

    def pair_done(self, local: str, remote: str, method: str) -> None:
        self._methods[(local, remote)] = method
        self._lot.unpark_all()

    async def snapshot(self) -> Json:
        await trio.lowlevel.checkpoint()
        return matrix_snapshot(self.types, self._detected, self._methods)

    @asynccontextmanager
    async def watch(self) -> AsyncIterator[Changed]:
        await trio.lowlevel.checkpoint()
        yield self._lot.park
