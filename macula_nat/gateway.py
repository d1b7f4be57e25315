"""The gateway: what a public node runs (observer, relay, DHT node, relay registry) in one tree.

::

    gateway (Supervisor, one_for_one, at most 3 restarts in 5 s)
      observer        Observer: STUN on --listen; a full RFC 5780 server with --alt
      observer6       (dual-stack) the same on --listen6 / --alt6
      relay           the RelayNode's subtree (relay_server, relay_sessions), on the relay port
                      (dual-stack: one socket on '::' for both IP versions)
      dht             DhtServer: the Mainline DHT node, on the DHT port, bootstrapped
      dht6            (dual-stack) its IPv6 side (BEP 32): own socket and routing table, the
                      same id and storage, so a record stored over one version is found over
                      the other
      relay_registry  RelayRegistryServer: announces the relay through the DHT, refreshed
                      (dual-stack: and the relay's own record naming both its addresses)
      relay_registry6 (dual-stack) the same for the relay's IPv6 address, through ``dht6``

Every child is permanent and restarts alone. The :class:`Gateway` handle owns what must outlive
a crash (the relay's registrations and sessions, the DHT's routing table and items, the
registry's announced relays), so a crash costs only the crashed actor's in-flight work: the
observer its rate-limit buckets, the relay server datagrams in flight (a crashed session actor
costs its session), the DHT server its outstanding queries, the registry an announcement
retried at its restart. Children stop in reverse order: the registry stops announcing first,
then the DHT node, then the relay (telling its nodes ``relay_shutdown``), then the observer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs

from macula_nat.actors import ChildSpec, ChildType, Registry, Supervisor, open_actor
from macula_nat.dht.bootstrap import bootstrap_hosts
from macula_nat.dht.config import DhtConfig
from macula_nat.dht.node import DhtNode
from macula_nat.directory.mainline import MainlineDirectory
from macula_nat.identity import NodeKey
from macula_nat.nat.observer import Observer
from macula_nat.net.address import (
    ANY_IPV6,
    Address,
    ip_version,
    is_unspecified,
    normalise_address,
    normalise_addresses,
)
from macula_nat.net.endpoint import UdpStack
from macula_nat.net.real import RealUdpStack
from macula_nat.relay import MIB, RelayConfig, RelayNode, TcpRelayConfig
from macula_nat.relay.node import SessionEndCallback, SessionStartCallback
from macula_nat.relay.registry import RegistryConfig, RelayRegistry

__all__ = ["OBSERVER", "OBSERVER6", "Gateway", "GatewayConfig", "open_gateway"]

logger = logging.getLogger(__name__)

OBSERVER: str = "gateway_observer"
"""The observer's registered name (``registry.whereis(OBSERVER)``: its current incarnation)."""
OBSERVER6: str = "gateway_observer6"
"""The IPv6 observer's registered name (a dual-stack gateway's)."""


