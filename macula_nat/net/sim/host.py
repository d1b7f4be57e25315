"""A simulated host: a UDP stack with one or more addresses on one or more networks."""

from __future__ import annotations

import errno
import logging
import os
import random
from typing import TYPE_CHECKING

import trio

from macula_nat.net.address import (
    ANY_IPV4,
    Address,
    any_address,
    destination_address,
    ip_version,
    is_unspecified,
    normalise_address,
)
from macula_nat.net.endpoint import UdpStack, check_dual_stack
from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.endpoint import SimEndpoint
from macula_nat.net.sim.interface import Interface
from macula_nat.net.sim.link import LinkProfile
from macula_nat.net.stream import StreamListener

if TYPE_CHECKING:
    from macula_nat.net.sim.internet import Internet
    from macula_nat.net.sim.network import Network

logger = logging.getLogger(__name__)

EPHEMERAL_PORTS = (32768, 60999)
"""Linux's default ``ip_local_port_range``, where port-0 binds land."""

_EPHEMERAL_TRIES = 64

DEFAULT_RECEIVE_BUFFER = 256
"""Datagrams a simulated endpoint queues before dropping arrivals."""


def _os_error(code: int, address: Address) -> OSError:
    return OSError(code, f"{os.strerror(code)}: {address}")


class SimHost(UdpStack):
    """A host on the simulated internet.

    Binding follows Linux without ``SO_REUSEADDR``: a port bound on the wildcard address
    conflicts with the same port on any address of that IP version, and the other way round.
    A wildcard-bound endpoint sends from the host's address on a network that holds the
    destination, else from its first address of the destination's IP version. A dual-stack
    endpoint holds its port on both wildcards, and answers a peer from the address it asked.
    """

    def __init__(
        self, internet: Internet, name: str, rng: random.Random, receive_buffer: int
    ) -> None:
        if receive_buffer < 1:
            raise ValueError(f"receive_buffer must be >= 1, not {receive_buffer!r}")
        self._internet = internet
        self._name = name
        self._rng = rng
        self._receive_buffer = receive_buffer
        self._interfaces: list[Interface] = []
        self._bound: dict[tuple[int, int], dict[str, SimEndpoint]] = {}
        """(IP version, port) -> {bound IP -> endpoint}."""
        self._closed = False

    def __repr__(self) -> str:
        return f"<SimHost {self._name} {list(self.addresses)}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(interface.address for interface in self._interfaces)

    def attach(
        self, network: Network, address: str | None = None, *, link: LinkProfile | None = None
    ) -> str:
        """Give this host an (optionally chosen) address on ``network``; return it."""
        interface = network._attach(self, address, link or LinkProfile())
        self._interfaces.append(interface)
        return interface.address

    async def bind(
        self, address: Address = (ANY_IPV4, 0), *, dual_stack: bool = False
    ) -> SimEndpoint:
        ip, port = normalise_address(address)
        if dual_stack:
            check_dual_stack(ip)
        if self._closed:
            raise trio.ClosedResourceError("the simulated internet is closed")
        if not is_unspecified(ip) and ip not in self.addresses:
            raise _os_error(errno.EADDRNOTAVAIL, (ip, port))
        await trio.lowlevel.checkpoint_if_cancelled()
        ips = (ANY_IPV4, ip) if dual_stack else (ip,)
        if port == 0:
            port = self._ephemeral_port(ips)
        elif any(self._in_use(each, port) for each in ips):
            raise _os_error(errno.EADDRINUSE, (ip, port))
        endpoint = SimEndpoint(self, (ip, port), self._receive_buffer, dual_stack=dual_stack)
        for each in ips:
            self._bound.setdefault((ip_version(each), port), {})[each] = endpoint
        logger.debug("%s bound %s", self._name, endpoint.local_address)
        await trio.lowlevel.cancel_shielded_checkpoint()
        return endpoint

    async def connect_stream(self, address: Address) -> tuple[trio.abc.Stream, Address]:
        """An in-memory TCP connection routed out through the NAT boxes in front of this host
        (:mod:`.streams`)."""
        destination = destination_address(address)
        if self._closed:
            raise trio.ClosedResourceError("the simulated internet is closed")
        await trio.lowlevel.checkpoint()
        return self._internet._streams.connect(self, destination)

    async def listen_stream(self, address: Address, *, dual_stack: bool = False) -> StreamListener:
        address = normalise_address(address)
        if dual_stack:
            check_dual_stack(address[0])
        if self._closed:
            raise trio.ClosedResourceError("the simulated internet is closed")
        await trio.lowlevel.checkpoint()
        return self._internet._streams.listen(self, address, dual_stack=dual_stack)

    def _in_use(self, ip: str, port: int) -> bool:
        bound = self._bound.get((ip_version(ip), port))
        if not bound:
            return False
        return is_unspecified(ip) or ip in bound or any_address(ip_version(ip)) in bound

    def _ephemeral_port(self, ips: tuple[str, ...]) -> int:
        """A port free on every one of ``ips`` (both wildcards for a dual-stack endpoint)."""
        low, high = EPHEMERAL_PORTS
        for _ in range(_EPHEMERAL_TRIES):
            port = self._rng.randint(low, high)
            if not any(self._in_use(ip, port) for ip in ips):
                return port
        for port in range(low, high + 1):
            if not any(self._in_use(ip, port) for ip in ips):
                return port
        raise _os_error(errno.EADDRINUSE, (ips[-1], 0))

    def _unbind(self, local_address: Address, *, dual_stack: bool = False) -> None:
        ip, port = local_address
        for each in (ANY_IPV4, ip) if dual_stack else (ip,):
            key = (ip_version(each), port)
            bound = self._bound.get(key, {})
            bound.pop(each, None)
            if not bound:
                self._bound.pop(key, None)

    def _close(self) -> None:
        """Close every endpoint; later binds raise ``trio.ClosedResourceError``."""
        self._closed = True
        for bound in list(self._bound.values()):
            for endpoint in list(bound.values()):
                endpoint.close()

    def _route(self, source_ip: str, destination_ip: str) -> Interface | None:
        """The interface a datagram from ``source_ip`` (maybe the wildcard) leaves by."""
        if not is_unspecified(source_ip):
            return next(i for i in self._interfaces if i.address == source_ip)
        version = ip_version(destination_ip)
        candidates = [i for i in self._interfaces if ip_version(i.address) == version]
        for interface in candidates:
            if interface.network._holds(destination_ip):
                return interface
        return candidates[0] if candidates else None

    def _send(self, source: Address, payload: bytes, destination: Address) -> None:
        self._internet._count_sent()
        interface = self._route(source[0], destination[0])
        if interface is None:
            self._internet._count_unroutable()
            logger.debug("%s has no address to reach %s", self._name, destination)
            return
        packet = Datagram((interface.address, source[1]), destination, payload)
        interface.network._transmit(packet, interface)

    def _packet_arrived(self, interface: Interface, packet: Datagram) -> None:
        ip, port = packet.destination
        bound = self._bound.get((ip_version(ip), port), {})
        endpoint = bound.get(ip) or bound.get(any_address(ip_version(ip)))
        if endpoint is None:
            self._internet._count_no_listener()
            logger.debug("%s: nothing bound at %s", self._name, packet.destination)
        elif endpoint._deliver(packet.payload, packet.source, ip):
            self._internet._count_delivered()
        else:
            self._internet._count_overflowed()
            logger.debug("%s: receive buffer of %s full", self._name, packet.destination)
