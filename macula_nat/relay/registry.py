"""RelayRegistry: the Python mirror of the Erlang ``macula_relay_registry``.

Two roles share one handle:

- A relay **registers** itself (:meth:`RelayRegistry.register`): its endpoint is announced
  through the directory and announced again before the announcement's TTL runs out, for as long
  as the registry's server runs.
- A node (given its ``key``) keeps a **home relay**: it probes the announced relays, registers
  with the one of lowest smoothed latency that has spare capacity (the :class:`RelayClient`
  then sends KEEPALIVEs well under 30 s, holding the NAT mapping open), publishes its record
  with that ``home_relay``, and fails over to the next best relay when the registration is lost
  and does not come back within ``failover_grace`` (the relay closed it, or nothing was heard
  from it for the client's ``liveness_timeout``), publishing its record again.

:meth:`RelayRegistry.find_relay` answers "which relay reaches this target": the target's home
relay (from its record) when reachable, else the best reachable relay by latency with load
below ``max_load``; :class:`NoRelay` when none.

Probing: a probe registers with the relay under a throwaway key of the registry's own (so it
never displaces the node's real registration), on a fresh socket, keeps it for
``probe_window`` seconds while the client's KEEPALIVEs measure the round trip and read the
relay's load from the PONGs, then closes it. The relay's node id comes from its signed
REGISTERED (for relays registered here, the probe insists on the id given to ``register``).
The home relay is measured by the home registration itself, not probed. Each success adds a
sample to an exponentially weighted average (:mod:`.selection`); a failure marks the relay
unreachable until its next success.

Visiting: to reach a node homed elsewhere, the node registers with that node's home relay for
a while (:meth:`RelayRegistry.visit`). Given the node's shared socket (``endpoint``, its relay
view), every registration of the node (home and visits) rides that one socket, so each relay
sees the mapping the node's other protocols use: the registry is then the view's one reader
and hands each datagram to the registration with the relay it came from (others are dropped
and counted). A relay keys registrations by source address, so the registrations with one
relay are one :class:`RelayClient`, shared by its users and closed when the last one leaves.
Without ``endpoint`` every registration binds a socket of its own.

Networks that block UDP: with ``tcp_fallback`` (:class:`TcpFallback`), when no relay answers a
UDP probe within its ``udp_bound``, the node registers with a relay over TCP/TLS instead
(:mod:`.tcp_client`; framed or as a WebSocket), sets :attr:`RelayRegistry.udp_blocked`, and
makes its visits over TCP too, so relayed connections work as before: their QUIC datagrams
ride the TCP link unchanged. Every ``reprobe_interval`` it probes the relay over UDP again
(one cheap registration); when that answers it leaves TCP and registers over UDP as usual.

Ownership: the handle owns the table, the announced relays, the counters and, on the shared
endpoint, the registrations themselves (each a :class:`RelayClient` handle: its link, its
sessions), so all of them survive a crash of :class:`RelayRegistryServer`. The registrations'
actors run in the server's tasks: a crash stops them for a moment, and the next incarnation
runs them again (they register again, and the relay carries the node's sessions over, so the
relayed connections riding them carry on: QUIC resends what the moment dropped) and holds the
home relay it had again, republishing the record. A registration whose holder died with the
crash (the home one) waits ``failover_grace`` for a holder to come back before it ends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio
from trio_util import AsyncValue

from macula_nat.actors import Actor, Registry, Served, open_actor
from macula_nat.directory import Directory, DirectoryError
from macula_nat.directory.record import MAX_CANDIDATES, NodeRecord
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import (
    Address,
    any_address,
    ip_version,
    normalise_address,
    normalise_addresses,
    optional_address,
)
from macula_nat.net.endpoint import UdpEndpoint, UdpStack

from .client import ClientConfig, RelayClient, open_relay_client
from .client_session import RelaySession
from .errors import RegistrationFailed
from .frames import FrameType, Reason, encode
from .handshake import ClientHandshake
from .selection import DEFAULT_GAIN, DEFAULT_MAX_LOAD, NoRelay, RelayInfo, RelayTable, choose, rank
from .tcp_client import TcpRelayEndpoint, open_tcp_relay_endpoint
from .tcp_link import LinkError

__all__ = [
    "NoRelay",
    "RegistryConfig",
    "RegistryStatistics",
    "RelayInfo",
    "RelayRegistry",
    "RelayRegistryServer",
    "TcpFallback",
    "open_relay_registry",
]

logger = logging.getLogger(__name__)


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{attribute.name} must be a positive finite number, not {value!r}")


def _fraction(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0 < value < 1:
        raise ValueError(f"{attribute.name} must be in (0, 1), not {value!r}")


_HOME_CLIENT: Final = ClientConfig(keepalive_interval=10.0, liveness_timeout=35.0)
_PINGS: Final = 6
"""HELLOs to each relay within a fallback's ``udp_bound`` (see ``_udp_ping``)."""
_CHALLENGE: Final = bytes([FrameType.CHALLENGE])
_LOSSY_ROUNDS: Final = 3
"""Probe rounds in a row, each with a relay answering over UDP yet no probe completing (a
lossy path, not a blocked one), tried at once before a fallback node takes TCP anyway: a
relay over TCP beats none, and the node comes back at the next re-probe."""


