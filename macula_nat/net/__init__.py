"""UDP endpoints behind one small interface: real sockets, or a simulated internet with NATs.

Names are imported on first use (PEP 562): :mod:`macula_nat.net.address` is plain ``ipaddress``
work, and the command line parses addresses with it before anything needs Trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
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

_EXPORTS: Final[dict[str, str]] = {
    "ANY_IPV4": "macula_nat.net.address",
    "ANY_IPV6": "macula_nat.net.address",
    "Address": "macula_nat.net.address",
    "destination_address": "macula_nat.net.address",
    "normalise_address": "macula_nat.net.address",
    "normalise_ip": "macula_nat.net.address",
    "MAX_DATAGRAM_SIZE": "macula_nat.net.endpoint",
    "UdpEndpoint": "macula_nat.net.endpoint",
    "UdpStack": "macula_nat.net.endpoint",
    "RealUdpEndpoint": "macula_nat.net.real",
    "RealUdpStack": "macula_nat.net.real",
}
"""Each name -> the module that defines it."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'macula_nat.net' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next access does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
