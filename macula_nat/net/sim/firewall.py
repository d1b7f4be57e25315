"""A stateful firewall box: hosts with public addresses behind it, no translation.

What most IPv6 homes and offices have (RFC 6092): the host's own global address is its public
address, and the router drops every inbound datagram that no outbound one asked for. The box
owns one interface per protected address on the outer network (a router holding a route to the
inner prefix, flattened), passes outbound datagrams unchanged while recording their flow in a
:class:`~.flow_table.FlowTable`, and passes inbound ones only along a live flow. Create boxes
with :meth:`Network.add_firewall <macula_nat.net.sim.network.Network.add_firewall>`; put hosts
behind them with :meth:`FirewallBox.add_host` (or :meth:`FirewallBox.attach` for a host that
already sits elsewhere, e.g. a dual-stack host behind an IPv4 NAT).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import trio

from macula_nat.net.address import normalise_ip
from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.flow_table import FlowStatistics, FlowTable
from macula_nat.net.sim.host import DEFAULT_RECEIVE_BUFFER, SimHost
from macula_nat.net.sim.interface import Interface
from macula_nat.net.sim.link import LinkProfile

if TYPE_CHECKING:
    from macula_nat.net.sim.internet import Internet
    from macula_nat.net.sim.network import Network

logger = logging.getLogger(__name__)


class FirewallBox:
    """A connection-tracking firewall between ``wan`` and the network behind it."""

    def __init__(
        self,
        *,
        internet: Internet,
        name: str,
        wan: Network,
        wan_link: LinkProfile,
        lan: Network,
        lan_link: LinkProfile,
        lifetime: float,
    ) -> None:
        self._internet = internet
        self._name = name
        self._wan = wan
        self._wan_link = wan_link
        self._lan = lan
        self._wan_interfaces: dict[str, Interface] = {}
        self._lan_interface = lan._attach(self, None, lan_link)
        self._table = FlowTable(lifetime)

    def __repr__(self) -> str:
        return f"<FirewallBox {self._name} {self._lan.subnet}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def network(self) -> Network:
        """The network behind this box, whose addresses are public."""
        return self._lan

    @property
    def protected(self) -> tuple[str, ...]:
        """The public addresses of the hosts behind the box."""
        return tuple(self._wan_interfaces)

    def add_host(
        self,
        addresses: Sequence[str] | int = 1,
        *,
        name: str | None = None,
        link: LinkProfile | None = None,
        receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
    ) -> SimHost:
        """A new host behind the box (see ``Network.add_host``), reachable through it."""
        host = self._lan.add_host(addresses, name=name, link=link, receive_buffer=receive_buffer)
        for address in host.addresses:
            self._protect(address)
        return host

    def attach(self, host: SimHost, address: str, *, link: LinkProfile | None = None) -> str:
        """Give an existing ``host`` the address ``address`` behind the box; return it."""
        address = normalise_ip(address)
        if self._wan._holds(address):
            raise ValueError(f"{address} is already attached to {self._wan.name}")
        host.attach(self._lan, address, link=link)
        self._protect(address)
        return address

    def flows(self) -> list[tuple[tuple[str, int], tuple[str, int]]]:
        """The live flows as (inside, outside), least recently refreshed first."""
        self._table.expire(trio.current_time())
        return self._table.flows()

    def statistics(self) -> FlowStatistics:
        self._table.expire(trio.current_time())
        return self._table.statistics()

    def _protect(self, address: str) -> None:
        self._wan_interfaces[address] = self._wan._attach(self, address, self._wan_link)

    def _packet_arrived(self, interface: Interface, packet: Datagram) -> None:
        if packet.ttl <= 1:
            self._internet._count_unroutable()
            logger.debug("%s: TTL exceeded for %s", self._name, packet)
            return
        packet = attrs.evolve(packet, ttl=packet.ttl - 1)
        now = trio.current_time()
        if interface is self._lan_interface:
            outside = self._wan_interfaces.get(packet.source[0])
            if outside is None:  # the box itself, or an address it does not route
                self._internet._count_unroutable()
                logger.debug("%s: no route out for %s", self._name, packet.source)
                return
            self._table.outbound(packet.source, packet.destination, now)
            self._wan._transmit(packet, outside)
        elif self._table.inbound(packet.source, packet.destination, now):
            self._lan._transmit(packet, self._lan_interface)
        else:
            logger.debug("%s: filtered %s -> %s", self._name, packet.source, packet.destination)