@attrs.frozen
class TcpFallback:
    """Reach relays over TCP/TLS when none answers over UDP (see the module docstring).

    ``udp_bound`` is how long a round of UDP probes may go unanswered before the node falls
    back: 1.5 s is three of QUIC's initial probe timeouts' worth of round trips (RFC 9002's
    333 ms initial RTT) beyond what a relay on another continent needs to answer a probe, and
    a lost probe is retried within it. Every ``reprobe_interval`` the relay is probed over UDP
    again (one registration round under a throwaway key: a few hundred bytes); once it answers,
    UDP is reported working (the detector detects again and connections punch) and the TCP
    registration is kept ``handover`` seconds more, so the connections riding it go direct
    before it closes. ``port`` is the relays' TCP port (None: their UDP port number);
    ``websocket`` a path to upgrade on (None: the framed form). ``relays`` are relays to try
    over TCP when the directory lists none: with UDP blocked the Mainline DHT cannot list
    them, and the node's directory then goes through the relay it reaches (the gateways').
    """

    udp_bound: float = attrs.field(default=1.5, validator=_positive)
    reprobe_interval: float = attrs.field(default=3.0, validator=_positive)
    handover: float = attrs.field(default=10.0, validator=_positive)
    connect_timeout: float = attrs.field(default=5.0, validator=_positive)
    port: int | None = None
    websocket: str | None = None
    relays: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)


@attrs.frozen
class RegistryConfig:
    """Periods (seconds) and bounds of a :class:`RelayRegistry`.

    Relays are announced for ``announce_ttl`` and again at ``refresh_fraction`` of it (after
    ``retry_interval`` when the directory could not be reached). Relays are probed every
    ``probe_interval``, at most ``max_probes`` at once, each within ``probe_timeout``, reading
    ``probe_window`` of KEEPALIVEs. Latency samples are averaged with weight ``gain``; relays
    reporting ``max_load`` permille or more are full. The node's record lives ``record_ttl``
    and is published again at ``refresh_fraction`` of it. A lost home registration that is not
    back within ``failover_grace`` fails over. ``home_client`` configures the node's
    registrations, home and visits (its ``keepalive_interval`` must stay well under 30 s).
    ``home_relay`` pins the home relay: only that relay is registered with (while it is
    announced and usable); None takes the best.
    """

    announce_ttl: float = attrs.field(default=300.0, validator=_positive)
    refresh_fraction: float = attrs.field(default=0.5, validator=_fraction)
    retry_interval: float = attrs.field(default=10.0, validator=_positive)
    probe_interval: float = attrs.field(default=60.0, validator=_positive)
    probe_timeout: float = attrs.field(default=5.0, validator=_positive)
    probe_window: float = attrs.field(default=0.5, validator=_positive)
    max_probes: int = attrs.field(default=16, validator=attrs.validators.ge(1))
    gain: float = attrs.field(default=DEFAULT_GAIN, validator=_positive)
    max_load: int = attrs.field(default=DEFAULT_MAX_LOAD, validator=attrs.validators.ge(0))
    record_ttl: float = attrs.field(default=600.0, validator=_positive)
    failover_grace: float = attrs.field(default=5.0, validator=_positive)
    home_client: ClientConfig = attrs.field(factory=lambda: _HOME_CLIENT)
    home_relay: Address | None = attrs.field(default=None, converter=optional_address)
    tcp_fallback: TcpFallback | None = None
    """Register over TCP/TLS when no relay answers over UDP (None: never; it opens TCP
    connections to the relays, so the application turns it on)."""

    @home_client.validator
    def _check_keepalive(self, _: attrs.Attribute[ClientConfig], value: ClientConfig) -> None:
        if value.keepalive_interval >= 30.0:
            raise ValueError("home_client.keepalive_interval must stay under 30 s (NAT mappings)")


@attrs.frozen
class RegistryStatistics:
    relays: int
    """Relays in the table."""
    reachable: int
    announced: int
    """Announcements made (refreshes included)."""
    probes: int
    probe_failures: int
    publishes: int
    """Records published with a home relay."""
    failovers: int
    home: RelayInfo | None
    dropped: int = 0
    """Datagrams on the shared endpoint from no relay this node is registered with."""
    udp_blocked: bool = False
    """The home relay is held over TCP/TLS: no relay answered over UDP (see ``tcp_fallback``)."""


@attrs.define(eq=False)
class _Shared:
    """A registration on the shared endpoint and how many hold it (home and visits)."""

    client: RelayClient
    holders: int = 0
    released: trio.Event = attrs.Factory(trio.Event)


