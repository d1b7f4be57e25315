"""UDP endpoints behind one small interface: real sockets, or a simulated internet with NATs."""

from macula_nat.net.address import (
    ANY_IPV4,
    ANY_IPV6,
    Address,
    destination_address,
    normalise_address,
    normalise_ip,
)
from macula_nat.net.endpoint import MAX_DATAGRAM_SIZE, UdpEndpoint, UdpStack
from macula_nat.net.real import RealUdpEndpoint, RealUdpStack

__all__ = [
    "ANY_IPV4",
    "ANY_IPV6",
    "MAX_DATAGRAM_SIZE",
    "Address",
    "RealUdpEndpoint",
    "RealUdpStack",
    "UdpEndpoint",
    "UdpStack",
    "destination_address",
    "normalise_address",
    "normalise_ip",
]
