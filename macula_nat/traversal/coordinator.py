"""Coordinator: the Python mirror of the Erlang ``macula_nat_coordinator``.

It owns this node's connections and the punching that upgrades them:

- **Outbound** (:meth:`Coordinator.request_connection`): the target's record (profile,
  candidates, home relay) and the local profile give a :class:`~.strategy.Plan`. A target that
  accepts unsolicited datagrams is dialled directly. Otherwise a relay session to the target
  carries a QUIC connection at once, and, when the plan says a punch can work, the two nodes
  punch in the background over signalling carried inside that connection (so the relay can
  neither read nor forge it): the initiator sends an :class:`~.punch_wire.Offer` (its candidates,
  predicted ports, a link id and a fresh probe key), the responder answers, the initiator measures
  the round trip, sends ``Sync`` and waits half of it, and both probe every candidate of the other
  (libp2p DCUtR's timing). The first address proven both ways (:mod:`.prover`) carries the
  connection from then on; nothing is lost, since QUIC sees no change (:mod:`..connection.link`).
- **Inbound**: relay sessions other nodes open to this one, and Initials arriving directly on the
  node's socket, become connections handed out by :meth:`Coordinator.accept`.
- **Liveness**: a punched path is checked every ``consent_interval`` with an authenticated probe;
  without an answer for ``consent_timeout`` the connection falls back to the relay, and the
  initiator punches again after ``retry_interval``. A peer whose probes start arriving from a new
  address (a NAT rebinding) is probed back there and followed once that address answers.

Ownership: the handle owns the tables; the connections and their tasks run in the server's
nursery, so a crash of :class:`CoordinatorServer` closes the connections it carried (and only
those); the next incarnation accepts and connects again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final

import attrs
import trio
import trio.lowlevel
from aioquic.quic.packet import QuicPacketType

from macula_nat.actors import Actor, Served, Stop, open_actor
from macula_nat.behavior import MappingBehavior, PortAllocation
from macula_nat.connection import (
    Connection,
    ConnectionConfig,
    ConnectionFailed,
    connect,
    listen,
)
from macula_nat.connection.driver import MIN_INITIAL_SIZE, parse_header
from macula_nat.connection.link import LINK_ADDRESS, ConnectionMethod, DirectPath, PeerLink
from macula_nat.directory import Directory, DirectoryError
from macula_nat.directory.record import NodeRecord
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.detector import NatDetector, NatProfileChanged
from macula_nat.nat.profile import NatProfile
from macula_nat.net.address import Address, normalise_address
from macula_nat.net.demux import SharedEndpoint, Traffic
from macula_nat.relay import (
    RegistrationFailed,
    RelayClient,
    RelayError,
    RelayRegistry,
    RelaySession,
    open_relay_client,
)
from macula_nat.relay.selection import NoRelay
from macula_nat.traversal.errors import ConnectTimeout, NotConnected, PunchFailed, SymmetricNat
from macula_nat.traversal.prediction import predict_ports
from macula_nat.traversal.prover import PathProver
from macula_nat.traversal.punch_wire import (
    KEY_SIZE,
    LINK_ID_SIZE,
    MAX_CANDIDATES,
    Answer,
    ControlError,
    Offer,
    Role,
    Sync,
    decode_control,
    encode_control,
    peek_link_id,
)
from macula_nat.traversal.strategy import Method, Plan, Side, choose

__all__ = [
    "Coordinator",
    "CoordinatorServer",
    "CoordinatorStatistics",
    "PendingPunch",
    "PunchRef",
    "TraversalConfig",
]

logger = logging.getLogger(__name__)

_ANY: Final = frozenset({"0.0.0.0", "::"})


@attrs.frozen
class TraversalConfig:
    """Timing and bounds of connecting and punching (seconds unless named otherwise)."""

    connection: ConnectionConfig = attrs.Factory(ConnectionConfig)
    direct_timeout: float = 3.0
    """Longest a direct dial may take before the relay is tried."""
    relay_timeout: float = 5.0
    """Longest a relay session request may take."""
    punch_window: float = 2.0
    """How long one punch attempt probes (and waits for the peer's answer)."""
    probe_interval: float = 0.05
    """Between two rounds of probes to every candidate within an attempt."""
    attempt_gap: float = 0.5
    """Between two punch attempts."""
    max_punch_attempts: int = 3
    consent_interval: float = 5.0
    """Between liveness probes on a punched path."""
    consent_timeout: float = 16.0
    """A punched path unanswered this long is dropped: the connection falls back to the relay."""
    retry_interval: float = 60.0
    """After punching failed or the direct path died, the initiator tries again this much later."""
    predicted_ports: int = 8
    """Next ports offered at the measured delta when this node's NAT allocates sequentially."""
    accept_backlog: int = 64
    max_inbound_handshakes: int = 16
    record_ttl: float = 600.0


@attrs.frozen(order=True)
class PunchRef:
    """Names one punch of :meth:`Coordinator.coordinate_punch` (and of every connection)."""

    id: int


@attrs.frozen
class PendingPunch:
    """A punch in flight, as :meth:`Coordinator.get_pending` lists it."""

    ref: PunchRef
    peer: NodeId
    attempt: int
    started_at: float
    targets: tuple[Address, ...]


@attrs.frozen
class CoordinatorStatistics:
    connections: int
    """Open now."""
    outbound: int
    inbound: int
    direct: int
    """Connections made straight to the peer's published address."""
    relayed: int
    """Connections that started over a relay."""
    upgrades: int
    """Relayed connections moved to a punched path."""
    fallbacks: int
    """Punched paths that died (the connection went back to the relay)."""
    punches: int
    punch_failures: int
    refused_initials: int


@attrs.define(eq=False)
class _Punching:
    """The punch state of one connection (both sides keep one per link id)."""

    link: PeerLink
    connection: Connection
    prover: PathProver
    role: Role
    targets: tuple[Address, ...] = ()
    attempt: int = 0
    pending: PunchRef | None = None
    started_at: float = 0.0
    last_proof: float = -math.inf
    nursery: trio.Nursery | None = None
    """The connection's nursery: punching tasks end with the connection."""
    proven: trio.Event = attrs.Factory(trio.Event)
    answers_in: trio.MemorySendChannel[Answer] = attrs.field(init=False)
    answers: trio.MemoryReceiveChannel[Answer] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.answers_in, self.answers = trio.open_memory_channel[Answer](4)


class Coordinator(Served):
    """This node's connections: see the module docstring. Build it with the node's ``key``, its
    shared socket (``shared``: STUN, relay, punch and QUIC views), its relay ``registry`` (which
    keeps the home relay on the shared socket's relay view), the ``directory`` and ``detector``.

    ``accept_peer`` says which authenticated nodes may connect (default: any);
    ``lan_addresses`` are this host's own addresses, offered as candidates when the shared socket
    is bound to a wildcard.
    """

    default_id = "nat_coordinator"

    def __init__(
        self,
        key: NodeKey,
        shared: SharedEndpoint,
        registry: RelayRegistry,
        directory: Directory,
        detector: NatDetector,
        *,
        config: TraversalConfig | None = None,
        accept_peer: Callable[[NodeId], bool] | None = None,
        lan_addresses: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.key = key
        self.shared = shared
        self.registry = registry
        self.directory = directory
        self.detector = detector
        self.config = config or TraversalConfig()
        self._accept_peer = accept_peer or (lambda _: True)
        self._lan = tuple(lan_addresses)
        self._quic = shared.view(Traffic.QUIC)
        self._probes = shared.view(Traffic.PUNCH)
        self._nursery: trio.Nursery | None = None
        self._routes: dict[Address, PeerLink] = {}
        self._punching: dict[bytes, _Punching] = {}
        self._connections: dict[NodeId, Connection] = {}
        self._accepted_in, self._accepted = trio.open_memory_channel[Connection](
            self.config.accept_backlog
        )
        self._refs = itertools.count(1)
        self._inbound_handshakes = 0
        self._counts = dict.fromkeys(
            ("outbound", "inbound", "direct", "relayed", "punches", "punch_failures", "refused"),
            0,
        )
        self._upgrades = self._fallbacks = 0

    def __repr__(self) -> str:
        return f"<Coordinator {self.key.node_id.short()} {len(self._connections)} connections>"

    # -- the API ---------------------------------------------------------------------------------

    async def request_connection(
        self,
        target: NodeId,
        timeout: float = 15.0,
        max_punch_attempts: int = 3,
        allow_relay: bool = True,
        *,
        punch: bool = True,
    ) -> tuple[ConnectionMethod, Connection]:
        """A connection to ``target`` and how it travels now.

        Direct when the target accepts unsolicited datagrams; else over a relay at once, punching
        (up to ``max_punch_attempts``, unless ``punch`` is False) in the background. Without
        ``allow_relay`` the relay carries only the signalling and the call returns once punched.
        Raises :class:`SymmetricNat`, :class:`NoRelay`, :class:`PunchFailed`,
        :class:`ConnectTimeout`, or the connection's own errors.
        """
        if target == self.key.node_id:
            raise ValueError("a node cannot connect to itself")
        nursery = self._nursery_or_raise()
        try:
            with trio.fail_after(timeout):
                record = await self._resolve(target)
                plan = self._plan(record, allow_relay)
                if plan is not None and not plan.feasible:
                    raise SymmetricNat(f"no path to {target.short()}: {plan.reason}")
                if self._dials(plan) and record is not None and record.candidates:
                    try:
                        connection: Connection = await nursery.start(
                            self._run_direct, target, record.candidates[0]
                        )
                    except ConnectionFailed as exc:
                        if not allow_relay:
                            raise PunchFailed(
                                f"direct dial of {target.short()} failed: {exc}"
                            ) from exc
                        logger.info("%r: direct dial failed (%s); trying the relay", self, exc)
                    else:
                        return ConnectionMethod.DIRECT, connection
                wants_punch = punch and (plan is None or plan.method is not Method.RELAY)
                if not allow_relay and not wants_punch:
                    raise PunchFailed(f"no punch can reach {target.short()} and relaying is off")
                attempts = max(1, max_punch_attempts) if wants_punch else 0
                connection = await nursery.start(self._run_outbound, target, record, attempts)
                if not allow_relay:
                    await self._wait_punched(connection)
                return connection.method.value, connection
        except trio.TooSlowError:
            raise ConnectTimeout(f"no connection to {target.short()} within {timeout} s") from None

    async def accept(self) -> Connection:
        """The next connection another node made to this one."""
        return await self._accepted.receive()

    def coordinate_punch(
        self, a: NodeId, b: NodeId, predicted_ports: Sequence[int] = ()
    ) -> PunchRef:
        """Punch again now between ``a`` and ``b`` (one of them this node, connected to the
        other), also trying ``predicted_ports`` at the peer's public IP; a reference that
        :meth:`get_pending` lists while the punch is in flight."""
        me = self.key.node_id
        if me not in (a, b):
            raise ValueError("this node coordinates only its own punches (a or b must be it)")
        peer = b if a == me else a
        punching = self._punching_with(peer)
        if punching is None or punching.role is not Role.INITIATOR:
            raise NotConnected(f"no connection to {peer.short()} that this node initiated")
        extra = _at_ports(punching.targets, predicted_ports)
        ref = PunchRef(next(self._refs))
        assert punching.nursery is not None
        punching.nursery.start_soon(self._punch, punching, 1, extra, ref)
        return ref

    def get_pending(self) -> list[PendingPunch]:
        """The punches in flight now."""
        return [
            PendingPunch(p.pending, p.connection.peer_id, p.attempt, p.started_at, p.targets)
            for p in self._punching.values()
            if p.pending is not None
        ]

    def connections(self) -> list[Connection]:
        """The open connections, one per peer."""
        return list(self._connections.values())

    def statistics(self) -> CoordinatorStatistics:
        counts = self._counts
        return CoordinatorStatistics(
            connections=len(self._connections),
            outbound=counts["outbound"],
            inbound=counts["inbound"],
            direct=counts["direct"],
            relayed=counts["relayed"],
            upgrades=self._upgrades,
            fallbacks=self._fallbacks,
            punches=counts["punches"],
            punch_failures=counts["punch_failures"],
            refused_initials=counts["refused"],
        )

    # -- deciding ----------------------------------------------------------------------------

    def _nursery_or_raise(self) -> trio.Nursery:
        self._server_or_raise()
        assert self._nursery is not None
        return self._nursery

    async def _resolve(self, target: NodeId) -> NodeRecord | None:
        try:
            return await self.directory.resolve_record(target.text())
        except DirectoryError as exc:
            logger.info("%r: no record for %s: %s", self, target.short(), exc)
            return None

    def _plan(self, record: NodeRecord | None, allow_relay: bool) -> Plan | None:
        local = self.detector.profile.value
        remote = None if record is None else record.profile
        if local is None or remote is None:
            return None
        return choose(local, remote, allow_relay=allow_relay)

    @staticmethod
    def _dials(plan: Plan | None) -> bool:
        return (
            plan is not None
            and plan.method is Method.DIRECT
            and plan.initiator in (None, Side.LOCAL)
        )

    async def _wait_punched(self, connection: Connection) -> None:
        punching = self._punching_with(connection.peer_id)
        if punching is None:
            raise PunchFailed(f"no punch to {connection.peer_id.short()} was possible")
        while connection.method.value is ConnectionMethod.RELAYED:
            if punching.pending is None and punching.attempt > 0:
                await connection.aclose()
                raise PunchFailed(
                    f"{punching.attempt} punch attempts to {connection.peer_id.short()} failed"
                )
            with trio.move_on_after(self.config.punch_window):
                await connection.method.wait_transition()

    def _punching_with(self, peer: NodeId) -> _Punching | None:
        for punching in self._punching.values():
            if punching.connection._peer_id == peer:
                return punching
        return None

    # -- candidates ------------------------------------------------------------------------------

    def _candidates(self) -> tuple[tuple[Address, ...], tuple[Address, ...]]:
        """This node's candidates (observed mapping, LAN) and predicted next mappings."""
        found: list[Address] = []
        client = self.registry.client
        registration = None if client is None else client.registration.value
        observed = None if registration is None else normalise_address(registration.observed)
        if observed is not None:
            found.append(observed)
        ip, port = self.shared.local_address
        lan = self._lan if ip in _ANY else (ip,)
        found.extend((address, port) for address in lan if (address, port) not in found)
        predicted: tuple[Address, ...] = ()
        profile = self.detector.profile.value
        if (
            observed is not None
            and profile is not None
            and profile.mapping != MappingBehavior.ENDPOINT_INDEPENDENT
            and profile.allocation == PortAllocation.CONTIGUITY
            and profile.port_delta
        ):
            ports = predict_ports([observed[1]], profile.port_delta, self.config.predicted_ports)
            predicted = tuple((observed[0], p) for p in ports)
        return tuple(found[:MAX_CANDIDATES]), predicted[:MAX_CANDIDATES]

    # -- connections ---------------------------------------------------------------------------

    def _track(self, connection: Connection) -> None:
        previous = self._connections.get(connection.peer_id)
        self._connections[connection.peer_id] = connection
        if previous is not None and previous is not connection:
            logger.info("%r: a new connection to %s replaces the old", self, previous.peer_id)

    def _untrack(self, connection: Connection) -> None:
        if (
            connection._peer_id is not None
            and self._connections.get(connection.peer_id) is connection
        ):
            del self._connections[connection.peer_id]

    def _route(self, address: Address, link: PeerLink) -> None:
        self._routes[address] = link

    def _unroute(self, link: PeerLink) -> None:
        for address in [a for a, routed in self._routes.items() if routed is link]:
            del self._routes[address]

    async def _run_direct(
        self, target: NodeId, address: Address, *, task_status: trio.TaskStatus[Connection]
    ) -> None:
        """Dial ``target`` at ``address`` and carry the connection until it closes."""
        address = normalise_address(address)
        link = PeerLink(
            target,
            self.shared.local_address,
            direct=DirectPath(self._quic, address, ConnectionMethod.DIRECT),
        )
        self._route(address, link)
        config = attrs.evolve(
            self.config.connection,
            handshake_timeout=min(
                self.config.direct_timeout, self.config.connection.handshake_timeout
            ),
        )
        started = False
        try:
            async with connect(link, LINK_ADDRESS, self.key, target, config=config) as connection:
                self._counts["outbound"] += 1
                self._counts["direct"] += 1
                self._track(connection)
                task_status.started(connection)
                started = True
                try:
                    await connection.wait_closed()
                finally:
                    self._untrack(connection)
        except ConnectionFailed as exc:
            if not started:
                raise
            logger.info("%r: connection to %s ended: %s", self, target.short(), exc)
        finally:
            self._unroute(link)
            link.close()

    async def _relay_session(
        self, target: NodeId, record: NodeRecord | None, stack: AsyncExitStack
    ) -> RelaySession:
        """A relay session to ``target``: through the home registration when the target shares
        the home relay, else through a registration of our own with the target's home relay."""
        timeout = self.config.relay_timeout
        home = self.registry.home.value
        target_home = None if record is None else record.home_relay
        client = self.registry.client
        if target_home is not None and (home is None or home.endpoint != target_home):
            socket = await self.registry.stack.bind()
            await stack.enter_async_context(socket)
            visitor = RelayClient(socket, target_home, self.key)
            try:
                client = await stack.enter_async_context(
                    open_relay_client(visitor, timeout=timeout)
                )
            except RegistrationFailed as exc:
                raise NoRelay(f"the home relay of {target.short()} refused us: {exc}") from exc
        if client is None:
            raise NoRelay("this node has no home relay yet (no relay reachable?)")
        try:
            return await client.request_relay(target, timeout=timeout)
        except RelayError as exc:
            raise NoRelay(f"no relay session to {target.short()}: {exc}") from exc

    async def _run_outbound(
        self,
        target: NodeId,
        record: NodeRecord | None,
        attempts: int,
        *,
        task_status: trio.TaskStatus[Connection],
    ) -> None:
        """Connect to ``target`` over a relay, punch, and carry the connection until it closes."""
        async with AsyncExitStack() as stack:
            session = await self._relay_session(target, record, stack)
            stack.push_async_callback(session.aclose)
            link = PeerLink(target, self.shared.local_address, relay=session)
            started = False
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run)
                try:
                    async with connect(
                        link, LINK_ADDRESS, self.key, target, config=self.config.connection
                    ) as connection:
                        self._counts["outbound"] += 1
                        self._counts["relayed"] += 1
                        self._track(connection)
                        punching = self._new_punching(
                            link, connection, Role.INITIATOR, os.urandom(LINK_ID_SIZE), nursery
                        )
                        nursery.start_soon(self._keep_punched, punching, attempts)
                        task_status.started(connection)
                        started = True
                        try:
                            await connection.wait_closed()
                        finally:
                            self._forget(punching)
                            self._untrack(connection)
                except ConnectionFailed as exc:
                    if not started:
                        raise
                    logger.info("%r: connection to %s ended: %s", self, target.short(), exc)
                finally:
                    link.close()
                    nursery.cancel_scope.cancel()

    async def _run_inbound_relayed(self, session: RelaySession) -> None:
        """Serve the connection ``session``'s peer makes over it, until it closes."""
        peer = session.peer
        if not self._accept_peer(peer):
            logger.info("%r: relay session from %s refused", self, peer.short())
            await session.aclose()
            return
        link = PeerLink(peer, self.shared.local_address, relay=session)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run)
                async with listen(
                    link, self.key, {peer}, max_handshakes=1, config=self.config.connection
                ) as listener:
                    with trio.move_on_after(self.config.connection.handshake_timeout * 2):
                        connection = await listener.accept()
                    if connection is None:
                        logger.info("%r: no handshake from %s over the relay", self, peer.short())
                        nursery.cancel_scope.cancel()
                        return
                    self._counts["inbound"] += 1
                    self._counts["relayed"] += 1
                    self._track(connection)
                    self._new_punching(link, connection, Role.RESPONDER, None, nursery)
                    self._hand_over(connection)
                    try:
                        await connection.wait_closed()
                    finally:
                        self._forget_link(link)
                        self._untrack(connection)
                nursery.cancel_scope.cancel()
        finally:
            link.close()
            await session.aclose()

    async def _run_inbound_direct(self, data: bytes, source: Address) -> None:
        """Serve the connection whose Initial ``data`` just came straight from ``source``."""
        link = PeerLink(
            None, self.shared.local_address,
            direct=DirectPath(self._quic, source, ConnectionMethod.DIRECT),
        )  # fmt: skip
        self._route(source, link)
        self._inbound_handshakes += 1
        handshaking = True
        try:
            async with listen(
                link, self.key, self._accept_peer, max_handshakes=1, config=self.config.connection
            ) as listener:
                link.deliver_direct(data)
                with trio.move_on_after(self.config.connection.handshake_timeout * 2):
                    connection = await listener.accept()
                self._inbound_handshakes -= 1
                handshaking = False
                if connection is None:
                    return
                link.peer = connection.peer_id
                self._counts["inbound"] += 1
                self._counts["direct"] += 1
                self._track(connection)
                self._hand_over(connection)
                try:
                    await connection.wait_closed()
                finally:
                    self._untrack(connection)
        finally:
            if handshaking:
                self._inbound_handshakes -= 1
            self._unroute(link)
            link.close()

    def _hand_over(self, connection: Connection) -> None:
        try:
            self._accepted_in.send_nowait(connection)
        except trio.WouldBlock:
            logger.warning("%r: accept backlog full; closing %s", self, connection.peer_id.short())
            self._nursery_or_raise().start_soon(connection.aclose)

    # -- signalling ----------------------------------------------------------------------------

    def _new_punching(
        self,
        link: PeerLink,
        connection: Connection,
        role: Role,
        link_id: bytes | None,
        nursery: trio.Nursery,
    ) -> _Punching:
        """Punch state for a new connection; it reads the signalling and watches the direct
        path in ``nursery`` (the responder's prover is replaced by the first Offer's)."""
        prover = PathProver(link_id or bytes(LINK_ID_SIZE), os.urandom(KEY_SIZE), role)
        punching = _Punching(link, connection, prover, role, nursery=nursery)
        if link_id is not None:
            self._punching[link_id] = punching
        nursery.start_soon(self._serve_control, punching)
        nursery.start_soon(self._watch_direct, punching)
        return punching

    def _forget(self, punching: _Punching) -> None:
        self._forget_link(punching.link)

    def _forget_link(self, link: PeerLink) -> None:
        for link_id in [i for i, p in self._punching.items() if p.link is link]:
            del self._punching[link_id]
        self._unroute(link)

    async def _serve_control(self, punching: _Punching) -> None:
        """Read the peer's signalling until the connection ends."""
        connection = punching.connection
        while True:
            try:
                message = decode_control(await connection.receive_control())
            except (ConnectionFailed, trio.ClosedResourceError):
                return
            except ControlError as exc:
                logger.warning(
                    "%r: bad signalling from %s: %s", self, connection.peer_id.short(), exc
                )
                continue
            if isinstance(message, Offer) and punching.role is Role.RESPONDER:
                await self._on_offer(punching, message)
            elif isinstance(message, Sync) and punching.role is Role.RESPONDER:
                if message.link_id == punching.prover.link_id and punching.nursery is not None:
                    punching.nursery.start_soon(self._probe_burst, punching)
            elif isinstance(message, Answer) and punching.role is Role.INITIATOR:
                with contextlib.suppress(trio.WouldBlock):
                    punching.answers_in.send_nowait(message)

    async def _on_offer(self, punching: _Punching, offer: Offer) -> None:
        old = punching.prover.link_id
        if old != offer.link_id or punching.prover.key != offer.key:
            if self._punching.get(old) is punching:
                del self._punching[old]
            punching.prover = PathProver(offer.link_id, offer.key, Role.RESPONDER)
            self._punching[offer.link_id] = punching
        punching.targets = _targets(offer.candidates, offer.predicted)
        punching.attempt = offer.attempt
        candidates, predicted = self._candidates()
        answer = Answer(
            link_id=offer.link_id,
            attempt=offer.attempt,
            candidates=candidates,
            predicted=predicted,
            profile=self.detector.profile.value,
        )
        try:
            await punching.connection.send_control(encode_control(answer))
        except (ConnectionFailed, trio.ClosedResourceError):
            return

    # -- punching ------------------------------------------------------------------------------

    async def _keep_punched(self, punching: _Punching, attempts: int) -> None:
        """The initiator: punch; once the direct path dies (or punching failed), again after
        ``retry_interval``."""
        if attempts == 0:
            return
        method = punching.link.method
        while True:
            if punching.link.direct is None:
                await self._punch(punching, attempts, (), PunchRef(next(self._refs)))
            if punching.link.direct is None:
                await trio.sleep(self.config.retry_interval)
            else:
                await method.wait_value(lambda value: value is ConnectionMethod.RELAYED)
                await trio.sleep(self.config.retry_interval)

    async def _punch(
        self, punching: _Punching, attempts: int, extra: tuple[Address, ...], ref: PunchRef
    ) -> bool:
        """Up to ``attempts`` DCUtR rounds; True once a direct path is proven."""
        config = self.config
        connection = punching.connection
        punching.pending = ref
        punching.started_at = trio.current_time()
        self._counts["punches"] += 1
        try:
            for attempt in range(1, attempts + 1):
                punching.attempt = attempt
                candidates, predicted = self._candidates()
                offer = Offer(
                    link_id=punching.prover.link_id,
                    key=punching.prover.key,
                    attempt=attempt,
                    candidates=candidates,
                    predicted=predicted,
                    profile=self.detector.profile.value,
                )
                sent_at = trio.current_time()
                try:
                    await connection.send_control(encode_control(offer))
                except (ConnectionFailed, trio.ClosedResourceError):
                    return False
                answer = None
                with trio.move_on_after(config.punch_window):
                    while answer is None or answer.attempt != attempt:
                        answer = await punching.answers.receive()
                if answer is None or answer.attempt != attempt:
                    logger.info("%r: no answer to punch offer %d", self, attempt)
                    continue
                rtt = trio.current_time() - sent_at
                punching.targets = _targets(answer.candidates, answer.predicted) + extra
                sync = Sync(link_id=punching.prover.link_id, attempt=attempt)
                try:
                    await connection.send_control(encode_control(sync))
                except (ConnectionFailed, trio.ClosedResourceError):
                    return False
                await trio.sleep(rtt / 2)
                if await self._probe_burst(punching):
                    return True
                await trio.sleep(config.attempt_gap)
            self._counts["punch_failures"] += 1
            logger.info("%r: punching %s failed after %d attempts",
                        self, connection.peer_id.short(), attempts)  # fmt: skip
            return False
        finally:
            punching.pending = None

    async def _probe_burst(self, punching: _Punching) -> bool:
        """Probe every target for ``punch_window``; True once a direct path is proven."""
        config = self.config
        rounds = max(1, math.ceil(config.punch_window / config.probe_interval))
        for _round in range(rounds):
            if punching.link.direct is not None:
                return True
            for target in punching.targets:
                await self._send_probe(punching, target)
            with trio.move_on_after(config.probe_interval):
                await punching.proven.wait()
        return punching.link.direct is not None

    async def _send_probe(self, punching: _Punching, target: Address) -> None:
        frame = punching.prover.probe(target, trio.current_time())
        try:
            await self._probes.send_to(frame, target)
        except OSError as exc:
            logger.debug("%r: probe to %s failed: %s", self, target, exc)

    async def _watch_direct(self, punching: _Punching) -> None:
        """Consent checks on each punched path while it lives; back to the relay when one dies
        (both sides watch: each stops sending into a dead path on its own)."""
        config = self.config
        link = punching.link
        while True:
            await link.method.wait_value(lambda value: value is ConnectionMethod.PUNCHED)
            while (direct := link.direct) is not None:
                if trio.current_time() - punching.last_proof > config.consent_timeout:
                    logger.info("%r: direct path to %s silent; back to the relay",
                                self, direct.address)  # fmt: skip
                    punching.prover.forget(direct.address)
                    self._routes.pop(direct.address, None)
                    punching.proven = trio.Event()
                    self._fallbacks += 1
                    link.drop_direct()
                    break
                await self._send_probe(punching, direct.address)
                with trio.move_on_after(config.consent_interval):
                    await link.method.wait_transition()

    def _adopt(self, punching: _Punching, address: Address, rtt: float | None) -> None:
        """``address`` answered our probe: carry the connection there."""
        punching.last_proof = trio.current_time()
        link = punching.link
        current = link.direct
        if current is not None and current.address == address:
            return
        if current is not None:
            self._routes.pop(current.address, None)
        else:
            self._upgrades += 1
        self._route(address, link)
        link.use_direct(DirectPath(self._quic, address, ConnectionMethod.PUNCHED))
        punching.proven.set()
        logger.info("%r: punched to %s at %s (rtt %s)", self, link.peer, address, rtt)

    # -- the socket ------------------------------------------------------------------------------

    async def _read_probes(self) -> None:
        """Route each arriving probe frame to its link's prover."""
        while True:
            data, source = await self._probes.receive_from()
            link_id = peek_link_id(data)
            punching = None if link_id is None else self._punching.get(link_id)
            if punching is None:
                continue
            received = punching.prover.receive(data, source, trio.current_time())
            if received.authentic and source not in self._routes:
                self._route(source, punching.link)  # its QUIC may arrive before we adopt it
            if received.reply is not None:
                with contextlib.suppress(OSError):
                    await self._probes.send_to(received.reply, source)
            if received.probe_back:
                await self._send_probe(punching, source)
            if received.proven is not None:
                self._adopt(punching, received.proven, received.rtt)

    async def _read_quic(self) -> None:
        """Route QUIC datagrams to the link of their source; start inbound direct handshakes."""
        nursery = self._nursery_or_raise()
        while True:
            data, source = await self._quic.receive_from()
            link = self._routes.get(source)
            if link is not None:
                link.deliver_direct(data)
            elif self._may_start(data, source):
                nursery.start_soon(self._run_inbound_direct, data, source)

    def _may_start(self, data: bytes, source: Address) -> bool:
        header = parse_header(data)
        if header is None or len(data) < MIN_INITIAL_SIZE:
            return False
        if header.packet_type != QuicPacketType.INITIAL:
            return False
        if self._inbound_handshakes >= self.config.max_inbound_handshakes:
            self._counts["refused"] += 1
            return False
        return True

    async def _accept_relayed(self) -> None:
        """Turn the relay sessions other nodes open to this one into connections."""
        registry = self.registry
        nursery = self._nursery_or_raise()
        while True:
            await registry.home.wait_value(lambda home: home is not None)
            client = registry.client
            if client is None:
                await trio.lowlevel.checkpoint()
                continue
            async with trio.open_nursery() as watch:

                async def until_lost() -> None:
                    await registry.home.wait_value(lambda home: home is None)
                    watch.cancel_scope.cancel()

                watch.start_soon(until_lost)
                while True:
                    session = await client.accept()
                    nursery.start_soon(self._run_inbound_relayed, session)

    # -- the profile -----------------------------------------------------------------------------

    async def _republish(self, profile: NatProfile) -> None:
        """Publish ``profile`` in this node's record, keeping its home relay and candidates."""
        node_id = self.key.node_id.text()
        try:
            current = await self.directory.resolve_record(node_id)
            await self.directory.publish_record(
                node_id,
                profile,
                self.config.record_ttl,
                home_relay=None if current is None else current.home_relay,
                candidates=() if current is None else current.candidates,
            )
        except DirectoryError as exc:
            logger.warning("%r: could not publish the profile: %s", self, exc)

    async def _reprobe(self) -> None:
        """Check every punched path now (after this node's NAT changed)."""
        for punching in list(self._punching.values()):
            direct = punching.link.direct
            if direct is not None:
                await self._send_probe(punching, direct.address)