def _port(_: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and not 1 <= value <= 0xFFFF:
        raise ValueError(f"{attribute.name} must be a port in 1-65535, not {value!r}")


def _optional_address(value: Address | None) -> Address | None:
    return None if value is None else normalise_address(value)


@attrs.frozen(kw_only=True)
class GatewayConfig:
    """Where a gateway listens and what it runs with.

    The observer answers on ``listen`` (and RFC 5780's four sockets with ``alternate``); the
    relay listens on ``listen``'s IP at ``relay_port`` (default: the port after the observers'
    highest, so ``--listen :3478 --alt :3479`` puts the relay on 3480) and the DHT node at
    ``dht_port`` (default: the next one), bootstrapping from ``bootstrap``. The relay
    accepts ``max_sessions`` sessions of ``bandwidth_limit`` bytes a second each, ends a
    session after ``session_timeout`` seconds or ``idle_timeout`` seconds without traffic, and
    calls ``on_session_start`` / ``on_session_end`` with each session's
    :class:`~macula_nat.relay.SessionInfo` (the guide's relay options). With ``relay_tcp``
    the relay also serves nodes over TCP/TLS (and WebSocket), for networks that block UDP.

    Dual stack: ``listen`` an IPv4 address and ``listen6`` (with ``alternate6``) an IPv6 one.
    A second observer answers there; the relay serves both versions from one socket, announced
    at both addresses (same port); the DHT node joins both swarms (BEP 32) at the same port on
    each IP, with one storage, so IPv4-only, IPv6-only and dual-stack nodes share one directory.
    """

    listen: Address = attrs.field(converter=normalise_address)
    alternate: Address | None = attrs.field(default=None, converter=_optional_address)
    listen6: Address | None = attrs.field(default=None, converter=_optional_address)
    alternate6: Address | None = attrs.field(default=None, converter=_optional_address)
    relay_port: int | None = attrs.field(default=None, validator=_port)
    dht_port: int | None = attrs.field(default=None, validator=_port)
    bootstrap: tuple[tuple[str, int], ...] = attrs.field(default=(), converter=bootstrap_hosts)
    landmarks: tuple[Address, ...] = attrs.field(default=(), converter=normalise_addresses)
    """The deployment's region landmarks (DHT addresses, the same list everywhere): the relay
    is also announced in its nearest one's region (18 or more DHT nodes: README, Capacity)."""
    max_sessions: int = 100
    bandwidth_limit: float = float(MIB)
    session_timeout: float = 1800.0
    idle_timeout: float = 300.0
    on_session_start: SessionStartCallback | None = None
    on_session_end: SessionEndCallback | None = None
    relay: RelayConfig = attrs.Factory(RelayConfig)
    dht: DhtConfig = attrs.Factory(DhtConfig)
    registry: RegistryConfig = attrs.Factory(RegistryConfig)
    relay_tcp: TcpRelayConfig | None = None

    def __attrs_post_init__(self) -> None:
        if self.listen[1] == 0 and (self.relay_port is None or self.dht_port is None):
            raise ValueError("with --listen port 0, give the relay and DHT ports")
        self._check_versions()
        observer_ports = {self.listen[1]}
        for other in (self.alternate, self.listen6, self.alternate6):
            if other is not None:
                observer_ports.add(other[1])
        ports = {"relay": self.relay_address[1], "DHT": self.dht_address[1]}
        for what, port in ports.items():
            if port in observer_ports:
                raise ValueError(f"the {what} port {port} is one of the observer's ports")
        if ports["relay"] == ports["DHT"]:
            raise ValueError(f"the relay and the DHT cannot share port {ports['relay']}")

    def _check_versions(self) -> None:
        """The alternates are of their primary's IP version; ``listen6`` IPv6 beside an IPv4
        ``listen``, and ``alternate6`` only with it."""
        if self.alternate6 is not None and self.listen6 is None:
            raise ValueError("--alt6 needs --listen6")
        pairs = [("--alt", self.alternate, ip_version(self.listen[0]))]
        if self.listen6 is not None:
            if ip_version(self.listen[0]) != 4:
                raise ValueError("with --listen6, --listen is the IPv4 address")
            pairs += [("--listen6", self.listen6, 6), ("--alt6", self.alternate6, 6)]
        for option, address, version in pairs:
            if address is not None and ip_version(address[0]) != version:
                raise ValueError(f"{option} {address[0]} is not an IPv{version} address")

    @property
    def dual_stack(self) -> bool:
        """Whether the gateway serves IPv6 beside IPv4 (``listen6`` given)."""
        return self.listen6 is not None

    @property
    def _first_free_port(self) -> int:
        return max(port for _, port in self.addresses) + 1

    @property
    def relay_address(self) -> Address:
        port = self.relay_port if self.relay_port is not None else self._first_free_port
        return (self.listen[0], port)

    @property
    def dht_address(self) -> Address:
        port = self.dht_port if self.dht_port is not None else self._first_free_port + 1
        return (self.listen[0], port)

    @property
    def relay_address6(self) -> Address | None:
        """The relay at the IPv6 address (a dual-stack gateway's; else None)."""
        return None if self.listen6 is None else (self.listen6[0], self.relay_address[1])

    @property
    def dht_address6(self) -> Address | None:
        """The DHT node's IPv6 side (a dual-stack gateway's; else None)."""
        return None if self.listen6 is None else (self.listen6[0], self.dht_address[1])

    @property
    def addresses(self) -> tuple[Address, ...]:
        """Every observer address, primary first."""
        every = (self.listen, self.alternate, self.listen6, self.alternate6)
        return tuple(address for address in every if address is not None)


class Gateway:
    """A gateway's components (see the module docstring); run it with :func:`open_gateway` or
    put :meth:`child_spec` in a tree. The relay relays from the start (``max_sessions``)."""

    def __init__(
        self,
        config: GatewayConfig,
        stack: UdpStack,
        key: NodeKey,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.stack = stack
        self.key = key
        dht_config = attrs.evolve(config.dht, listen=config.dht_address, bootstrap=config.bootstrap)
        self.dht = DhtNode(stack, dht_config)
        self.dht6: DhtNode | None = None
        """The DHT node's IPv6 side (dual stack): its own routing table, the same storage."""
        if config.dht_address6 is not None:
            config6 = attrs.evolve(dht_config, listen=config.dht_address6)
            self.dht6 = DhtNode(stack, config6, storage=self.dht)
        self.directory = MainlineDirectory(self.dht, key, clock=clock, landmarks=config.landmarks)
        relay_listen = config.relay_address
        if config.dual_stack:
            relay_listen = (ANY_IPV6, relay_listen[1])
        self.relay = RelayNode(
            stack, relay_listen, key, config.relay, tcp=config.relay_tcp,
            directory=self.directory, dual_stack=config.dual_stack,
        )  # fmt: skip
        self.registry = RelayRegistry(self.directory, stack, config=config.registry)
        self.registry.add_relay(key.node_id, config.relay_address, alternate=config.relay_address6)
        self.registry6: RelayRegistry | None = None
        """Announces the relay's IPv6 address through the DHT's IPv6 side (dual stack): the
        DHT records an announcement at the address it came from, and answers it to askers of
        that version only (BEP 32)."""
        if self.dht6 is not None and config.relay_address6 is not None:
            directory6 = MainlineDirectory(self.dht6, key, clock=clock, landmarks=config.landmarks)
            self.registry6 = RelayRegistry(directory6, stack, config=config.registry)
            self.registry6.add_relay(key.node_id, config.relay_address6)

    def __repr__(self) -> str:
        return f"<Gateway {self.key.node_id.short()} {self.config.listen}>"

    async def enable(self) -> None:
        """Let the relay relay, within the configured limits (before or while it runs)."""
        config = self.config
        await self.relay.enable(
            max_sessions=config.max_sessions,
            bandwidth_limit=config.bandwidth_limit,
            session_timeout=config.session_timeout,
            idle_timeout=config.idle_timeout,
            on_session_start=config.on_session_start,
            on_session_end=config.on_session_end,
        )

    def supervisor(self) -> Supervisor:
        """The gateway's root supervisor (a fresh one per start)."""
        config = self.config
        children = [
            ChildSpec("observer", Observer, (self.stack, config.listen, config.alternate),
                      name=OBSERVER),
        ]  # fmt: skip
        if config.listen6 is not None:
            observe6 = (self.stack, config.listen6, config.alternate6)
            children.append(ChildSpec("observer6", Observer, observe6, name=OBSERVER6))
        children += [self.relay.child_spec("relay"), self.dht.child_spec("dht")]
        if self.dht6 is not None:
            children.append(self.dht6.child_spec("dht6"))
        children.append(self.registry.child_spec("relay_registry"))
        if self.registry6 is not None:
            children.append(self.registry6.child_spec("relay_registry6"))
        return Supervisor(children, intensity=3, period=5.0)

    def child_spec(self, id: str = "gateway", *, name: str | None = None) -> ChildSpec:
        return ChildSpec(id, self.supervisor, type=ChildType.SUPERVISOR, name=name)


@asynccontextmanager
async def open_gateway(
    config: GatewayConfig,
    *,
    stack: UdpStack | None = None,
    key: NodeKey | None = None,
    clock: Callable[[], float] = time.time,
    registry: Registry | None = None,
) -> AsyncIterator[Gateway]:
    """Run a gateway for the ``async with`` block, on real sockets unless ``stack`` is given,
    as ``key`` (default: a new one). Entered once every child has started."""
    if stack is None:
        ips = [ip for ip, _ in config.addresses if not is_unspecified(ip)]
        stack = RealUdpStack(ips or None)
    gateway = Gateway(config, stack, key or NodeKey.generate(), clock=clock)
    await gateway.enable()
    async with open_actor(gateway.supervisor(), registry=registry):
        logger.info(
            "gateway %s: observer %s, relay %s, DHT %s%s",
            gateway.key.node_id.short(), config.listen, config.relay_address, config.dht_address,
            "" if config.listen6 is None else f"; over IPv6 observer {config.listen6}, relay "
            f"{config.relay_address6}, DHT {config.dht_address6}",
        )  # fmt: skip
        yield gateway
