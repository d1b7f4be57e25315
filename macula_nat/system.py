"""The NAT system: one supervision tree holding the observer, the profile cache, the detector,
the relay registry (this node's home relay) and the coordinator (its connections).

``async with open_nat_system(NatConfig(...)) as nat:`` (or ``await nursery.start(run_nat_system,
config)``) starts it inside the caller's nursery; ``supervision.md`` draws the tree. While it
runs, the module-level calls of :mod:`macula_nat.erlang` (the Erlang modules' API, such as
``nat_detector`` and ``nat_cache``) find it through :func:`current_system`.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import trio

from macula_nat.actors import (
    ActorError,
    ChildSpec,
    Registry,
    Restart,
    Strategy,
    Supervisor,
    SupervisorRef,
    open_actor,
)
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import DhtNode
from macula_nat.dht.read_only import ReadOnlyFollower
from macula_nat.directory import Directory, EmbeddedDirectory
from macula_nat.directory.fallback import FallbackDirectory
from macula_nat.directory.mainline import MainlineDirectory
from macula_nat.identity import NodeId, NodeKey
from macula_nat.nat.cache import ProfileCache
from macula_nat.nat.detector import NatDetector
from macula_nat.nat.errors import NotDetected
from macula_nat.nat.observer import Observer, ObserverRef
from macula_nat.nat.profile import NatProfile
from macula_nat.nat.stun_client import StunClient, open_stun_client
from macula_nat.net import Address, RealUdpStack, UdpStack
from macula_nat.net.address import (
    ANY_IPV4,
    ip_version,
    normalise_address,
    normalise_addresses,
    optional_address,
)
from macula_nat.net.demux import SharedEndpoint, Traffic, open_shared_endpoint
from macula_nat.net.endpoint import check_dual_stack
from macula_nat.portmap.client import PortMapConfig, PortMapper, port_mapping_config
from macula_nat.relay import (
    RegistryConfig,
    RelayConfig,
    RelayedDirectory,
    RelayInfo,
    RelayNode,
    RelayRegistry,
    TcpRelayConfig,
)
from macula_nat.traversal.config import TraversalConfig
from macula_nat.traversal.connector import Connector
from macula_nat.traversal.coordinator import Coordinator

logger = logging.getLogger(__name__)

DHT: str = "nat_dht"
OBSERVER: str = "nat_observer"
CACHE: str = "nat_cache"
DETECTOR: str = "nat_detector"
DETECTOR6: str = "nat_detector6"
REGISTRY: str = "nat_relay_registry"
COORDINATOR: str = "nat_coordinator"
PORT_MAPPER: str = "nat_port_mapper"
DHT_READ_ONLY: str = "nat_dht_read_only"
RELAY: str = "nat_relay"
"""The relay a running node may start (:meth:`NatSystem.start_relay`); not started by default."""


@attrs.frozen
class NatConfig:
    """What the NAT system runs with; every timeout and period is here so tests can shrink them.

    ``stack`` is where sockets come from (None: the host's real UDP stack). ``observers`` are
    the STUN observers the detector probes (gateways run them); a ``dual_stack`` node given
    observers of both IP versions classifies each version on its own, in parallel (its IPv4
    NAT, and its IPv6 side, often a stateful firewall: :attr:`NatSystem.detector6`).
    ``observe`` (and ``observe_alternate``, for a full RFC 5780 server) makes this node an
    observer itself, as public gateway nodes are. ``directory`` is where peers' profiles are
    resolved (None: the Mainline DHT when ``dht`` is set, else an embedded, in-process
    directory).
    """

    stack: UdpStack | None = None
    observers: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)
    detect_timeout: float = 5.0
    refresh_interval: float | None = 300.0
    detect_on_start: bool = True
    observe: Address | None = attrs.field(default=None, converter=optional_address)
    observe_alternate: Address | None = attrs.field(default=None, converter=optional_address)
    directory: Directory | None = None
    dht: DhtConfig | None = None
    """Join the Mainline DHT (bootstrap: gateways' DHT ports) and use it as the directory,
    unless ``directory`` is given. With ``read_only`` None (the default) the DHT side is
    read-only (BEP 43) until the NAT profile says the host is reachable from anywhere
    (`macula_nat.dht.read_only`), a full node from then on; a node that is an observer
    (``observe``) is public, so a full node from the start."""
    landmarks: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)
    """With ``dht``: the deployment's region landmarks (DHT addresses, the same list in the same
    order everywhere); relays near the node are then listed first (`MainlineDirectory`)."""
    key: NodeKey | None = None
    """The node's identity: its records are signed with it (None: a new key each start)."""
    listen: Address = attrs.field(default=(ANY_IPV4, 0), converter=normalise_address)
    """The node's one socket for STUN, relays, punching and QUIC (default: any port)."""
    dual_stack: bool = False
    """Bind that socket for IPv4 and IPv6 at once (``listen`` must then be ``("::", port)``):
    the node offers its addresses of both versions as candidates, reaches relays and peers of
    either, and punches IPv6 first (:mod:`macula_nat.traversal.happy_eyeballs`). One socket,
    not two, because everything above it (demultiplexer, STUN client, relay link, QUIC) is
    built on the one shared socket; see :meth:`UdpStack.bind <macula_nat.net.UdpStack.bind>`."""
    traversal: TraversalConfig = attrs.Factory(TraversalConfig)
    relays: RegistryConfig = attrs.Factory(RegistryConfig)
    accept_peer: Callable[[NodeId], bool] | None = None
    """Which authenticated nodes may connect to this one (None: any)."""
    port_mapping: PortMapConfig | None = attrs.field(default=None, converter=port_mapping_config)
    """Ask the router to map the node's port (PCP, NAT-PMP, UPnP IGD; ``True`` for the
    defaults): a mapped port is dialled directly, so even a symmetric NAT stops needing the
    relay. Off by default: it changes the router's state (an inbound port stays open while the
    node runs) and talks to whatever answers on the LAN, which is the application's call, and
    a node that never asks behaves the same everywhere (tests, servers with no router)."""
    cache_size: int = 10_000
    cache_ttl: float = 300.0
    intensity: int = 3
    period: float = 5.0
    wall_clock: Callable[[], float] = time.time

    def __attrs_post_init__(self) -> None:
        if self.observe_alternate is not None and self.observe is None:
            raise ValueError("observe_alternate needs observe (the primary address) too")
        if self.dual_stack:
            check_dual_stack(self.listen[0])


@attrs.frozen(eq=False)
class NatSystem:
    """Handles to a running NAT system.

    ``detector``, ``cache``, ``relays`` (the relay registry) and ``coordinator`` are the
    component handles (their state survives restarts of their actors); ``connector`` connects
    to other nodes; ``shared`` is the node's socket; ``supervisor`` is the tree's root;
    ``registry`` finds each actor by name (``nat_dht``, ``nat_observer``, ``nat_cache``,
    ``nat_detector``, ``nat_dht_read_only``, ``nat_port_mapper``, ``nat_relay_registry``,
    ``nat_coordinator``).
    """

    config: NatConfig
    key: NodeKey
    detector: NatDetector
    cache: ProfileCache
    directory: Directory
    dht: DhtNode | None
    relays: RelayRegistry
    coordinator: Coordinator
    connector: Connector
    shared: SharedEndpoint
    supervisor: SupervisorRef
    registry: Registry
    stack: UdpStack
    port_mapper: PortMapper | None = None
    """The port mapper (``nat_port_mapper``) when ``NatConfig.port_mapping`` is on."""
    detector6: NatDetector | None = None
    """A dual-stack node's IPv6 detector (``nat_detector6``), given IPv6 observers beside
    IPv4 ones: ``detector`` then classifies the IPv4 side only. Its changes are published on
    ``detector``'s ``nat_profile_changed`` topic too."""
    _relay: list[RelayNode] = attrs.field(factory=list, init=False)
    """The relay started by :meth:`start_relay`, while it runs (at most one)."""

    @property
    def node_id(self) -> NodeId:
        return self.key.node_id

    def get_node_id(self) -> NodeId:
        """This node's id (the guide's ``macula_nat_system:get_node_id/0``); ``str()`` of it is
        the 64 hex digits peers connect to."""
        return self.key.node_id

    def get_public_endpoint(self) -> Address:
        """This node's public ``(ip, port)`` as peers see it (the guide's
        ``get_public_endpoint/0``): the detected profile's, else the address the home relay
        saw at registration. Raises :class:`NotDetected` before either is known."""
        profile: NatProfile | None = self.detector.profile.value
        if profile is not None:
            return profile.public_address
        if self.relays.observed is not None:
            return self.relays.observed
        raise NotDetected(
            "no public endpoint yet: the NAT is not detected and no relay has seen this node "
            "(await nat.wait_ready() or nat_detector.detect() first)"
        )

    @property
    def relay(self) -> RelayNode | None:
        """The relay this node runs for others (:meth:`start_relay`), if any."""
        return self._relay[0] if self._relay else None

    async def start_relay(
        self,
        listen: Address | None = None,
        *,
        config: RelayConfig | None = None,
        announce: bool = True,
        tcp: TcpRelayConfig | None = None,
        **options: Any,
    ) -> RelayNode:
        """Make this running node a relay for others: a :class:`RelayNode` (the guide's
        ``macula_relay_node``) under the system's supervisor as ``nat_relay``, on its own
        socket at ``listen`` (default: the node's IP, any port), enabled with ``options``
        (:meth:`RelayNode.enable`'s: ``max_sessions``, ``bandwidth_limit``,
        ``session_timeout``, ``idle_timeout``, ``on_session_start``, ``on_session_end``, ...)
        and, with ``announce``, registered in the directory through the relay registry so
        other nodes find it; with ``tcp`` it serves nodes over TCP/TLS too. Raises
        RuntimeError when this node already runs one."""
        if self._relay:
            raise RuntimeError(f"{self.relay} already runs on this node: stop_relay() first")
        where = normalise_address(listen) if listen is not None else (self.config.listen[0], 0)
        relay = RelayNode(self.stack, where, self.key, config, tcp=tcp, directory=self.directory)
        await relay.enable(**options)
        await self.supervisor.start_child(relay.child_spec(RELAY, name=RELAY))
        self._relay.append(relay)
        if announce:
            await self.relays.register(self.node_id, relay.address)
        logger.info("%s: relaying for others at %s", self.node_id.short(), relay.address)
        return relay

    async def stop_relay(self) -> None:
        """Stop the relay :meth:`start_relay` started: its sessions end (``on_session_end``
        runs for each), its nodes are told, and it is no longer announced (the record already
        published lapses with its TTL). Does nothing when there is none."""
        if not self._relay:
            await trio.lowlevel.checkpoint()
            return
        relay = self._relay.pop()
        self.relays.remove_relay(relay.address)
        await relay.disable()
        await self.supervisor.terminate_child(RELAY)
        await self.supervisor.delete_child(RELAY)

    async def wait_ready(self) -> tuple[NatProfile, RelayInfo]:
        """Wait until this node can connect and be connected to: its NAT detected and a home
        relay registered (its record is then being published). Returns both."""
        profile: NatProfile = await self.detector.profile.wait_value(lambda p: p is not None)
        home: RelayInfo = await self.relays.home.wait_value(lambda h: h is not None)
        return profile, home

    @property
    def observer(self) -> ObserverRef | None:
        """The observer's current incarnation, if this node runs one."""
        ref = self.registry.whereis(OBSERVER)
        return ref if isinstance(ref, ObserverRef) else None


class NoNatSystem(ActorError):
    """A module-level call found no NAT system to act on."""


_current: contextvars.ContextVar[NatSystem | None] = contextvars.ContextVar(
    "macula_nat_system", default=None
)
_running: list[NatSystem] = []


def current_system() -> NatSystem:
    """The NAT system the module-level calls act on.

    Inside an ``open_nat_system`` block (and tasks started from it) that is its system;
    elsewhere, the one system running in this process. Raises :class:`NoNatSystem` when there
    is none, or several and the context does not say which.
    """
    system = _current.get()
    if system is not None:
        return system
    if len(_running) == 1:
        return _running[0]
    if not _running:
        raise NoNatSystem("no NAT system is running: start one with open_nat_system()")
    raise NoNatSystem(
        f"{len(_running)} NAT systems run in this process: call the one you mean "
        "(its handles: system.detector, system.cache)"
    )


@attrs.frozen(eq=False)
class _Parts:
    tree: Supervisor
    key: NodeKey
    detector: NatDetector
    cache: ProfileCache
    directory: Directory
    dht: DhtNode | None
    relays: RelayRegistry
    coordinator: Coordinator
    port_mapper: PortMapper | None
    detector6: NatDetector | None


def _build(config: NatConfig, stack: UdpStack, shared: SharedEndpoint, stun: StunClient) -> _Parts:
    key = config.key if config.key is not None else NodeKey.generate()
    dht: DhtNode | None = None
    directory: Directory
    if config.directory is not None:
        directory = config.directory
    elif config.dht is not None:
        dht = DhtNode(stack, config.dht)
        directory = MainlineDirectory(dht, key, clock=config.wall_clock, landmarks=config.landmarks)
    else:
        directory = EmbeddedDirectory(clock=config.wall_clock)
    if config.relays.tcp_fallback is not None:  # no UDP, no DHT: the home relay's directory
        relayed = RelayedDirectory(key, lambda: relays, clock=config.wall_clock)
        directory = FallbackDirectory(directory, relayed, lambda: relays.udp_blocked.value)
    cache = ProfileCache(directory, max_entries=config.cache_size, default_ttl=config.cache_ttl)
    observers, observers6 = _observers_by_version(config)
    detector_for = partial(
        NatDetector,
        stack,
        timeout=config.detect_timeout,
        refresh_interval=config.refresh_interval,
        detect_on_start=config.detect_on_start,
        wall_clock=config.wall_clock,
        client=stun,
    )
    detector = detector_for(observers)
    # a dual-stack node's IPv6 side: the same settings, changes on the same topic
    detector6 = detector_for(observers6, changes=detector.changes) if observers6 else None
    children: list[ChildSpec] = []
    if dht is not None:
        children.append(dht.child_spec(DHT, name=DHT))
    if config.observe is not None:
        children.append(
            ChildSpec(
                OBSERVER,
                Observer,
                (stack, config.observe, config.observe_alternate),
                name=OBSERVER,
                restart=Restart.PERMANENT,
            )
        )
    relays = RelayRegistry(
        directory,
        stack,
        key,
        config=config.relays,
        endpoint=shared.view(Traffic.RELAY),
        on_udp_blocked=detector.set_udp_blocked,
    )
    coordinator = Coordinator(
        key,
        shared,
        relays,
        directory,
        detector,
        config=config.traversal,
        accept_peer=config.accept_peer,
        lan_addresses=stack.addresses,
        cache=cache,
        stun=stun,
        detector6=detector6,
    )
    children.append(cache.child_spec(CACHE, name=CACHE))
    children.append(detector.child_spec(DETECTOR, name=DETECTOR))
    if detector6 is not None:  # started beside the IPv4 one: both detect at once
        children.append(detector6.child_spec(DETECTOR6, name=DETECTOR6))
    if dht is not None and dht.config.read_only is None and config.observe is None:
        # read-only until the profile says reachable (an observer is public: a full node)
        dht.set_read_only(True)
        dht_side = (
            detector6
            if detector6 is not None and ip_version(dht.config.listen[0]) == 6
            else detector
        )
        children.append(
            ChildSpec(DHT_READ_ONLY, ReadOnlyFollower, (dht, dht_side), name=DHT_READ_ONLY)
        )
    port_mapper: PortMapper | None = None
    if config.port_mapping is not None:
        port = shared.local_address[1]
        port_mapper = PortMapper(stack, port, config.port_mapping, detector=detector)
        children.append(port_mapper.child_spec(PORT_MAPPER, name=PORT_MAPPER))
    children.append(relays.child_spec(REGISTRY, name=REGISTRY))
    children.append(coordinator.child_spec(COORDINATOR, name=COORDINATOR))
    tree = Supervisor(
        children,
        strategy=Strategy.ONE_FOR_ONE,
        intensity=config.intensity,
        period=config.period,
    )
    return _Parts(
        tree, key, detector, cache, directory, dht, relays, coordinator, port_mapper, detector6
    )


def _observers_by_version(config: NatConfig) -> tuple[tuple[Address, ...], tuple[Address, ...]]:
    """The observers of the detector and of the IPv6 detector (none unless the node is
    dual-stack and has observers of both versions: then IPv4 ones and IPv6 ones)."""
    four = tuple(o for o in config.observers if ip_version(o[0]) == 4)
    six = tuple(o for o in config.observers if ip_version(o[0]) == 6)
    if config.dual_stack and four and six:
        return four, six
    return config.observers, ()


@asynccontextmanager
async def _open_sockets(
    stack: UdpStack, listen: Address, dual_stack: bool = False
) -> AsyncIterator[tuple[SharedEndpoint, StunClient]]:
    """The node's socket, its demultiplexer and its STUN client, for the block.

    They run in a shielded task, so a cancel from outside leaves them serving until the block
    (the actors that use them) has ended; only then do they stop and the socket closes.
    """
    release = trio.Event()

    async def serve(*, task_status: trio.TaskStatus[tuple[SharedEndpoint, StunClient]]) -> None:
        socket = await stack.bind(listen, dual_stack=dual_stack)
        with trio.CancelScope(shield=True):
            async with (
                open_shared_endpoint(socket) as shared,
                open_stun_client(shared.view(Traffic.STUN)) as stun,
            ):
                task_status.started((shared, stun))
                await release.wait()

    async with trio.open_nursery() as nursery:
        sockets: tuple[SharedEndpoint, StunClient] = await nursery.start(serve)
        try:
            yield sockets
        finally:
            release.set()


@asynccontextmanager
async def open_nat_system(config: NatConfig | None = None) -> AsyncIterator[NatSystem]:
    """Run the NAT system for the ``async with`` block; it stops in reverse order after it.

    Leaving the block, or a cancel from outside, stops the actors first (the tree, in reverse
    start order, each within its shutdown time), then what they use: the socket closes last.
    """
    config = config or NatConfig()
    stack = config.stack if config.stack is not None else RealUdpStack()
    async with _open_sockets(stack, config.listen, config.dual_stack) as (shared, stun):
        parts = _build(config, stack, shared, stun)
        async with open_actor(parts.tree) as supervisor:
            system = NatSystem(
                config,
                parts.key,
                parts.detector,
                parts.cache,
                parts.directory,
                parts.dht,
                parts.relays,
                parts.coordinator,
                Connector(parts.coordinator),
                shared,
                supervisor,
                supervisor.registry,
                stack,
                parts.port_mapper,
                parts.detector6,
            )
            token = _current.set(system)
            _running.append(system)
            try:
                yield system
            finally:
                _running.remove(system)
                _current.reset(token)


async def run_nat_system(
    config: NatConfig | None = None,
    *,
    task_status: trio.TaskStatus[NatSystem] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The ``nursery.start`` form: ``nat = await nursery.start(run_nat_system, config)``.

    Runs until the host nursery is cancelled (then stops the tree in reverse order, and only
    then closes the socket).
    """
    async with open_nat_system(config) as system:
        task_status.started(system)
        await trio.sleep_forever()