def _targets(candidates: Sequence[Address], predicted: Sequence[Address]) -> tuple[Address, ...]:
    """Where to probe, predicted mappings first: two sequential NATs then allocate their next
    ports to the same pairs of destinations in the same order, so the probes meet."""
    seen: dict[Address, None] = {}
    for address in (*predicted, *candidates):
        seen.setdefault(normalise_address(address), None)
    return tuple(seen)


def _at_ports(targets: Sequence[Address], ports: Sequence[int]) -> tuple[Address, ...]:
    ips = dict.fromkeys(ip for ip, _ in targets)
    return tuple((ip, port) for ip in ips for port in ports)


class CoordinatorServer(Actor):
    """Reads the node's QUIC and probe views, accepts relayed sessions, hosts the connections,
    and republishes the profile when the NAT changes (``NatProfileChanged``)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator

    async def init(self) -> None:
        coordinator = self._coordinator
        coordinator._nursery = await self.start(self._host)
        coordinator._attach(self.ref)
        self.start_soon(coordinator._read_quic)
        self.start_soon(coordinator._read_probes)
        self.start_soon(coordinator._accept_relayed)
        coordinator.detector.subscribe(self.ref)
        profile = coordinator.detector.profile.value
        if profile is not None:
            self.start_soon(coordinator._republish, profile)

    async def terminate(self, reason: object) -> None:
        self._coordinator.detector.unsubscribe(self.ref)

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, NatProfileChanged):
            logger.info("%r: NAT profile changed; republishing and re-probing", self._coordinator)
            await self._coordinator._republish(message.new)
            await self._coordinator._reprobe()
            return None
        return await super().handle_info(message)

    @staticmethod
    async def _host(*, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()


Coordinator.server_class = CoordinatorServer


@asynccontextmanager
async def open_coordinator(coordinator: Coordinator) -> AsyncIterator[Coordinator]:
    """Run ``coordinator``'s server for the ``async with`` block."""
    async with open_actor(CoordinatorServer(coordinator)):
        yield coordinator
