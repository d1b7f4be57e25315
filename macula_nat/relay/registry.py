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

Ownership: the handle owns the table, the announced relays and the counters, so they survive a
crash of :class:`RelayRegistryServer`; the home registration lives in the server's tasks and a
crash costs it (the next incarnation registers again and republishes).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import attrs
import trio
from trio_util import AsyncValue

from macula_nat.actors import Actor, Registry, Served, open_actor
from macula_nat.directory import Directory, DirectoryError
from macula_nat.directory.record import MAX_CANDIDATES
from macula_nat.identity import NodeId, NodeKey
from macula_nat.net.address import Address, normalise_address
from macula_nat.net.endpoint import UdpEndpoint, UdpStack

from .client import ClientConfig, RelayClient, open_relay_client
from .errors import RegistrationFailed
from .selection import DEFAULT_GAIN, DEFAULT_MAX_LOAD, NoRelay, RelayInfo, RelayTable, choose, rank

__all__ = [
    "NoRelay",
    "RegistryConfig",
    "RegistryStatistics",
    "RelayInfo",
    "RelayRegistry",
    "RelayRegistryServer",
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


@attrs.frozen
class RegistryConfig:
    """Periods (seconds) and bounds of a :class:`RelayRegistry`.

    Relays are announced for ``announce_ttl`` and again at ``refresh_fraction`` of it (after
    ``retry_interval`` when the directory could not be reached). Relays are probed every
    ``probe_interval``, at most ``max_probes`` at once, each within ``probe_timeout``, reading
    ``probe_window`` of KEEPALIVEs. Latency samples are averaged with weight ``gain``; relays
    reporting ``max_load`` permille or more are full. The node's record lives ``record_ttl``
    and is published again at ``refresh_fraction`` of it. A lost home registration that is not
    back within ``failover_grace`` fails over. ``home_client`` configures the home
    registration (its ``keepalive_interval`` must stay well under 30 s).
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


class RelayRegistry(Served):
    """Relays announced and measured through ``directory``; see the module docstring.

    ``stack`` is where probes (and, without ``endpoint``, the home registration) bind their
    sockets; ``endpoint`` is the node's shared socket's relay view, when the home registration
    must ride the mapping the node's connections use. With ``key`` the registry keeps a home
    relay for that node; without, it only announces and finds relays.
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
    ) -> None:
        super().__init__()
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
        self._table = RelayTable(config.gain)
        self._own: dict[Address, NodeId] = {}
        self._probe_key = NodeKey.generate()
        self._announced = 0
        self._probes = 0
        self._probe_failures = 0
        self._publishes = 0
        self._failovers = 0

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

    def add_relay(self, node_id: NodeId, endpoint: Address) -> None:
        """Like :meth:`register`, without announcing now: the server announces it when it
        starts (for a tree whose directory is not running yet) and at every refresh."""
        self._own[normalise_address(endpoint)] = node_id

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
        self._table.retain(listed)
        home = self.home.value
        self._measure_home()
        targets = [e for e in listed if home is None or normalise_address(e) != home.endpoint]
        targets.sort(key=self._probe_order)
        async with trio.open_nursery() as nursery:
            for endpoint in targets[: self.config.max_probes]:
                nursery.start_soon(self._probe, endpoint)
        return rank(self._table.estimates(), self.config.max_load)

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
        )

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
        return all(results)

    # -- measuring -------------------------------------------------------------------------------

    def _probe_order(self, endpoint: Address) -> tuple[bool, float]:
        known = self._table.get(endpoint)
        if known is None or not known.reachable or known.latency_ms is None:
            return (True, math.inf)
        return (False, known.latency_ms)

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
            socket = await self.stack.bind()
            async with socket:
                client = RelayClient(
                    socket, endpoint, self._probe_key, self._own.get(endpoint), config=probe
                )
                try:
                    async with open_relay_client(client, timeout=config.probe_timeout):
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

    async def _publish(self, key: NodeKey, home: Address, observed: Address) -> None:
        """Publish the node's record with ``home``, keeping the profile and candidates of the
        record already there (published by the NAT detector)."""
        node_id = key.node_id.text()
        try:
            current = await self.directory.resolve_record(node_id)
            profile = None if current is None else current.profile
            others = () if current is None else current.candidates
            candidates = [observed, *(c for c in others if c != observed)][:MAX_CANDIDATES]
            await self.directory.publish_record(
                node_id, profile, self.config.record_ttl, home_relay=home, candidates=candidates
            )
        except DirectoryError as exc:
            logger.warning("%s: could not publish the record: %s", self, exc)
            return
        self._publishes += 1
        logger.info("%s: published home relay %s", self, home)

    async def _keep_home(self, key: NodeKey) -> None:
        """Register with the best relay, hold it, fail over when it is lost; forever."""
        config = self.config
        while True:
            ranked = await self.probe_relays()
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

    async def _hold(self, key: NodeKey, info: RelayInfo) -> bool:
        """Be registered with ``info`` until the registration is lost for good; False when it
        could not be made."""
        config = self.config
        socket = self.endpoint if self.endpoint is not None else await self.stack.bind()
        async with contextlib.nullcontext() if socket is self.endpoint else socket:
            client = RelayClient(
                socket, info.endpoint, key, info.node_id, config=config.home_client
            )
            try:
                async with open_relay_client(client, timeout=config.probe_timeout):
                    self.client = client
                    try:
                        await self._watch(key, client, info)
                    finally:
                        self.client = None
                        self.home.value = None
            except RegistrationFailed as exc:
                logger.info("%s: could not register with %s: %s", self, info.endpoint, exc)
                self._table.fail(info.endpoint, trio.current_time())
                return False
        return True

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


class RelayRegistryServer(Actor):
    """Announces the registered relays and keeps the home relay of its :class:`RelayRegistry`."""

    def __init__(self, registry: RelayRegistry) -> None:
        self._registry = registry

    async def init(self) -> None:
        self._registry._attach(self.ref)
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
