"""Where a host or NAT box meets a network: one IP address, one link."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import attrs

from macula_nat.net.sim.datagram import Datagram
from macula_nat.net.sim.link import LinkProfile

if TYPE_CHECKING:
    from macula_nat.net.sim.network import Network


class PacketSink(Protocol):
    """Whatever owns interfaces: it takes the datagrams that arrive on them."""

    def _packet_arrived(self, interface: Interface, packet: Datagram) -> None: ...


@attrs.frozen(eq=False)
class Interface:
    """An address of ``owner`` on ``network``, reached over ``link``."""

    address: str
    network: Network
    link: LinkProfile
    owner: PacketSink