class RelayRegistry(Served):
    """Relays announced and measured through ``directory``; see the module docstring.

    ``stack`` is where probes (and, without ``endpoint``, the node's registrations) bind their
    sockets; ``endpoint`` is the node's shared socket's relay view, when the node's
    registrations must ride the mapping its connections use (the registry's server then reads
    it). ``on_udp_blocked`` hears when UDP is found blocked and working again. With ``key``
    the registry keeps a home relay for that node and can visit others; without, it only
    announces and finds relays.
    Run it with :func:`open_relay_registry` or put :meth:`child_spec` in a tree.
    """

    default_id = "relay_registry"

    def __init__(
        self,
        directory: Directory,
        stack: UdpStack,
        key: NodeKey | None = None,
        *,
        config: RegistryConfig | None = None,
        endpoint: UdpEndpoint | None = None,
        on_udp_blocked: Callable[[bool], object] | None = None,
    ) -> None:
        super().__init__()
        self.on_udp_blocked = on_udp_blocked
        """Called with :attr:`udp_blocked`'s new value when it changes (the NAT system hands
        its detector's ``set_udp_blocked``, so the profile says so)."""
        self.directory = directory
        self.stack = stack
        self.endpoint = endpoint
        self.key = key
        self.config = config = config or RegistryConfig()
        self.home: AsyncValue[RelayInfo | None] = AsyncValue(None)
        """The home relay while registered with it (set once the record naming it is published);
        ``await registry.home.wait_value(...)``."""
        self.client: RelayClient | None = None
        """The home registration (request and accept sessions through it), while there is one."""
        self.observed: Address | None = None
        """This node's address as its home relay last saw it (its public endpoint there)."""
        self.udp_blocked: AsyncValue[bool] = AsyncValue(False)
        self._udp_answered = trio.Event()
        """Set when a probe registers over UDP (the current probe round's)."""
        """True while the home relay is held over TCP because no relay answered over UDP."""
        self._table = RelayTable(config.gain)
        self._own: dict[Address, NodeId] = {}
        self._own_alternates: dict[Address, Address] = {}
        """A dual-stack relay's address of the other IP version, by announced address: put in
        the relay's own record, where its nodes find it (see :meth:`add_relay`)."""
        self._probe_keys = {4: NodeKey.generate(), 6: NodeKey.generate()}
        """Probes register under a key of their own, one per IP version: a dual-stack relay is
        announced at an address of each, and two probes under one key at once would each end
        the other's registration (a node id holds one)."""
        self._announced = 0
        self._probes = 0
        self._probe_failures = 0
        self._publishes = 0
        self._failovers = 0
        self._shared: dict[Address, _Shared] = {}
        """The registrations on ``endpoint``, by relay address (the source of their frames)."""
        self._nursery: trio.Nursery | None = None
        """Where the shared registrations run, while the server reads ``endpoint``."""
        self._dropped = 0
        self._resume: RelayInfo | None = None
        self._handed: tuple[Address, list[RelaySession]] | None = None
        """The sessions the TCP registration with a relay handed over when UDP came back, for
        the UDP registration with that relay to carry on."""
        """The home relay an incarnation held when it crashed: the next holds it again."""

    def __repr__(self) -> str:
        owner = self.key.node_id.short() if self.key is not None else "relays"
        return f"<RelayRegistry {owner} {len(self._table)} relays>"

    # -- the API ---------------------------------------------------------------------------------

    async def register(self, node_id: NodeId, endpoint: Address) -> bool:
        """Announce the relay ``node_id`` at ``endpoint`` now and, while the server runs, again
        before the TTL runs out. False when the directory could not be reached this time (the
        server keeps trying)."""
        self.add_relay(node_id, endpoint)
        return await self._announce(normalise_address(endpoint))

    def add_relay(
        self, node_id: NodeId, endpoint: Address, *, alternate: Address | None = None
    ) -> None:
        """Like :meth:`register`, without announcing now: the server announces it when it
        starts (for a tree whose directory is not running yet) and at every refresh.

        ``alternate``: the relay's address of the other IP version (a dual-stack relay whose
        other address is announced in the other version's DHT, which this directory does not
        reach). It goes in the relay's own record (``home_relay`` ``endpoint``,
        ``home_relay_alternate`` it), refreshed with the announcement, signed with the
        relay's key: a dual-stack node homed at ``endpoint`` finds it there and publishes it
        for its peers of the other version. The directory must hold the relay's key."""
        endpoint = normalise_address(endpoint)
        if alternate is not None:
            alternate = normalise_address(alternate)
            if ip_version(alternate[0]) == ip_version(endpoint[0]):
                raise ValueError(f"the alternate of {endpoint} must be of the other IP version")
            self._own_alternates[endpoint] = alternate
        self._own[endpoint] = node_id

    def remove_relay(self, endpoint: Address) -> bool:
        """Stop announcing the relay at ``endpoint`` (what is published lapses with its TTL);
        False if it was not announced here."""
        self._own_alternates.pop(normalise_address(endpoint), None)
        return self._own.pop(normalise_address(endpoint), None) is not None

    async def request_relay(self, target: NodeId | str, *, timeout: float = 10.0) -> RelaySession:
        """A relayed session to ``target`` through this node's home relay (the guide's
        ``macula_relay_node:request_relay/1``), waiting up to ``timeout`` seconds for the home
        registration first. Raises :class:`NoRelay` when there is no home relay by then, and
        :class:`RelayRefused` / :class:`RelayTimeout` as :meth:`RelayClient.request_relay`."""
        node = target if isinstance(target, NodeId) else NodeId.from_text(target)
        with trio.move_on_after(timeout) as scope:
            await self.home.wait_value(lambda home: home is not None)
        client = self.client
        if scope.cancelled_caught or client is None:
            raise NoRelay(f"{self}: no home relay to ask for a session within {timeout} s")
        return await client.request_relay(
            node, timeout=max(scope.deadline - trio.current_time(), 0.001)
        )

    async def find_relay(self, target: str) -> RelayInfo:
        """The relay to reach ``target`` (a node id's text form): its home relay when known and
        reachable, else the best reachable relay by latency with spare capacity.

        Measurements older than ``probe_interval`` are taken again first. Raises
        :class:`NoRelay` when there is none.
        """
        try:
            record = await self.directory.resolve_record(target)
        except DirectoryError as exc:
            logger.info("%s: no record for %s: %s", self, target, exc)
            record = None
        home = None if record is None else record.home_relay
        now = trio.current_time()
        stale_before = now - self.config.probe_interval
        if home is not None:
            known = self._table.get(home)
            if known is None or known.measured_at < stale_before:
                await self._probe(home)
        if all(e.measured_at < stale_before for e in self._table.estimates()):
            await self.probe_relays()
        return choose(self._table.estimates(), home, self.config.max_load)

    async def probe_relays(self) -> list[RelayInfo]:
        """Measure the announced relays now (not the home relay, measured by its registration);
        returns the usable ones, best first."""
        try:
            listed = await self.directory.list_relays()
        except DirectoryError as exc:
            logger.info("%s: could not list the relays: %s", self, exc)
            listed = [estimate.endpoint for estimate in self._table.estimates()]
        versions = self._ip_versions()
        listed = [e for e in listed if ip_version(normalise_address(e)[0]) in versions]
        self._table.retain(listed)
        home = self.home.value
        self._measure_home()
        targets = [e for e in listed if home is None or normalise_address(e) != home.endpoint]
        targets.sort(key=self._probe_order)
        async with trio.open_nursery() as nursery:
            for endpoint in targets[: self.config.max_probes]:
                nursery.start_soon(self._probe, endpoint)
        return rank(self._table.estimates(), self.config.max_load)

    @asynccontextmanager
    async def visit(self, relay: Address, *, timeout: float = 10.0) -> AsyncIterator[RelayClient]:
        """This node registered with the relay at ``relay`` for the ``async with`` block (to
        request sessions to the nodes homed there), entered once registered.

        On the shared endpoint, visits to one relay share one registration, the home one when
        ``relay`` is the home relay, ended when the last user leaves; without it, a visit
        registers from a socket of its own (but a visit to the home relay uses the home
        registration). Raises :class:`RegistrationFailed` when not registered within
        ``timeout`` seconds, ``ValueError`` when the registry has no node key.
        """
        if self.key is None:
            raise ValueError(f"{self} has no node key: it cannot register with a relay")
        relay = normalise_address(relay)
        home = self.client
        if (  # the home registration over TCP holds on into the handover after UDP returns
            home is not None
            and (self.endpoint is None or isinstance(home.endpoint, TcpRelayEndpoint))
            and home.relay == relay
        ):
            await trio.lowlevel.checkpoint()
            yield home
        else:
            async with self._registration(self.key, relay, None, timeout) as client:
                yield client

    def relays(self) -> list[RelayInfo]:
        """The usable relays as last measured, best first."""
        return rank(self._table.estimates(), self.config.max_load)

    def statistics(self) -> RegistryStatistics:
        estimates = self._table.estimates()
        return RegistryStatistics(
            relays=len(estimates),
            reachable=sum(1 for estimate in estimates if estimate.reachable),
            announced=self._announced,
            probes=self._probes,
            probe_failures=self._probe_failures,
            publishes=self._publishes,
            failovers=self._failovers,
            home=self.home.value,
            dropped=self._dropped,
            udp_blocked=self.udp_blocked.value,
        )

    def _set_udp_blocked(self, blocked: bool) -> None:
        if self.udp_blocked.value == blocked:
            return
        self.udp_blocked.value = blocked
        if self.on_udp_blocked is not None:
            self.on_udp_blocked(blocked)

    # -- announcing ------------------------------------------------------------------------------

    async def _announce(self, endpoint: Address) -> bool:
        try:
            await self.directory.announce_relay(endpoint, self.config.announce_ttl)
        except DirectoryError as exc:
            logger.warning("%s: could not announce the relay at %s: %s", self, endpoint, exc)
            return False
        self._announced += 1
        return True

    async def _announce_all(self) -> bool:
        results = [await self._announce(endpoint) for endpoint in list(self._own)]
        for endpoint, alternate in list(self._own_alternates.items()):
            results.append(await self._publish_alternate(endpoint, alternate))
        return all(results)

    async def _publish_alternate(self, endpoint: Address, alternate: Address) -> bool:
        """Publish the relay's own record naming both of its addresses (see add_relay)."""
        node_id = self._own.get(endpoint)
        if node_id is None:
            return True  # removed meanwhile

        def both(record: NodeRecord) -> NodeRecord:
            return attrs.evolve(record, home_relay=endpoint, home_relay_alternate=alternate)

        try:
            await self.directory.update_record(node_id.text(), self.config.announce_ttl, both)
        except (DirectoryError, ValueError) as exc:
            logger.warning("%s: could not publish the relay's record %s: %s", self, endpoint, exc)
            return False
        return True

    # -- measuring -------------------------------------------------------------------------------

    def _probe_order(self, endpoint: Address) -> tuple[int, float]:
        """Relays never measured first (in the directory's order: its nearest regions lead),
        then the measured ones fastest first, the unreachable last: with more listed than
        ``max_probes``, every one is measured within a few rounds, the best kept fresh."""
        known = self._table.get(endpoint)
        if known is None:
            return (0, 0.0)
        if not known.reachable or known.latency_ms is None:
            return (2, math.inf)
        return (1, known.latency_ms)

    def _measure_home(self) -> None:
        home, client = self.home.value, self.client
        if home is None or client is None or client.rtt is None or client.load is None:
            return
        estimate = self._table.observe(
            home.endpoint, home.node_id, client.rtt * 1000, client.load, trio.current_time()
        )
        self.home.value = estimate.info()

    async def _probe(self, endpoint: Address) -> None:
        """Register under the probe key for ``probe_window``; the table gets the result."""
        config = self.config
        endpoint = normalise_address(endpoint)
        self._probes += 1
        probe = ClientConfig(
            keepalive_interval=config.probe_window / 4,
            handshake_timeout=config.probe_timeout / 4,
            handshake_attempts=2,
        )
        sample: tuple[NodeId, float, int] | None = None
        with trio.move_on_after(config.probe_timeout):
            socket = await self.stack.bind(_wildcard_for(endpoint))
            async with socket:
                client = RelayClient(
                    socket,
                    endpoint,
                    self._probe_keys[ip_version(endpoint[0])],
                    self._own.get(endpoint),
                    config=probe,
                )
                try:
                    async with open_relay_client(client, timeout=config.probe_timeout):
                        self._udp_answered.set()  # registered: UDP reaches a relay
                        await trio.sleep(config.probe_window)
                        rtt, load, relay_id = client.rtt, client.load, client.relay_id
                        if rtt is not None and load is not None and relay_id is not None:
                            sample = (relay_id, rtt * 1000, load)
                except RegistrationFailed as exc:
                    logger.debug("%s: probe of %s failed: %s", self, endpoint, exc)
        now = trio.current_time()
        if sample is None:
            self._probe_failures += 1
            self._table.fail(endpoint, now)
            logger.info("%s: relay at %s did not answer a probe", self, endpoint)
            return
        estimate = self._table.observe(endpoint, *sample, now)
        logger.debug("%s: relay at %s: %.1f ms, load %d", self, endpoint,
                     estimate.latency_ms, estimate.load)  # fmt: skip

    # -- the home relay --------------------------------------------------------------------------

    async def _publish(self, key: NodeKey, home: Address, observed: Address | None) -> None:
        """Publish the node's record with ``home``, keeping the profile and candidates of the
        record already there (published by the NAT detector); ``observed`` (None over TCP,
        where the relay sees no UDP mapping) goes first among the candidates."""
        node_id = key.node_id.text()
        self.observed = observed

        alternate = self._alternate(home) or await self._published_alternate(home)

        def homed(record: NodeRecord) -> NodeRecord:
            if observed is None:
                return attrs.evolve(record, home_relay=home)
            others = (c for c in record.candidates if c != observed)
            return attrs.evolve(
                record,
                home_relay=home,
                home_relay_alternate=alternate,
                candidates=[observed, *others][:MAX_CANDIDATES],
            )

        try:
            await self.directory.update_record(node_id, self.config.record_ttl, homed)
        except DirectoryError as exc:
            logger.warning("%s: could not publish the record: %s", self, exc)
            return
        self._publishes += 1
        logger.info("%s: published home relay %s", self, home)

    def _ip_versions(self) -> frozenset[int]:
        """The IP versions of the relays this node can use: its shared socket's (a relay it
        cannot send to is neither probed nor chosen), any without one."""
        return _ANY_VERSION if self.endpoint is None else self.endpoint.ip_versions

    def _alternate(self, home: Address) -> Address | None:
        """The home relay's address of the other IP version: an endpoint measured to answer
        with the same relay id (a dual-stack relay announced at both), if any."""
        known = self._table.get(home)
        if known is None or known.node_id is None:
            return None
        version = ip_version(home[0])
        for estimate in self._table.estimates():
            if (
                estimate.reachable
                and estimate.node_id == known.node_id
                and ip_version(estimate.endpoint[0]) != version
            ):
                return estimate.endpoint
        return None

    async def _published_alternate(self, home: Address) -> Address | None:
        """The home relay's address of the other IP version from the relay's own record (see
        :meth:`add_relay`), for a dual-stack node whose directory lists the relay at one
        version only; None for a single-stack node (its peers share its version) or when the
        record names none. The record is signed by the relay's key: the id the relay proved."""
        known = self._table.get(home)
        if known is None or known.node_id is None or self._ip_versions() != _ANY_VERSION:
            return None
        try:
            record = await self.directory.resolve_record(known.node_id.text())
        except DirectoryError as exc:
            logger.debug("%s: no record of the relay at %s: %s", self, home, exc)
            return None
        alternate = None if record is None else record.home_relay_alternate
        if alternate is None or ip_version(alternate[0]) == ip_version(home[0]):
            return None
        return alternate

    async def _keep_home(self, key: NodeKey) -> None:
        """Register with the best relay, hold it, fail over when it is lost; forever. First
        hold the home registration a crashed incarnation left, if it is still there."""
        config = self.config
        resume, self._resume = self._resume, None
        if resume is not None and resume.endpoint in self._shared:
            logger.info("%s: holding home relay %s again after a restart", self, resume.endpoint)
            await self._hold(key, resume)
        lossy_rounds = 0
        while True:
            ranked = await self._probe_round()
            if config.home_relay is not None:
                ranked = [info for info in ranked if info.endpoint == config.home_relay]
            if not ranked and config.tcp_fallback is not None:
                if self._udp_answered.is_set() and lossy_rounds < _LOSSY_ROUNDS:
                    lossy_rounds += 1
                    logger.info("%s: relays answer over UDP, no probe completed: again", self)
                    continue
                lossy_rounds = 0
                if await self._fall_back(key):
                    await self._leave_tcp(key)
                    continue
            lossy_rounds = 0
            if not ranked:
                logger.info("%s: no usable relay; trying again", self)
                await trio.sleep(min(config.retry_interval, config.probe_interval))
                continue
            held = False
            for info in ranked:
                held = await self._hold(key, info)
                if held:
                    break
            if not held:
                await trio.sleep(config.retry_interval)

    async def _leave_tcp(self, key: NodeKey) -> None:
        """After the TCP registration handed its sessions over (UDP came back), register with
        the same relay over UDP at once, so the relayed connections that could not go direct
        carry on (a datagram or two in the gap is QUIC's to resend); end them if that fails."""
        handed = self._handed
        if handed is not None:
            known = self._table.get(handed[0])
            if known is not None and known.reachable and known.latency_ms is not None:
                await self._hold(key, known.info())
        await self._end_handed()

    async def _probe_round(self) -> list[RelayInfo]:
        """:meth:`probe_relays`; with a TCP fallback, cut short (nothing usable) when no relay
        answers over UDP within ``udp_bound``: neither a probe's registration nor any of the
        HELLOs :meth:`_udp_ping` sends meanwhile. An answer lets the round finish: a slow or
        lossy path is no reason to leave UDP."""
        fallback = self.config.tcp_fallback
        if fallback is None:
            return await self.probe_relays()
        self._udp_answered = answered = trio.Event()
        ranked: list[list[RelayInfo]] = []

        async def probe() -> None:
            ranked.append(await self.probe_relays())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(probe)
            nursery.start_soon(self._udp_ping, fallback.udp_bound, answered)
            with trio.move_on_after(fallback.udp_bound):
                await answered.wait()
            if not answered.is_set():
                nursery.cancel_scope.cancel()
        return ranked[0] if ranked else []

    async def _udp_ping(self, bound: float, answered: trio.Event) -> None:
        """Send every listed relay a HELLO :data:`_PINGS` times over ``bound`` seconds from a
        socket of its own, and set ``answered`` at the first CHALLENGE back: one lost
        exchange then costs a sixth of the bound, not a whole probe's handshake timeout. A
        HELLO is padded to more than its answer, so this amplifies nothing."""
        try:
            listed = await self.directory.list_relays()
        except DirectoryError:
            listed = [estimate.endpoint for estimate in self._table.estimates()]
        relays = {normalise_address(endpoint) for endpoint in listed}
        async with trio.open_nursery() as nursery:
            for version in sorted({ip_version(ip) for ip, _ in relays}):
                family = {relay for relay in relays if ip_version(relay[0]) == version}
                nursery.start_soon(self._udp_ping_family, version, family, bound, answered)

    async def _udp_ping_family(
        self, version: int, relays: set[Address], bound: float, answered: trio.Event
    ) -> None:
        """:meth:`_udp_ping` for the relays of one IP version, from a socket of that version."""
        hello = encode(ClientHandshake(self._probe_keys[version]).hello())
        try:
            socket = await self.stack.bind((any_address(version), 0))
        except OSError as exc:  # no IPv6 here, say: those relays cannot answer over UDP
            logger.debug("%s: no IPv%d socket to ping relays from: %s", self, version, exc)
            return
        async with socket, trio.open_nursery() as nursery:

            async def listen() -> None:
                while True:
                    data, source = await socket.receive_from()
                    if source in relays and data[:1] == _CHALLENGE:
                        answered.set()
                        return

            nursery.start_soon(listen)
            for _ in range(_PINGS):
                for relay in relays:
                    try:
                        await socket.send_to(hello, relay)
                    except (OSError, ValueError) as exc:
                        logger.debug("%s: no HELLO to %s: %s", self, relay, exc)
                with trio.move_on_after(bound / _PINGS):
                    await answered.wait()
                if answered.is_set():
                    break
            nursery.cancel_scope.cancel()

    async def _fall_back(self, key: NodeKey) -> bool:
        """No relay answered over UDP: hold one over TCP until UDP answers again or the link
        ends; False when none could be reached over TCP either."""
        endpoints: list[Address]
        if self.config.home_relay is not None:
            endpoints = [self.config.home_relay]  # known without the directory (maybe UDP too)
        else:
            try:
                listed = await self.directory.list_relays()
            except DirectoryError as exc:
                logger.info("%s: could not list the relays: %s", self, exc)
                listed = [estimate.endpoint for estimate in self._table.estimates()]
            known = self.config.tcp_fallback.relays if self.config.tcp_fallback else ()
            endpoints = sorted({normalise_address(endpoint) for endpoint in listed})
            endpoints += [endpoint for endpoint in known if endpoint not in endpoints]
        for endpoint in endpoints:
            if await self._hold_over_tcp(key, endpoint):
                return True
        return False

    async def _hold_over_tcp(self, key: NodeKey, endpoint: Address) -> bool:
        fallback = self.config.tcp_fallback
        assert fallback is not None
        logger.warning("%s: no relay answers over UDP; registering with %s over TCP/TLS",
                       self, endpoint)  # fmt: skip
        self._set_udp_blocked(True)
        try:
            async with self._tcp_registration(key, endpoint, self.config.probe_timeout) as client:
                registration = await client.wait_registered()
                self.client = client
                try:
                    await self._publish(key, endpoint, None)
                    self.home.value = RelayInfo(
                        registration.relay_id, endpoint, 1000 * (client.rtt or 0.0),
                        client.load or 0,
                    )  # fmt: skip
                    if await self._until_udp_answers(client, endpoint, fallback):
                        self._handed = (endpoint, client.hand_over())
                finally:
                    self.client = None
                    self.home.value = None
        except (OSError, LinkError, RegistrationFailed) as exc:
            logger.info("%s: no registration with %s over TCP either: %s", self, endpoint, exc)
            return False
        return True

    async def _until_udp_answers(
        self, client: RelayClient, endpoint: Address, fallback: TcpFallback
    ) -> bool:
        """Hold the TCP registration; probe the relay over UDP every ``reprobe_interval``;
        True once it answers and ``handover`` has passed, False when the registration is lost
        (UDP is still taken as blocked until a probe says otherwise)."""
        link = client.endpoint
        assert isinstance(link, TcpRelayEndpoint)
        while True:
            with trio.move_on_after(fallback.reprobe_interval):
                async with trio.open_nursery() as race:  # whichever ends the registration first
                    race.start_soon(_cancel_after, race.cancel_scope, link.broken.wait)
                    await client.registration.wait_value(lambda value: value is None)
                    race.cancel_scope.cancel()
                logger.warning("%s: the TCP registration with %s was lost", self, endpoint)
                return False
            await self._probe(endpoint)
            estimate = self._table.get(endpoint)
            if estimate is not None and estimate.reachable:
                logger.warning("%s: %s answers over UDP again; leaving TCP in %g s",
                               self, endpoint, fallback.handover)  # fmt: skip
                self._set_udp_blocked(False)
                with trio.move_on_after(fallback.handover):
                    await client.registration.wait_value(lambda value: value is None)
                return client.registration.value is not None

    async def _hold(self, key: NodeKey, info: RelayInfo) -> bool:
        """Be registered with ``info`` until the registration is lost for good; False when it
        could not be made. ``info`` answered a UDP probe: UDP is not blocked."""
        self._set_udp_blocked(False)
        timeout = self.config.probe_timeout
        try:
            async with self._registration(key, info.endpoint, info.node_id, timeout) as client:
                self._adopt_handed(client)
                self.client = client
                self._resume = info  # unless lost for good below: a crash leaves it held
                try:
                    await self._watch(key, client, info)
                    self._resume = None
                finally:
                    self.client = None
                    self.home.value = None
        except RegistrationFailed as exc:
            logger.info("%s: could not register with %s: %s", self, info.endpoint, exc)
            self._table.fail(info.endpoint, trio.current_time())
            return False
        return True

    def _adopt_handed(self, client: RelayClient) -> None:
        """Carry on, through ``client``, the sessions the TCP registration with the same relay
        handed over when UDP came back (see :meth:`_keep_home`)."""
        handed = self._handed
        if handed is not None and handed[0] == client.relay:
            self._handed = None
            client.adopt(handed[1])
            logger.info("%s: %d relayed sessions carried over from TCP to UDP with %s",
                        self, len(handed[1]), client.relay)  # fmt: skip

    async def _end_handed(self) -> None:
        """End the handed-over sessions no registration carried on (the relay is gone)."""
        handed, self._handed = self._handed, None
        for session in () if handed is None else handed[1]:
            session._end(Reason.PEER_GONE)
        await trio.lowlevel.checkpoint()

    async def _watch(self, key: NodeKey, client: RelayClient, info: RelayInfo) -> None:
        config = self.config
        registration = await client.wait_registered()
        await self._publish(key, info.endpoint, registration.observed)
        self.home.value = info
        publish_at = trio.current_time() + config.record_ttl * config.refresh_fraction
        probe_at = trio.current_time() + config.probe_interval
        while True:
            with trio.move_on_after(max(0.0, min(publish_at, probe_at) - trio.current_time())):
                await client.registration.wait_value(lambda value: value is None)
                with trio.move_on_after(config.failover_grace):
                    registration = await client.wait_registered()
                if client.registration.value is None:
                    self._failovers += 1
                    self._table.fail(info.endpoint, trio.current_time())
                    logger.warning("%s: home relay %s lost; failing over", self, info.endpoint)
                    return
                publish_at = trio.current_time()  # registered again: maybe seen elsewhere
            now = trio.current_time()
            if now >= probe_at:
                await self.probe_relays()
                probe_at = now + config.probe_interval
            if now >= publish_at:
                current = client.registration.value
                observed = registration.observed if current is None else current.observed
                await self._publish(key, info.endpoint, observed)
                publish_at = now + config.record_ttl * config.refresh_fraction

    # -- the node's registrations ----------------------------------------------------------------

    @asynccontextmanager
    async def _registration(
        self, key: NodeKey, relay: Address, relay_id: NodeId | None, timeout: float
    ) -> AsyncIterator[RelayClient]:
        """This node registered with ``relay`` (see :meth:`visit`) within ``timeout``; over
        TCP while UDP is blocked."""
        if self.udp_blocked.value:
            async with self._tcp_registration(key, relay, timeout) as client:
                yield client
            return
        if self.endpoint is not None:
            async with self._share(key, relay, relay_id, timeout) as client:
                yield client
            return
        socket = await self.stack.bind(_wildcard_for(relay))
        async with socket:
            client = RelayClient(socket, relay, key, relay_id, config=self.config.home_client)
            async with open_relay_client(client, timeout=timeout):
                yield client

    @asynccontextmanager
    async def _tcp_registration(
        self, key: NodeKey, relay: Address, timeout: float
    ) -> AsyncIterator[RelayClient]:
        """This node registered with ``relay`` over a TCP/TLS link of its own."""
        fallback = self.config.tcp_fallback
        if fallback is None:
            raise RegistrationFailed(f"{self}: UDP is blocked and there is no TCP fallback")
        async with open_tcp_relay_endpoint(
            relay,
            stack=self.stack,
            port=fallback.port,
            websocket=fallback.websocket,
            timeout=fallback.connect_timeout,
        ) as link:
            client = RelayClient(
                link, relay, key, self._own.get(relay), config=self.config.home_client
            )
            async with open_relay_client(client, timeout=timeout):
                yield client

    @asynccontextmanager
    async def _share(
        self, key: NodeKey, relay: Address, relay_id: NodeId | None, timeout: float
    ) -> AsyncIterator[RelayClient]:
        """Hold the shared endpoint's registration with ``relay``, made if there is none."""
        assert self.endpoint is not None
        if ip_version(relay[0]) not in self.endpoint.ip_versions:
            raise RegistrationFailed(
                f"{self}: the relay at {relay} speaks another IP version than this node's socket"
            )
        shared = self._shared.get(relay)
        if shared is None:
            nursery = self._nursery
            if nursery is None:
                raise RegistrationFailed(f"{self} is not reading its endpoint (not running?)")
            client = RelayClient(
                self.endpoint, relay, key, relay_id, config=self.config.home_client, receive=False
            )
            shared = self._shared[relay] = _Shared(client)
            nursery.start_soon(self._run_shared, relay, shared)
        elif relay_id is not None and shared.client.relay_id not in (None, relay_id):
            raise RegistrationFailed(f"the relay at {relay} is not {relay_id.short()} any more")
        shared.holders += 1
        try:
            await shared.client.wait_registered(timeout)
            yield shared.client
        finally:
            shared.holders -= 1
            if not shared.holders:
                shared.released.set()

    async def _run_shared(self, relay: Address, shared: _Shared, linger: float = 0.0) -> None:
        """Run a shared registration until its last holder leaves; one that a crashed
        incarnation left runs ``linger`` seconds first, for its holder to come back."""
        async with open_relay_client(shared.client, timeout=None):
            await trio.sleep(linger)
            while shared.holders:
                await shared.released.wait()
                shared.released = trio.Event()
            if self._shared.get(relay) is shared:  # at once: a new user registers anew
                del self._shared[relay]

    async def _read(
        self,
        endpoint: UdpEndpoint,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the shared registrations and hand each of them what its relay sends."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for relay, left in self._shared.items():  # by a crashed incarnation
                    logger.info("%s: running the registration with %s again", self, relay)
                    left.released = trio.Event()
                    nursery.start_soon(self._run_shared, relay, left, self.config.failover_grace)
                task_status.started()
                try:
                    while True:  # in batches: a demux view is drained as fast as it is filled
                        for data, source in await endpoint.receive_batch():
                            shared = self._shared.get(source)
                            if shared is None:
                                self._dropped += 1
                                logger.debug("%s: dropped a datagram from %s", self, source)
                            else:
                                await shared.client.datagram_received(data, source)
                except trio.ClosedResourceError:
                    logger.warning("%s: its endpoint was closed", self)
                    nursery.cancel_scope.cancel()
        finally:
            self._nursery = None


async def _cancel_after(scope: trio.CancelScope, wait: Callable[[], Awaitable[object]]) -> None:
    await wait()
    scope.cancel()


class RelayRegistryServer(Actor):
    """Announces the registered relays, keeps the home relay of its :class:`RelayRegistry` and
    reads (and runs the registrations on) its shared endpoint."""

    def __init__(self, registry: RelayRegistry) -> None:
        self._registry = registry

    async def init(self) -> None:
        self._registry._attach(self.ref)
        if self._registry.endpoint is not None:
            await self.start(self._registry._read, self._registry.endpoint)
        self.start_soon(self._announce)
        if self._registry.key is not None:
            self.start_soon(self._registry._keep_home, self._registry.key)

    async def _announce(self) -> None:
        registry = self._registry
        config = registry.config
        while True:
            complete = await registry._announce_all()
            refresh = config.announce_ttl * config.refresh_fraction
            await trio.sleep(refresh if complete else min(refresh, config.retry_interval))


RelayRegistry.server_class = RelayRegistryServer  # defined after the handle it serves


@asynccontextmanager
async def open_relay_registry(
    registry: RelayRegistry, name: str | None = None, actors: Registry | None = None
) -> AsyncIterator[RelayRegistry]:
    """Run ``registry``'s server for the ``async with`` block."""
    async with open_actor(RelayRegistryServer(registry), name, actors):
        yield registry


_ANY_VERSION: Final = frozenset((4, 6))


def _wildcard_for(relay: Address) -> Address:
    """Where a socket of its own for ``relay`` binds: any port on the wildcard address of the
    relay's IP version (an IPv4 socket cannot reach an IPv6 relay)."""
    return any_address(ip_version(relay[0])), 0
