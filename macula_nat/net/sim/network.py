"""A routing domain: the public internet, or the private side of one NAT box.

Inside a network every attached address reaches every other one directly. A datagram for an
address the network does not hold goes to its gateway (the NAT box it sits behind); on the public
internet, which has none, it is lost.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from macula_nat.net.address import normalise_ip
from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.firewall import FirewallBox
from macula_nat.net.sim.host import DEFAULT_RECEIVE_BUFFER, SimHost
from macula_nat.net.sim.interface import Interface, PacketSink
from macula_nat.net.sim.link import LinkProfile
from macula_nat.net.sim.nat_behavior import NatBehavior
from macula_nat.net.sim.nat_box import NatBox

if TYPE_CHECKING:
    from macula_nat.net.sim.internet import Internet

logger = logging.getLogger(__name__)

PUBLIC_POOLS = ("203.0.113.0/24", "198.51.100.0/24", "192.0.2.0/24")
"""Where public addresses come from when none is given: the documentation ranges (RFC 5737)."""


class Network:
    """Addresses attached to one routing domain, and how to leave it."""

    def __init__(
        self,
        internet: Internet,
        name: str,
        subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None,
    ) -> None:
        self._internet = internet
        self._name = name
        self._subnet = subnet
        self._gateway: NatBox | FirewallBox | None = None
        self._interfaces: dict[str, Interface] = {}
        pools = [subnet] if subnet else [ipaddress.ip_network(pool) for pool in PUBLIC_POOLS]
        self._pool: Iterator[str] = (str(ip) for pool in pools for ip in pool.hosts())

    def __repr__(self) -> str:
        return f"<Network {self._name} {self._subnet or 'public'}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def subnet(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        """The private prefix, or None for the public internet."""
        return self._subnet

    @property
    def gateway(self) -> NatBox | FirewallBox | None:
        """The NAT box (or firewall) this network sits behind; None for the public internet."""
        return self._gateway

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address attached here, in attachment order."""
        return tuple(self._interfaces)

    def add_host(
        self,
        addresses: Sequence[str] | int = 1,
        *,
        name: str | None = None,
        link: LinkProfile | None = None,
        receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
    ) -> SimHost:
        """A new host here with the given addresses, or that many chosen from the pool."""
        if receive_buffer < 1:
            raise ValueError(f"receive_buffer must be >= 1, not {receive_buffer!r}")
        wanted = self._claim(addresses, "a host")
        host = SimHost(
            self._internet,
            name or self._internet._next_name("host"),
            self._internet._derive_rng(),
            receive_buffer,
        )
        for address in wanted:
            host.attach(self, address, link=link)
        self._internet._hosts.append(host)
        return host

    def add_nat(
        self,
        behavior: NatBehavior,
        *,
        public_addresses: Sequence[str] | int = 1,
        name: str | None = None,
        link: LinkProfile | None = None,
        lan_link: LinkProfile | None = None,
        subnet: str | None = None,
    ) -> NatBox:
        """A new NAT box with its public side here and a fresh private network behind it.

        ``link`` is its link to this network, ``lan_link`` its link to the private one;
        ``subnet`` defaults to the next unused ``10.0.N.0/24``. The box takes the first address of
        its subnet; hosts added behind it take the next ones.
        """
        wanted = self._claim(public_addresses, "a NAT box")
        private_subnet = ipaddress.ip_network(subnet) if subnet else self._internet._next_subnet()
        name = name or self._internet._next_name("nat")
        lan = Network(self._internet, f"{name}-lan", private_subnet)
        nat = NatBox(
            internet=self._internet,
            name=name,
            behavior=behavior,
            rng=self._internet._derive_rng(),
            wan=self,
            wan_addresses=wanted,
            wan_link=link or LinkProfile(),
            lan=lan,
            lan_link=lan_link or LinkProfile(),
        )
        lan._gateway = nat
        return nat

    def add_firewall(
        self,
        subnet: str,
        *,
        name: str | None = None,
        link: LinkProfile | None = None,
        lan_link: LinkProfile | None = None,
        lifetime: float = 30.0,
    ) -> FirewallBox:
        """A stateful firewall whose hosts take public addresses in ``subnet`` (e.g. an IPv6
        /64 of 2001:db8::/32) and are reached through it from here; inbound datagrams pass only
        along a flow an inside host opened in the last ``lifetime`` seconds (see
        :mod:`~macula_nat.net.sim.firewall`). The box takes the first address of ``subnet``."""
        name = name or self._internet._next_name("firewall")
        lan = Network(self._internet, f"{name}-lan", ipaddress.ip_network(subnet))
        firewall = FirewallBox(
            internet=self._internet,
            name=name,
            wan=self,
            wan_link=link or LinkProfile(),
            lan=lan,
            lan_link=lan_link or LinkProfile(),
            lifetime=lifetime,
        )
        lan._gateway = firewall
        return firewall

    def _claim(self, addresses: Sequence[str] | int, what: str) -> list[str | None]:
        """Check a request for addresses before anything is attached: None means "any"."""
        if isinstance(addresses, int):
            if addresses < 1:
                raise ValueError(f"{what} needs at least one address")
            return [None] * addresses
        if isinstance(addresses, str):
            raise ValueError(f"{what} takes a list of addresses, not the string {addresses!r}")
        claimed = [self._claimable(address) for address in addresses]
        if not claimed or len(set(claimed)) != len(claimed):
            raise ValueError(f"{what} needs distinct addresses, not {addresses!r}")
        return list(claimed)

    def _claimable(self, address: str) -> str:
        """``address`` normalised, if it is free here and inside this network's subnet."""
        address = normalise_ip(address)
        if address in self._interfaces:
            raise ValueError(f"{address} is already attached to {self._name}")
        if self._subnet is not None and ipaddress.ip_address(address) not in self._subnet:
            raise ValueError(f"{address} is outside {self._name}'s subnet {self._subnet}")
        return address

    def _holds(self, ip: str) -> bool:
        return ip in self._interfaces

    def _attach(self, owner: PacketSink, address: str | None, link: LinkProfile) -> Interface:
        """Attach ``owner`` at ``address``, or at the next free address of the pool."""
        if address is None:
            address = next((ip for ip in self._pool if ip not in self._interfaces), None)
            if address is None:
                raise RuntimeError(f"{self._name}: address pool exhausted")
        address = self._claimable(address)
        interface = Interface(address, self, link, owner)
        self._interfaces[address] = interface
        return interface

    def _transmit(self, packet: Datagram, sender: Interface) -> None:
        """Send ``packet`` from ``sender`` to the interface it is addressed to, or the gateway."""
        receiver = self._interfaces.get(packet.destination[0])
        if receiver is None and self._gateway is not None and sender.owner is not self._gateway:
            receiver = self._gateway._lan_interface
        if receiver is None:
            self._internet._count_unroutable()
            logger.debug("%s: no route to %s", self._name, packet.destination)
            return
        self._internet._carry(packet, sender, receiver)


def private_subnet(index: int) -> ipaddress.IPv4Network:
    """The ``index``-th default private network: ``10.0.1.0/24``, ``10.0.2.0/24``, ..."""
    if not 1 <= index < 65536:
        raise ValueError(f"no default private subnet number {index}")
    return ipaddress.IPv4Network(f"10.{index // 256}.{index % 256}.0/24")
