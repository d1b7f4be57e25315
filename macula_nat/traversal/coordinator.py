"""Coordinator: the Python mirror of the Erlang ``macula_nat_coordinator``.

It owns this node's connections and the punching that upgrades them:

- **Outbound** (:meth:`Coordinator.request_connection`): the target's record (profile,
  candidates, home relay) and the local profile give a :class:`~.strategy.Plan`. A target that
  accepts unsolicited datagrams is dialled directly. Otherwise a relay session to the target
  carries a QUIC connection at once, and, when the plan says a punch can work, the two nodes
  punch in the background over signalling carried inside that connection (so the relay can
  neither read nor forge it, and the initiator's first message leaves with its last handshake
  flight): the initiator sends an :class:`~.punch_wire.Offer` (its candidates,
  predicted ports, a link id and a fresh probe key), the responder answers, the initiator measures
  the round trip, sends ``Sync`` and waits half of it, and both probe every candidate of the other
  (libp2p DCUtR's timing). The first address proven both ways (:mod:`.prover`) carries the
  connection from then on; nothing is lost, since QUIC sees no change (:mod:`..connection.link`).
- **Prediction**: a node behind a sequential NAT predicts its next ports from a fresh mapping,
  taken (a Binding request from the shared socket to an observer address it has not used
  lately, else from a new socket) while the relayed connection is being set up, not from the
  relay's view of an allocation that other flows, and this node's earlier punches, may have
  moved past (:mod:`.fresh_mapping`).
- **Inbound**: relay sessions other nodes open to this one, and Initials arriving directly on the
  node's socket, become connections handed out by :meth:`Coordinator.accept`. A direct Initial
  passes the same :class:`~macula_nat.connection.gate.HandshakeGate` a listener's does
  (``TraversalConfig.inbound_handshakes``): once unproven handshakes pile up the shared socket
  answers with a stateless Retry, so spoofed Initials hold a few slots, not all of them.
- **Liveness**: a punched path is checked every ``consent_interval`` with an authenticated probe;
  without an answer for ``consent_timeout`` the connection falls back to the relay, and the
  initiator punches again after ``retry_interval``. A peer whose probes start arriving from a new
  address (a NAT rebinding) is probed back there and followed once that address answers.

Ownership: the handle owns the tables; the connections and their tasks run in the server's
nursery, so a crash of :class:`CoordinatorServer` closes the connections it carried (and only
those); the next incarnation accepts and connects again.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Final

import attrs
import trio
from aioquic.quic.packet import QuicPacketType

from macula_nat.actors import Actor, Served, Stop, open_actor
from macula_nat.connection import Connection, ConnectionFailed, answer, connect, listen
from macula_nat.connection.driver import parse_header
from macula_nat.connection.gate import (
    Admitted,
    HandshakeGate,
    HandshakeStatistics,
    opens_connection,
)
from macula_nat.connection.link import LINK_ADDRESS, ConnectionMethod, DirectPath, PeerLink
from macula_nat.directory import Directory, DirectoryError
from macula_nat.directory.record import MAX_CANDIDATES as RECORD_CANDIDATES
from macula_nat.directory.record import NodeRecord
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.cache import ProfileCache
from macula_nat.nat.detector import NatDetector, NatProfileChanged
from macula_nat.nat.errors import TransactionTimeout
from macula_nat.nat.profile import NatProfile
from macula_nat.nat.stun_client import StunClient, open_stun_client
from macula_nat.net.address import Address, ip_version, is_global_ipv6, normalise_address
from macula_nat.net.demux import SharedEndpoint, Traffic
from macula_nat.relay import (
    RegistrationFailed,
    RelayError,
    RelayRegistry,
    RelaySession,
)
from macula_nat.relay.tcp_client import TcpRelayEndpoint
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.errors import (
    ConnectTimeout,
    NoRelay,
    NotConnected,
    PunchFailed,
    SymmetricNat,
)
from macula_nat.traversal.fresh_mapping import is_news, pick
from macula_nat.traversal.prediction import predict_ports
from macula_nat.traversal.punch_wire import MAX_CANDIDATES, Role
from macula_nat.traversal.puncher import (
    PendingPunch,
    Puncher,
    PuncherStatistics,
    PunchRef,
    at_ports,
)
from macula_nat.traversal.strategy import (
    Method,
    Plan,
    PortKind,
    Side,
    choose_path,
    port_kind,
)

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
MAX_MAPPING_DESTINATIONS: Final = 16
"""Observer addresses kept for fresh mappings (configured ones and their alternates)."""


def _dial_address(
    record: NodeRecord | None, profile: NatProfile | None, versions: frozenset[int]
) -> Address | None:
    """Where a direct dial of a peer goes: the port its router mapped on request, else its
    first candidate (the address its home relay observed); of those, only an address of an IP
    version this node's socket sends to (``versions``)."""
    dialable = [] if profile is None or profile.mapped is None else [profile.mapped]
    dialable += [] if record is None else record.candidates
    return next((a for a in dialable if ip_version(a[0]) in versions), None)


