"""A NAT box: the shell that moves datagrams between two networks through a :class:`NatTable`."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import trio

from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.front import NetworkFront
from macula_nat.net.sim.interface import Interface
from macula_nat.net.sim.link import LinkProfile
from macula_nat.net.sim.nat_behavior import NatBehavior
from macula_nat.net.sim.nat_table import NatMapping, NatStatistics, NatTable
from macula_nat.portmap.natpmp import PORT as PORT_MAPPING_PORT
from macula_nat.portmap.server import PortMapServer

if TYPE_CHECKING:
    from macula_nat.net.sim.internet import Internet
    from macula_nat.net.sim.network import Network

logger = logging.getLogger(__name__)


class NatBox(NetworkFront):
    """A NAT with public addresses on one network (``wan``) and a private network behind it.

    Datagrams addressed to the box itself, public or private side, find nothing listening and
    are dropped, as on a router that accepts no unsolicited traffic; with
    :meth:`enable_port_mapping` it answers NAT-PMP and PCP on its LAN address. Each traversal
    costs one from the datagram's TTL. Create boxes with :meth:`Network.add_nat
    <macula_nat.net.sim.network.Network.add_nat>`.
    """

    def __init__(
        self,
        *,
        internet: Internet,
        name: str,
        behavior: NatBehavior,
        rng: random.Random,
        wan: Network,
        wan_addresses: Sequence[str | None],
        wan_link: LinkProfile,
        lan: Network,
        lan_link: LinkProfile,
    ) -> None:
        self._internet = internet
        self._name = name
        self._wan = wan
        self._lan = lan
        self._wan_interfaces = {
            interface.address: interface
            for interface in (wan._attach(self, address, wan_link) for address in wan_addresses)
        }
        self._lan_interface = lan._attach(self, None, lan_link)
        self._table = NatTable(behavior, tuple(self._wan_interfaces), rng)
        self._port_mapping: PortMapServer | None = None
        self.udp_blocked = False
        """A firewall on the box dropping every datagram, both ways, while True (TCP streams
        pass: :mod:`.streams`); a test lifts it by setting False."""
        self.blocked = 0
        """Datagrams that firewall dropped."""

    def __repr__(self) -> str:
        return f"<NatBox {self._name} {list(self._wan_interfaces)} -> {self._lan.subnet}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def behavior(self) -> NatBehavior:
        return self._table.behavior

    @property
    def public_addresses(self) -> tuple[str, ...]:
        """Its addresses on the outer network (public IPs, or CGNAT-side ones when nested)."""
        return tuple(self._wan_interfaces)

    @property
    def lan_address(self) -> str:
        """Its own address on the private network."""
        return self._lan_interface.address

    @property
    def network(self) -> Network:
        """The private network behind this box."""
        return self._lan

    def _front_network(self) -> Network:
        return self._lan

    def mappings(self) -> list[NatMapping]:
        """The live mappings, least recently refreshed first."""
        self._table.expire(trio.current_time())
        return self._table.mappings()

    def rebind(self) -> int:
        """Drop every mapping; the next datagrams get new public ports (see NatTable.rebind).
        A port-mapping service forgets its mappings too: its epoch starts again, as after a
        router's reboot."""
        if self._port_mapping is not None:
            self._port_mapping.reset(trio.current_time())
        return self._table.rebind()

    def enable_port_mapping(
        self, *, natpmp: bool = True, pcp: bool = True, max_lifetime: int = 3600
    ) -> PortMapServer:
        """Answer NAT-PMP and/or PCP requests on the LAN address (port 5351), as a home router
        does: a mapping made on request admits anyone to its external port (a port forward)
        until its lifetime ends. Returns the server (its counters; ``reset`` forgets)."""
        self._port_mapping = PortMapServer(
            self._table,
            self.public_addresses[0],
            trio.current_time(),
            speaks_natpmp=natpmp,
            speaks_pcp=pcp,
            max_lifetime=max_lifetime,
        )
        return self._port_mapping

    def statistics(self) -> NatStatistics:
        self._table.expire(trio.current_time())
        return self._table.statistics()

    def _packet_arrived(self, interface: Interface, packet: Datagram) -> None:
        if self.udp_blocked:
            self.blocked += 1
            logger.debug("%s: UDP blocked: dropped %s", self._name, packet)
            return
        if packet.ttl <= 1:
            self._internet._count_unroutable()
            logger.debug("%s: TTL exceeded for %s", self._name, packet)
            return
        packet = attrs.evolve(packet, ttl=packet.ttl - 1)
        now = trio.current_time()
        if interface is self._lan_interface:
            self._from_inside(packet, now)
        else:
            self._from_outside(packet, now)

    def _from_inside(self, packet: Datagram, now: float) -> None:
        destination_ip = packet.destination[0]
        if destination_ip == self._lan_interface.address:
            server = self._port_mapping
            if server is not None and packet.destination[1] == PORT_MAPPING_PORT:
                answer = server.handle(packet.payload, packet.source, now)
                if answer is not None:
                    reply = Datagram(packet.destination, packet.source, answer)
                    self._lan._transmit(reply, self._lan_interface)
                return
            self._internet._count_no_listener()
            return
        if destination_ip in self._wan_interfaces:
            routed = self._table.hairpin(packet.source, packet.destination, now)
            if routed is not None:
                source, destination = routed
                turned = attrs.evolve(packet, source=source, destination=destination)
                self._lan._transmit(turned, self._lan_interface)
            return
        external = self._table.outbound(packet.source, packet.destination, now)
        if external is not None:
            outgoing = attrs.evolve(packet, source=external)
            self._wan._transmit(outgoing, self._wan_interfaces[external[0]])

    def _from_outside(self, packet: Datagram, now: float) -> None:
        internal = self._table.inbound(packet.source, packet.destination, now)
        if internal is not None:
            self._lan._transmit(attrs.evolve(packet, destination=internal), self._lan_interface)
