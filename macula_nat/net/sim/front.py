"""NetworkFront: adding hosts and NATs through whatever fronts a network."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

from macula_nat.net.sim.host import DEFAULT_RECEIVE_BUFFER, SimHost
from macula_nat.net.sim.link import LinkProfile
from macula_nat.net.sim.nat_behavior import NatBehavior

if TYPE_CHECKING:
    from macula_nat.net.sim.nat_box import NatBox
    from macula_nat.net.sim.network import Network


class NetworkFront(abc.ABC):
    """``add_host`` / ``add_nat`` on the network something fronts: the internet's public
    network, or the private network behind a NAT box (see :meth:`Network.add_host`)."""

    @abc.abstractmethod
    def _front_network(self) -> Network:
        """The network new hosts and NATs join."""

    def add_host(
        self,
        addresses: Sequence[str] | int = 1,
        *,
        name: str | None = None,
        link: LinkProfile | None = None,
        receive_buffer: int = DEFAULT_RECEIVE_BUFFER,
    ) -> SimHost:
        """A host on the fronted network (see ``Network.add_host``)."""
        network = self._front_network()
        return network.add_host(addresses, name=name, link=link, receive_buffer=receive_buffer)

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
        """A NAT box whose public side is on the fronted network (see ``Network.add_nat``)."""
        return self._front_network().add_nat(
            behavior,
            public_addresses=public_addresses,
            name=name,
            link=link,
            lan_link=lan_link,
            subnet=subnet,
        )