def _reachable_relay(record: NodeRecord, versions: frozenset[int]) -> Address | None:
    """The peer's home relay at an address of an IP version this node's socket reaches: the
    published one, else its alternate (a dual-stack relay's other address)."""
    for relay in (record.home_relay, record.home_relay_alternate):
        if relay is not None and ip_version(relay[0]) in versions:
            return relay
    return None


def _sequential(profile: NatProfile | None) -> bool:
    """Whether a peer must predict this NAT's next mapping (``pc`` allocation, a delta)."""
    return profile is not None and port_kind(profile) is PortKind.PREDICTED


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
    direct_handshakes: HandshakeStatistics
    """Handshakes other nodes started straight on this node's socket, Retries sent, Initials
    refused, handshakes evicted, and their limits (``TraversalConfig.inbound_handshakes``)."""
    refused_sessions: int
    """Relay sessions other nodes opened, closed at once: too many waiting for a handshake
    (``max_relayed_handshakes``)."""
    relayed_handshakes: int
    """Relay sessions other nodes opened that wait for their handshake now."""
    max_relayed_handshakes: int
    """The limit on ``relayed_handshakes`` (``TraversalConfig.max_relayed_handshakes``)."""
    punching: PuncherStatistics


class Coordinator(Served):
    """This node's connections: see the module docstring. Build it with the node's ``key``, its
    shared socket (``shared``: STUN, relay, punch and QUIC views), its relay ``registry`` (which
    keeps the home relay on the shared socket's relay view), the ``directory`` and ``detector``,
    and the profile ``cache`` (the target's profile comes from its record and is cached; the
    cached one stands in when the directory cannot answer). ``stun`` is the shared socket's
    running STUN client (fresh mappings for port prediction; the detector's mapping tests use
    it too).

    ``accept_peer`` says which authenticated nodes may connect (default: any);
    ``lan_addresses`` are this host's own addresses, offered as candidates (loopback ones aside)
    when the shared socket is bound to a wildcard. ``detector6``: a dual-stack node's IPv6
    detector (its profile is published beside the IPv4 one, and plans IPv6 paths).
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
        cache: ProfileCache | None = None,
        stun: StunClient,
        detector6: NatDetector | None = None,
    ) -> None:
        super().__init__()
        self.key = key
        self.shared = shared
        self.registry = registry
        self.directory = directory
        self.detector = detector
        self.detector6 = detector6
        """A dual-stack node's IPv6 detector: its profile is published (``profile6``) and plans
        the IPv6 path (:func:`~.strategy.choose_path`)."""
        self.cache = cache
        self.config = config or TraversalConfig()
        self._accept_peer = accept_peer or (lambda _: True)
        self._lan = tuple(a for a in lan_addresses if not ipaddress.ip_address(a).is_loopback)
        self._quic = shared.view(Traffic.QUIC)
        self._stun = stun
        self._mapping_destinations = list(detector.observers[:MAX_MAPPING_DESTINATIONS])
        """Observer addresses to ask for fresh mappings: the configured ones, and the
        alternates RFC 5780 observers report."""
        self._fresh: tuple[Address, float] | None = None
        """The latest fresh mapping of the shared socket, and when it was taken."""
        self._nursery: trio.Nursery | None = None
        self._routes: dict[Address, PeerLink] = {}
        self.puncher = Puncher(
            probes=shared.view(Traffic.PUNCH),
            quic=self._quic,
            stack=registry.stack,
            config=self.config,
            candidates=self._candidates,
            observe=self._observe,
            profile=lambda: detector.profile.value,
            routes=self._routes,
        )
        self._connections: dict[NodeId, Connection] = {}
        self._accepted_in, self._accepted = trio.open_memory_channel[Connection](
            self.config.accept_backlog
        )
        self._gate = HandshakeGate(self.config.inbound_handshakes)
        self._handshaking: dict[PeerLink, trio.CancelScope] = {}
        """Inbound direct handshakes under way, by link: cancelling one ends it (eviction)."""
        self._relayed_handshakes = 0
        self._counts = dict.fromkeys(
            ("outbound", "inbound", "direct", "relayed", "refused_sessions"), 0
        )

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
                record, profile = await self._resolve(target)
                plan = self._plan(record, profile, allow_relay)
                if plan is not None and not plan.feasible:
                    raise SymmetricNat(f"no path to {target.short()}: {plan.reason}")
                versions = self.shared.ip_versions
                if plan is not None and plan.version is not None:
                    versions = frozenset((plan.version,))  # dial the version planned
                dial_at = _dial_address(record, profile, versions)
                if self._dials(plan) and dial_at is not None:
                    try:
                        connection: Connection = await nursery.start(
                            self._run_direct, target, dial_at
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
        punch = self.puncher.find(peer)
        if punch is None or punch.role is not Role.INITIATOR:
            raise NotConnected(f"no connection to {peer.short()} that this node initiated")
        return self.puncher.punch_soon(punch, at_ports(punch.targets, predicted_ports))

    def get_pending(self) -> list[PendingPunch]:
        """The punches in flight now."""
        return self.puncher.pending()

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
            punching=self.puncher.statistics(),
            direct_handshakes=self._gate.statistics(),
            refused_sessions=counts["refused_sessions"],
            relayed_handshakes=self._relayed_handshakes,
            max_relayed_handshakes=self.config.max_relayed_handshakes,
        )

    # -- deciding ----------------------------------------------------------------------------

    def _nursery_or_raise(self) -> trio.Nursery:
        self._server_or_raise()
        assert self._nursery is not None
        return self._nursery

    async def _resolve(self, target: NodeId) -> tuple[NodeRecord | None, NatProfile | None]:
        """The target's record (candidates, home relay) from the directory, and its profile:
        the record's (then cached), else the cache's (when the directory cannot answer)."""
        node = target.text()
        cached = None if self.cache is None else self.cache.get_nowait(node).value
        started = trio.current_time()
        try:
            record = await self.directory.resolve_record(node)
        except DirectoryError as exc:
            logger.info("%r: no record for %s: %s", self, target.short(), exc)
            return None, cached
        elapsed_ms = (trio.current_time() - started) * 1000
        logger.info("%r: record of %s resolved in %.0f ms", self, target.short(), elapsed_ms)
        if record is not None and record.profile is not None:
            if self.cache is not None and record.profile != cached:
                await self.cache.put(node, record.profile)
            return record, record.profile
        return record, cached

    def _plan(
        self, record: NodeRecord | None, remote: NatProfile | None, allow_relay: bool
    ) -> Plan | None:
        """The plan for the best path: each IP version both nodes have a profile of (and this
        node's socket sends to) planned with that version's profiles (a dual-stack node's
        IPv6 side is often a firewall, not its IPv4 NAT)."""
        local = self.detector.profile.value
        if local is None or remote is None:
            return None
        local6 = None if self.detector6 is None else self.detector6.profile.value
        remote6 = None if record is None else record.profile6
        return choose_path(
            [local] + ([local6] if local6 is not None else []),
            [remote] + ([remote6] if remote6 is not None else []),
            versions=self.shared.ip_versions,
            allow_relay=allow_relay,
        )

    @staticmethod
    def _dials(plan: Plan | None) -> bool:
        return (
            plan is not None
            and plan.method is Method.DIRECT
            and plan.initiator in (None, Side.LOCAL)
        )

    async def _wait_punched(self, connection: Connection) -> None:
        punching = self.puncher.find(connection.peer_id)
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

    # -- candidates ------------------------------------------------------------------------------

    async def _observe(self) -> None:
        """Refresh the observed mapping of the shared socket (the home relay reports it) and,
        on a sequential NAT, take a fresh one."""
        client = self.registry.client
        if client is not None:
            await client.observe(timeout=self.config.punch_window / 4)
        await self._measure_mapping()

    async def _measure_mapping(self) -> None:
        """On a NAT that allocates ports sequentially, learn the port it hands out now, and
        predict from it (:mod:`.fresh_mapping`): ask an observer where the shared socket is seen
        from a destination it has not used lately, or, when it used every one lately (its
        earlier connections did), from a new socket (the NAT's counter is shared)."""
        if not _sequential(self._profile()) or not self._mapping_destinations:
            await trio.lowlevel.checkpoint()
            return
        now = trio.current_time()
        deadline = now + self.config.punch_window / 4
        reuse = self.config.mapping_reuse
        destination = pick(self._mapping_destinations, self._stun.last_asked, now, reuse)
        if destination is None:
            mapped = await self._new_socket_mapping(self._mapping_destinations[0], deadline)
        else:
            mapped = await self._shared_socket_mapping(destination, deadline)
        if mapped is not None:
            self._fresh = (mapped, trio.current_time())
            logger.debug("%r: fresh mapping %s", self, mapped)

    async def _shared_socket_mapping(self, destination: Address, deadline: float) -> Address | None:
        """Where ``destination`` sees the shared socket, if that is news."""
        stun = self._stun
        previous = stun.last_asked(destination)
        try:
            response = await stun.request(destination, deadline=deadline)
        except TransactionTimeout as exc:
            logger.debug("%r: no fresh mapping from %s: %s", self, destination, exc)
            return None
        other = response.message.other_address
        if other is not None:  # an RFC 5780 observer: three more destinations
            for address in (other, (other[0], destination[1]), (destination[0], other[1])):
                known = self._mapping_destinations
                if address not in known and len(known) < MAX_MAPPING_DESTINATIONS:
                    known.append(normalise_address(address))
        mapped = response.mapped_address
        if mapped is None or not is_news(previous, mapped):
            return None
        return normalise_address(mapped)

    async def _new_socket_mapping(self, destination: Address, deadline: float) -> Address | None:
        """Where ``destination`` sees a new socket of this host: the port the NAT hands out
        now. The shared socket's next new mapping follows it at the delta."""
        socket = await self.registry.stack.bind((self.shared.local_address[0], 0))
        async with socket, open_stun_client(socket) as client:
            try:
                response = await client.request(destination, deadline=deadline)
            except TransactionTimeout as exc:
                logger.debug("%r: no fresh mapping from %s: %s", self, destination, exc)
                return None
        mapped = response.mapped_address
        return None if mapped is None else normalise_address(mapped)

    def _profile(self) -> NatProfile | None:
        profile: NatProfile | None = self.detector.profile.value
        return profile

    def _candidates(self) -> tuple[tuple[Address, ...], tuple[Address, ...]]:
        """This node's candidates (observed mapping, LAN) and predicted next mappings."""
        found: list[Address] = []
        client = self.registry.client
        registration = None if client is None else client.registration.value
        profile = self._profile()
        observed: Address | None = None
        if client is not None and isinstance(client.endpoint, TcpRelayEndpoint):
            # over TCP the relay sees the TCP connection, no UDP mapping: the detector's is it
            if profile is not None and not profile.udp_blocked and profile.public_port:
                observed = profile.public_address
        elif registration is not None:
            observed = normalise_address(registration.observed)
        if observed is not None:
            found.append(observed)
        if profile is not None and profile.mapped is not None and profile.mapped not in found:
            found.append(profile.mapped)  # the router's mapping on request: reachable by anyone
        ip, port = self.shared.local_address
        lan = self._lan if ip in _ANY else (ip,)
        found.extend((address, port) for address in lan if (address, port) not in found)
        predicted: tuple[Address, ...] = ()
        base = observed
        if self._fresh is not None:
            fresh, taken_at = self._fresh
            if trio.current_time() - taken_at <= self.config.fresh_mapping_age:
                base = fresh
        if base is not None and profile is not None and _sequential(profile):
            assert profile.port_delta is not None
            ports = predict_ports([base[1]], profile.port_delta, self.config.predicted_ports)
            predicted = tuple((base[0], p) for p in ports)
        return tuple(found[:MAX_CANDIDATES]), predicted[:MAX_CANDIDATES]

    def _global_candidates(self) -> tuple[Address, ...]:
        """The shared socket at this host's global IPv6 addresses, when it speaks IPv6: peers
        reach it there without any NAT (a stateful firewall still wants a punch)."""
        if 6 not in self.shared.ip_versions:
            return ()
        ip, port = self.shared.local_address
        hosts = self._lan if ip in _ANY else (ip,)
        return tuple((host, port) for host in hosts if is_global_ipv6(host))

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
            async with (
                connect(link, LINK_ADDRESS, self.key, target, config=config) as connection,
                trio.open_nursery() as nursery,
            ):
                self._counts["outbound"] += 1
                self._counts["direct"] += 1
                self._track(connection)
                punch = self.puncher.start(link, connection, Role.INITIATOR, nursery)
                nursery.start_soon(self.puncher.introduce, punch)
                task_status.started(connection)
                started = True
                try:
                    await connection.wait_closed()
                finally:
                    self.puncher.forget(link)
                    self._untrack(connection)
                    nursery.cancel_scope.cancel()
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
        the home relay, else through a visit to the target's home relay (on the node's socket,
        held on ``stack``)."""
        timeout = self.config.relay_timeout
        home = self.registry.home.value
        target_home = None if record is None else _reachable_relay(record, self.shared.ip_versions)
        if record is not None and record.home_relay is not None and target_home is None:
            raise NoRelay(
                f"the home relay of {target.short()} ({record.home_relay[0]}) speaks another IP "
                "version than this node's socket, and has no address of this one"
            )
        client = self.registry.client
        if target_home is not None and (home is None or home.endpoint != target_home):
            try:
                client = await stack.enter_async_context(
                    self.registry.visit(target_home, timeout=timeout)
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
        if attempts:  # a fresh mapping by the time the Offer leaves with the handshake
            self._nursery_or_raise().start_soon(self._measure_mapping)
        async with AsyncExitStack() as stack:
            session = await self._relay_session(target, record, stack)
            stack.push_async_callback(session.aclose)
            link = PeerLink(target, self.shared.local_address, relay=session)
            started = False
            failure: ConnectionFailed | None = None
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run)

                def punch_early(connection: Connection) -> None:
                    """Start the signalling once we have checked the peer: the Offer then
                    travels with our last handshake flight."""
                    punch = self.puncher.start(link, connection, Role.INITIATOR, nursery)
                    if attempts:
                        self.puncher.keep_punched(punch, attempts)

                try:
                    async with connect(
                        link,
                        LINK_ADDRESS,
                        self.key,
                        target,
                        config=self.config.connection,
                        on_established=punch_early,
                    ) as connection:
                        self._counts["outbound"] += 1
                        self._counts["relayed"] += 1
                        self._track(connection)
                        task_status.started(connection)
                        started = True
                        try:
                            await connection.wait_closed()
                        finally:
                            self._untrack(connection)
                except ConnectionFailed as exc:
                    if not started:
                        failure = exc  # raised below, as itself rather than in a group
                    else:
                        logger.info("%r: connection to %s ended: %s", self, target.short(), exc)
                finally:
                    self.puncher.forget(link)
                    link.close()
                    nursery.cancel_scope.cancel()
            if failure is not None:
                raise failure

    async def _run_inbound_relayed(self, session: RelaySession) -> None:
        """Serve the connection ``session``'s peer makes over it, until it closes. Counted in
        ``_relayed_handshakes`` (by the caller) until the handshake ends."""
        peer = session.peer
        handshaking = True
        link = PeerLink(peer, self.shared.local_address, relay=session)
        try:
            if not self._accept_peer(peer):
                logger.info("%r: relay session from %s refused", self, peer.short())
                return
            self._nursery_or_raise().start_soon(self._measure_mapping)  # for our Answer
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run)
                async with listen(
                    link, self.key, {peer}, max_handshakes=1, config=self.config.connection
                ) as listener:
                    connection: Connection | None = None  # unless accepted in time
                    with trio.move_on_after(self.config.connection.handshake_timeout * 2):
                        connection = await listener.accept()
                    self._relayed_handshakes -= 1
                    handshaking = False
                    if connection is None:
                        logger.info("%r: no handshake from %s over the relay", self, peer.short())
                    else:
                        await self._carry_inbound(link, connection, "relayed")
                nursery.cancel_scope.cancel()
        finally:
            if handshaking:
                self._relayed_handshakes -= 1
            link.close()
            await session.aclose()

    async def _run_inbound_direct(self, link: PeerLink, initial: bytes, admitted: Admitted) -> None:
        """Serve the connection whose Initial ``initial`` came straight to ``link``'s peer
        address, once ``admitted`` by the gate (which holds its slot until the handshake ends);
        carry it until it closes."""
        try:
            with self._handshaking.setdefault(link, trio.CancelScope()):
                async with answer(
                    link,
                    LINK_ADDRESS,
                    self.key,
                    self._accept_peer,
                    initial,
                    admitted,
                    config=self.config.connection,
                ) as connection:
                    self._handshake_ended(link)  # no eviction from here on
                    link.peer = connection.peer_id
                    await self._carry_inbound(link, connection, "direct")
        except ConnectionFailed as exc:
            logger.debug("%r: inbound direct connection failed: %s", self, exc)
        finally:
            self._handshake_ended(link)
            self._unroute(link)
            link.close()

    def _handshake_ended(self, link: PeerLink) -> None:
        """Free the gate's slot of ``link``'s handshake (done, failed or evicted)."""
        self._gate.release(link)
        self._handshaking.pop(link, None)

    async def _carry_inbound(self, link: PeerLink, connection: Connection, kind: str) -> None:
        """Count, track and hand over an accepted ``kind`` connection; carry it (and its
        punching) until it closes."""
        self._counts["inbound"] += 1
        self._counts[kind] += 1
        self._track(connection)
        async with trio.open_nursery() as nursery:
            self.puncher.start(link, connection, Role.RESPONDER, nursery)
            self._hand_over(connection)
            try:
                await connection.wait_closed()
            finally:
                self.puncher.forget(link)
                self._untrack(connection)
                nursery.cancel_scope.cancel()
                await connection._end("the coordinator carrying it ended")  # the peer hears

    def _hand_over(self, connection: Connection) -> None:
        try:
            self._accepted_in.send_nowait(connection)
        except trio.WouldBlock:
            logger.warning("%r: accept backlog full; closing %s", self, connection.peer_id.short())
            self._nursery_or_raise().start_soon(connection.aclose)

    # -- the socket ------------------------------------------------------------------------------

    async def _read_quic(self) -> None:
        """Route QUIC datagrams to the link of their source, or of their connection id (a peer
        whose NAT rebound: QUIC authenticates the packet, and the path follows only once the
        new address answers a probe); start inbound direct handshakes."""
        nursery = self._nursery_or_raise()
        while True:
            for data, source in await self._quic.receive_batch():
                link = self._routes.get(source) or self._by_connection_id(data)
                if link is not None:
                    link.deliver_direct(data)
                else:
                    await self._admit(nursery, data, source)

    def _by_connection_id(self, data: bytes) -> PeerLink | None:
        """The direct link whose connection the datagram's destination connection id names."""
        header = parse_header(data)
        if header is None or header.packet_type != QuicPacketType.ONE_RTT:
            return None
        for connection in self._connections.values():
            link = connection.link
            if link is not None and link.direct is not None and connection.owns(header):
                return link
        return None

    async def _admit(self, nursery: trio.Nursery, data: bytes, source: Address) -> None:
        """Start an inbound direct handshake for an Initial from a new address if the gate
        lets it through (it may answer with a Retry instead, or drop it)."""
        header = parse_header(data)
        if header is None or not opens_connection(header, data):
            return
        admitted = await self._gate.admit(self._quic, header, source, self._evict)
        if admitted is None:
            return
        link = PeerLink(
            None, self.shared.local_address,
            direct=DirectPath(self._quic, source, ConnectionMethod.DIRECT),
        )  # fmt: skip
        self._route(source, link)  # its next datagrams go to the handshake
        self._gate.take(link, admitted)
        nursery.start_soon(self._run_inbound_direct, link, data, admitted)

    def _evict(self, victim: object) -> None:
        """End the inbound direct handshake on ``victim`` (a link) to make room."""
        assert isinstance(victim, PeerLink)
        scope = self._handshaking.setdefault(victim, trio.CancelScope())
        scope.cancel()  # before its task runs, too: it enters a cancelled scope

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
                    if self._relayed_handshakes >= self.config.max_relayed_handshakes:
                        self._refuse_session(session)
                        await session.aclose()
                        continue
                    self._relayed_handshakes += 1
                    nursery.start_soon(self._run_inbound_relayed, session)

    def _refuse_session(self, session: RelaySession) -> None:
        """Count (and log, the first of each hundred) a relay session closed for want of room."""
        refused = self._counts["refused_sessions"]
        self._counts["refused_sessions"] = refused + 1
        if refused % 100 == 0:
            logger.warning(
                "%r: %d relay sessions wait for a handshake; closing the one from %s "
                "(%d refused so far)",
                self, self._relayed_handshakes, session.peer.short(), refused + 1,
            )  # fmt: skip

    # -- the profile -----------------------------------------------------------------------------

    async def _republish(self, profile: NatProfile) -> None:
        """Publish ``profile`` in this node's record, keeping its home relay and candidates;
        the port mapping the profile carries (``mapped``) is a candidate too, after the
        observed address, and a mapping that ended leaves the candidates with it. The shared
        socket's global IPv6 addresses are candidates too (no NAT in front of them)."""
        node_id = self.key.node_id.text()

        reachable = self._global_candidates()

        def change(record: NodeRecord) -> NodeRecord:
            old = record.profile.mapped if record.profile is not None else None
            candidates = [c for c in record.candidates if c not in (old, profile.mapped)]
            if profile.mapped is not None:
                candidates.insert(min(1, len(candidates)), profile.mapped)
            candidates.extend(c for c in reachable if c not in candidates)
            return attrs.evolve(record, profile=profile, candidates=candidates[:RECORD_CANDIDATES])

        try:
            await self.directory.update_record(node_id, self.config.record_ttl, change)
        except DirectoryError as exc:
            logger.warning("%r: could not publish the profile: %s", self, exc)

    async def _republish6(self, profile6: NatProfile) -> None:
        """Publish a dual-stack node's IPv6 profile in its record, keeping everything else."""

        def change(record: NodeRecord) -> NodeRecord:
            return attrs.evolve(record, profile6=profile6)

        try:
            await self.directory.update_record(
                self.key.node_id.text(), self.config.record_ttl, change
            )
        except DirectoryError as exc:
            logger.warning("%r: could not publish the IPv6 profile: %s", self, exc)


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
        self.start_soon(coordinator.puncher.read_probes)
        self.start_soon(coordinator._accept_relayed)
        coordinator.detector.subscribe(self.ref)  # a dual-stack node's IPv6 changes too
        self.start_soon(self._publish_first)
        if coordinator.detector6 is not None:
            self.start_soon(self._publish_first6, coordinator.detector6)

    async def _publish_first(self) -> None:
        """Publish the record with the current profile, once there is one: the first detection
        is not a ``NatProfileChanged`` (only later changes are)."""
        detector = self._coordinator.detector
        profile = await detector.profile.wait_value(lambda p: p is not None)
        assert profile is not None
        await self._coordinator._republish(profile)

    async def _publish_first6(self, detector6: NatDetector) -> None:
        profile6 = await detector6.profile.wait_value(lambda p: p is not None)
        assert profile6 is not None
        await self._coordinator._republish6(profile6)

    async def terminate(self, reason: object) -> None:
        self._coordinator.detector.unsubscribe(self.ref)

    async def handle_info(self, message: Any) -> Stop | None:
        if isinstance(message, NatProfileChanged):
            logger.info("%r: NAT profile changed; republishing and re-probing", self._coordinator)
            six = self._coordinator.detector6
            if six is not None and ip_version(message.new.public_ip) == 6:  # its IPv4 one: 4
                await self._coordinator._republish6(message.new)
                await self._coordinator.puncher.reprobe()
                return None
            await self._coordinator._republish(message.new)
            await self._coordinator.puncher.reprobe()
            if message.old.udp_blocked and not message.new.udp_blocked:
                await self._coordinator.puncher.udp_returned()
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
