"""Compact contact encodings (BEP 5 "Contact Encoding", BEP 32 for IPv6).

Compact peer info is the address and port in network order: 6 bytes for IPv4, 18 for IPv6.
Compact node info prefixes it with the 20-byte node id: 26 bytes in ``nodes``, 38 in ``nodes6``.
Decoders raise only `CompactError`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Final

import attrs

from .node_id import ID_BYTES, NodeId

__all__ = [
    "NODE_INFO_SIZE",
    "NODE_INFO_SIZE6",
    "Address",
    "CompactError",
    "NodeInfo",
    "check_address",
    "decode_nodes",
    "decode_nodes6",
    "decode_peer",
    "encode_nodes",
    "encode_nodes6",
    "encode_peer",
    "is_ipv6",
]

Address = tuple[str, int]
"""An ``(ip, port)`` pair in canonical text form; the family follows from the ip."""

NODE_INFO_SIZE: Final = ID_BYTES + 6
NODE_INFO_SIZE6: Final = ID_BYTES + 18


class CompactError(ValueError):
    """Bytes that are not a whole number of compact entries."""


def check_address(value: object) -> Address:
    """``value`` as a canonical ``(ip, port)``; TypeError or ValueError when it is not one."""
    if not isinstance(value, tuple) or len(value) != 2:
        raise TypeError(f"an address is an (ip, port) tuple, got {value!r}")
    ip, port = value
    if not isinstance(ip, str):
        raise TypeError(f"ip must be a str, got {ip!r}")
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, got {port!r}")
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port {port} is outside 0..65535")
    try:
        parsed = ipaddress.ip_address(ip)
    except ValueError:
        raise ValueError(f"{ip!r} is not an IPv4 or IPv6 address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id is not None:
        raise ValueError(f"{ip!r} has a scope id, which compact info cannot carry")
    if str(parsed) != ip:
        raise ValueError(f"{ip!r} is not in canonical form ({parsed})")
    return (ip, port)


def is_ipv6(address: Address) -> bool:
    """True when ``address`` is an IPv6 address."""
    return ":" in address[0]


@attrs.frozen
class NodeInfo:
    """A DHT node's contact: its id and UDP address."""

    node_id: NodeId
    address: Address = attrs.field(validator=lambda _, __, value: check_address(value))

    @property
    def is_ipv6(self) -> bool:
        """True for a node reached over IPv6 (it travels in ``nodes6``)."""
        return is_ipv6(self.address)


def encode_peer(address: Address) -> bytes:
    """Compact peer info: 6 bytes for IPv4, 18 for IPv6."""
    ip, port = check_address(address)
    return ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")


def decode_peer(data: bytes) -> Address:
    """The address in 6 or 18 bytes of compact peer info."""
    if len(data) not in (6, 18):
        raise CompactError(f"compact peer info is 6 or 18 bytes, got {len(data)}")
    return (str(ipaddress.ip_address(bytes(data[:-2]))), int.from_bytes(data[-2:], "big"))


def _encode(nodes: Iterable[NodeInfo], ipv6: bool) -> bytes:
    parts = []
    for node in nodes:
        if node.is_ipv6 != ipv6:
            raise ValueError(f"{node} belongs in {'nodes' if ipv6 else 'nodes6'}")
        parts.append(node.node_id.to_bytes() + encode_peer(node.address))
    return b"".join(parts)


def _decode(data: bytes, size: int) -> tuple[NodeInfo, ...]:
    if len(data) % size:
        raise CompactError(f"{len(data)} bytes is not a whole number of {size}-byte nodes")
    return tuple(
        NodeInfo(
            NodeId.from_bytes(data[start : start + ID_BYTES]),
            decode_peer(data[start + ID_BYTES : start + size]),
        )
        for start in range(0, len(data), size)
    )


def encode_nodes(nodes: Iterable[NodeInfo]) -> bytes:
    """The ``nodes`` string: 26 bytes per IPv4 node. ValueError for an IPv6 node."""
    return _encode(nodes, ipv6=False)


def encode_nodes6(nodes: Iterable[NodeInfo]) -> bytes:
    """The ``nodes6`` string: 38 bytes per IPv6 node. ValueError for an IPv4 node."""
    return _encode(nodes, ipv6=True)


def decode_nodes(data: bytes) -> tuple[NodeInfo, ...]:
    """The IPv4 nodes in a ``nodes`` string."""
    return _decode(data, NODE_INFO_SIZE)


def decode_nodes6(data: bytes) -> tuple[NodeInfo, ...]:
    """The IPv6 nodes in a ``nodes6`` string."""
    return _decode(data, NODE_INFO_SIZE6)
